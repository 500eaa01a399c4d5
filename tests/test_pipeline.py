"""End to end: dcmtk storescu -> listener -> segmenter/Triton -> registrar -> risk -> Orthanc.

Everything is real and started as processes: the ``tritonserver`` binary, the four services,
Orthanc (checked through its REST API), dcmtk's ``storescu`` and dicom3tools' ``dciodvfy``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest

from e2e import (
    RESULT_MODALITIES,
    Stack,
    dciodvfy_errors,
    delivered_job,
    full_spine,
    job_row,
    job_state,
    phantom_series,
    requires,
    send,
    short_run,
    wait_for_results,
)
from peers import Orthanc
from spinemets.geometry import Volume
from stack.readback import dice, read_measurement_groups, seg_masks_on_volume
from stack.scrape import Scrape, stage_table, wait_for_stages
from stack.stack import PIPELINE

pytestmark = [pytest.mark.integration, requires("storescu", "dciodvfy")]


@dataclass(frozen=True)
class Delivered:
    """A held-out phantom pushed through the stack, and its results read back from Orthanc."""

    files: list[Path]
    volume: Volume
    truth: dict[str, Any]
    seg_path: Path
    sr_path: Path


@pytest.fixture(scope="module")
def delivered(stack: Stack, orthanc: Orthanc,
              tmp_path_factory: pytest.TempPathFactory) -> Delivered:
    config, _ = stack
    tmp_path = tmp_path_factory.mktemp("delivered")
    files, volume, truth = phantom_series(tmp_path, full_spine(9001))
    study_uid = send(config, files)
    results = wait_for_results(orthanc, study_uid)
    assert len(results["SEG"]) == 1 and len(results["SR"]) == 1
    seg_path = orthanc.download(results["SEG"][0]["ID"], tmp_path / "seg.dcm")
    sr_path = orthanc.download(results["SR"][0]["ID"], tmp_path / "sr.dcm")
    return Delivered(files, volume, truth, seg_path, sr_path)


def test_seg_and_sr_in_orthanc_are_valid_and_on_the_source_slices(delivered: Delivered) -> None:
    assert dciodvfy_errors(delivered.seg_path) == []
    assert dciodvfy_errors(delivered.sr_path) == []
    seg = hd.seg.segread(delivered.seg_path)
    volume = delivered.volume
    positions = dict(zip(volume.slice_instance_uids, volume.geometry.slice_positions(),
                         strict=True))
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        frame_position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(frame_position, positions[source.ReferencedSOPInstanceUID], atol=1e-3)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(
        delivered.files[0], stop_before_pixels=True).SeriesInstanceUID


def test_sr_has_a_group_per_segment_with_its_volume(delivered: Delivered) -> None:
    masks = seg_masks_on_volume(delivered.seg_path, delivered.volume)
    read = read_measurement_groups(delivered.sr_path)
    # one group with a Volume per segment; the per-level muscle groups (area, moment arm) and
    # the longitudinal groups have none, and reference segments of these names
    groups = {g.tracking_identifier: g for g in read if "Volume" in g.values}
    assert set(groups) == set(masks)
    numbers = {g.referenced_segment for g in groups.values()}
    assert all(g.referenced_segment in numbers for g in read)
    voxel_ml = delivered.volume.geometry.voxel_volume_mm3 / 1000.0
    for name, mask in masks.items():
        value, unit = groups[name].values["Volume"]
        assert unit in ("ml", "mL") and value == pytest.approx(mask.sum() * voxel_ml, rel=1e-3)
        assert groups[name].referenced_segment is not None


def test_a_patient_with_no_prior_anywhere_is_processed_as_a_baseline(
        stack: Stack, delivered: Delivered) -> None:
    """The phantom's patient is in neither the registrar's history nor the PACS (Orthanc, which
    the listener searched): the study is its own baseline, without error."""
    series_uid = pydicom.dcmread(delivered.files[0], stop_before_pixels=True).SeriesInstanceUID
    job = job_row(stack[0], str(series_uid))
    assert job is not None and (job["reason"], job["has_prior"]) == (None, 0)
    assert job["pairing_note"].startswith("not-in-pacs: no earlier CT study of the patient in")


def test_demo_model_finds_every_level_with_dice_above_090(delivered: Delivered) -> None:
    """Every level fully in view of a phantom the model never saw, read back from the SEG."""
    masks = seg_masks_on_volume(delivered.seg_path, delivered.volume)
    scores = {}
    for level in delivered.truth["levels_in_view"]:
        if level == "sacrum":
            continue
        segment = masks.get(f"{level} vertebra")
        scores[level] = 0.0 if segment is None else dice(segment, delivered.truth["masks"][level])
    assert scores and min(scores.values()) >= 0.90, scores


#: Stages each service's ``spinemets_<service>_stage_seconds`` histogram must have counted.
STAGES = {
    "listener": {"receive", "completion_wait", "segmentation", "pairing", "prior_search",
                 "assessment", "delivery"},
    "segmenter": {"volume_fetch", "segmentation"},
    "registrar": {"pairing"},
    "risk": {"assessment", "delivery"},
}
#: Stages only a follow-up goes through (tests/test_prior_retrieval.py): retrieval of its prior
#: from the PACS and registration with it; every baseline here is searched for in Orthanc.
PRIOR_FROM_PACS = {"listener": {"prior_retrieval", "prior_wait"}, "registrar": {"registration"}}
#: A DICOM UID (a label value must never be one).
UID_LIKE = re.compile(r"^[0-9]+(\.[0-9]+){3,}$")


def total(scraped: Scrape, name: str) -> float:
    """Sum of every sample called ``name``, whatever its labels."""
    return sum(value for (sample, _), value in scraped.samples.items() if sample == name)


def test_every_service_exports_per_stage_latencies_after_a_delivery(
        stack: Stack, delivered: Delivered) -> None:
    """Issue item 4's acceptance: after a delivery, a scrape of each service's metrics endpoint
    shows the per-stage latency histograms with non-zero counts. (Runs before the crash test
    below, which restarts the listener and so resets its counters.)"""
    config, _ = stack
    urls = {name: config.metrics_url(name) for name in PIPELINE}
    assert all(urls.values()), f"a metrics endpoint is disabled: {urls}"
    # The last stages are observed just after the results reach the PACS: wait for them.
    scrapes = wait_for_stages({name: url for name, url in urls.items() if url}, timeout=60,
                              optional=PRIOR_FROM_PACS)
    for service, stages in STAGES.items():
        found = scrapes[service].stages(service)
        assert set(found) == stages | PRIOR_FROM_PACS.get(service, set()), (service, found)
        found = {stage: observed for stage, observed in found.items() if stage in stages}
        empty = {stage for stage, (count, _) in found.items() if count < 1}
        assert not empty, f"{service}: no observation of {sorted(empty)}\n{stage_table(scrapes)}"
        assert all(seconds >= 0 for _, seconds in found.values())

    listener = scrapes["listener"]
    assert (listener.value("spinemets_listener_associations_accepted_total") or 0) >= 1
    assert (listener.value("spinemets_listener_instances_received_total", outcome="stored")
            or 0) >= len(delivered.files)
    assert (listener.value("spinemets_listener_jobs", state="delivered") or 0) >= 1
    assert listener.value("spinemets_listener_queue_depth") is not None
    segmenter = scrapes["segmenter"]
    assert total(segmenter, "spinemets_segmenter_triton_request_seconds_count") >= 1
    assert total(segmenter, "spinemets_segmenter_patches_total") >= 1
    risk = scrapes["risk"]
    for kind in ("SEG", "SR"):
        assert (risk.value("spinemets_risk_objects_delivered_total", kind=kind) or 0) >= 1
    assert total(scrapes["registrar"], "spinemets_registrar_pairings_total") >= 1

    # Label values are fixed sets: never a UID, a patient name or a patient ID.
    phantom = pydicom.dcmread(delivered.files[0], stop_before_pixels=True)
    secrets = {str(phantom.PatientID), str(phantom.PatientName)}
    for service, scraped in scrapes.items():
        for name, labels in scraped.samples:
            for key, value in labels:
                assert not UID_LIKE.match(value), (service, name, key, value)
                assert value not in secrets, (service, name, key)


def test_listener_killed_before_delivery_still_delivers_same_objects(
        stack: Stack, orthanc: Orthanc, tmp_path: Path) -> None:
    config, running = stack
    files, _, _ = phantom_series(tmp_path, short_run(9002))
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    study_uid = send(config, files)

    # The series is acknowledged and its job is running (segmentation takes seconds): crash.
    deadline = time.monotonic() + 300
    while job_state(config, series_uid) is None:
        assert time.monotonic() < deadline, "no job for the series"
        time.sleep(0.05)
    time.sleep(1.0)
    listener = running.services["listener"]
    listener.kill()
    assert orthanc.instances_of_study(study_uid) == [], "delivered before the crash"
    listener.start()
    listener.wait_healthy(120)

    results = wait_for_results(orthanc, study_uid)
    assert len(results["SEG"]) == 1 and len(results["SR"]) == 1
    delivered_job(config, series_uid)
    outbox = config.risk.outbox_path(config.stack.root / "work") / series_uid
    expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                for p in outbox.glob("*.dcm")}
    delivered = {instance["SOPInstanceUID"] for modality in RESULT_MODALITIES
                 for instance in results.get(modality, [])}
    assert delivered == expected, "every object of the outbox delivered once, nothing else"
