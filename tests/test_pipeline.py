"""End to end: dcmtk storescu -> listener -> segmenter/Triton -> registrar -> risk -> Orthanc.

Everything is real and started as processes: the ``tritonserver`` binary, the four services,
Orthanc (checked through its REST API), dcmtk's ``storescu`` and dicom3tools' ``dciodvfy``.
"""

from __future__ import annotations

import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from e2e import (
    Stack,
    dciodvfy_errors,
    job_state,
    phantom_series,
    requires,
    send,
    wait_for_results,
)
from peers import Orthanc

from stack.readback import dice, read_measurement_groups, seg_masks_on_volume

pytestmark = [pytest.mark.integration, requires("storescu", "dciodvfy")]

def test_phantom_reaches_orthanc_as_valid_seg_and_sr(stack: Stack, orthanc: Orthanc,
                                                    tmp_path: Path) -> None:
    config, _ = stack
    files, volume, truth = phantom_series(tmp_path, seed=9001)
    study_uid = send(config, files)
    results = wait_for_results(orthanc, study_uid)
    assert len(results["SEG"]) == 1 and len(results["SR"]) == 1
    seg_path = orthanc.download(results["SEG"][0]["ID"], tmp_path / "seg.dcm")
    sr_path = orthanc.download(results["SR"][0]["ID"], tmp_path / "sr.dcm")
    assert dciodvfy_errors(seg_path) == []
    assert dciodvfy_errors(sr_path) == []

    # The SEG sits on the source slices: every frame's position is its source slice's position.
    seg = hd.seg.segread(seg_path)
    positions = {uid: pos for uid, pos in zip(volume.slice_instance_uids,
                                              volume.geometry.slice_positions(), strict=True)}
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        frame_position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(frame_position, positions[source.ReferencedSOPInstanceUID], atol=1e-3)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(
        files[0], stop_before_pixels=True).SeriesInstanceUID

    # Every level fully in view is found and segmented with Dice >= 0.90.
    masks = seg_masks_on_volume(seg_path, volume)
    for level in truth["levels_in_view"]:
        if level == "sacrum":
            continue
        segment = masks.get(f"{level} vertebra")
        assert segment is not None, f"{level} missing from the SEG"
        score = dice(segment, truth["masks"][level])
        assert score >= 0.90, f"{level}: Dice {score:.3f}"

    # The SR has one group per SEG segment; volumes agree with the segment's voxel count.
    groups = {g.tracking_identifier: g for g in read_measurement_groups(sr_path)}
    voxel_ml = volume.geometry.voxel_volume_mm3 / 1000.0
    for name, mask in masks.items():
        group = groups[name]
        value, unit = group.values["Volume"]
        expected = mask.sum() * voxel_ml
        assert unit in ("ml", "mL") and value == pytest.approx(expected, rel=1e-3)
        assert group.referenced_segment is not None


def test_listener_killed_before_delivery_still_delivers_same_objects(
        stack: Stack, orthanc: Orthanc, tmp_path: Path) -> None:
    config, running = stack
    files, _, _ = phantom_series(tmp_path, seed=9002)
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
    assert job_state(config, series_uid) == "delivered"
    outbox = config.risk.outbox_path(config.stack.root / "work") / series_uid
    expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                for p in outbox.glob("*.dcm")}
    delivered = {results["SEG"][0]["SOPInstanceUID"], results["SR"][0]["SOPInstanceUID"]}
    assert delivered == expected
