"""Priors from the PACS, end to end: a baseline study that only Orthanc holds (the system never
received it) is found when a follow-up of the same patient is pushed with dcmtk's storescu
(C-FIND), retrieved (Orthanc's C-MOVE to the listener), segmented and recorded at the
registrar, and the follow-up is paired with it; only the follow-up's results reach the PACS,
and the follow-up's SR compares it with the baseline vertebra by vertebra (lesion volume and
vBMD change; both studies get the lesion model, by their Series Description).
(A patient with no prior anywhere: tests/test_pipeline.py, whose phantoms are such patients.)

Everything is real and started as processes (the stack of ``conftest.stack``, Orthanc, dcmtk).
The phantoms cover a short run of vertebrae.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest

from e2e import (
    LESION_SERIES,
    Stack,
    dciodvfy_errors,
    delivered_job,
    job_row,
    query,
    requires,
    send,
    short_run,
    wait_for_results,
)
from peers import Orthanc
from phantom import generate, write_dicom_series
from phantom.followup import follow_up
from phantom.options import FollowUpOptions
from spinemets import codes

pytestmark = [pytest.mark.integration, requires("storescu", "dciodvfy")]

OPTIONS = short_run(4242)


@dataclass(frozen=True)
class Study:
    files: list[Path]
    study_uid: str
    series_uid: str


def study_of(files: list[Path]) -> Study:
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return Study(files, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Study]:
    """Patient P-LONG's baseline (2023-03-01) and follow-up (2023-09-01: the same phantom
    scanned again, lying differently, its lesions changed)."""
    root = tmp_path_factory.mktemp("priors")
    base = generate(OPTIONS)
    later = follow_up(base, FollowUpOptions(seed=1)).phantom
    return (study_of(write_dicom_series(base, root / "baseline", patient_id="P-LONG",
                                        patient_name="Long^Patient", study_date="20230301",
                                        series_description=LESION_SERIES)),
            study_of(write_dicom_series(later, root / "follow-up", patient_id="P-LONG",
                                        patient_name="Long^Patient", study_date="20230901",
                                        series_description=LESION_SERIES)))


def longitudinal_section(sr: Path) -> dict[str, dict[str, list[Any]]]:
    """Per vertebra of the SR's longitudinal groups (TID 1411 "<level> vertebra since prior
    study"): the values of each private concept (UIDREF, NUM value, or TEXT)."""
    report = hd.sr.srread(sr).content
    assert isinstance(report, hd.sr.MeasurementReport)
    found: dict[str, dict[str, list[Any]]] = {}
    for group in report.get_volumetric_roi_measurement_groups():
        if not str(group.tracking_identifier).endswith("since prior study"):
            continue
        items = found.setdefault(str(group.tracking_identifier).split()[0], {})
        for item in group[0].ContentSequence:
            name = item.ConceptNameCodeSequence[0]
            if name.CodingSchemeDesignator != codes.PRIVATE_DESIGNATOR:
                continue
            value = (str(item.UID) if item.ValueType == "UIDREF" else
                     float(item.MeasuredValueSequence[0].NumericValue)
                     if item.ValueType == "NUM" else item.get("TextValue"))
            items.setdefault(str(name.CodeValue), []).append(value)
    return found


def test_follow_up_fetches_its_baseline_from_the_pacs_and_is_paired_with_it(
        stack: Stack, orthanc: Orthanc, patient: tuple[Study, Study], tmp_path: Path) -> None:
    config, _ = stack
    baseline, later = patient
    orthanc.upload(baseline.files)  # the system never received it
    started = time.time()
    send(config, later.files)
    results = wait_for_results(orthanc, later.study_uid)
    assert len(results["SEG"]) == 1 and len(results["SR"]) == 1
    pushed_to_results = time.time() - started

    job = delivered_job(stack[0], later.series_uid)
    assert job["reason"] is None and job["has_prior"] == 1
    assert (job["prior_study_uid"], job["prior_series_uid"]) == (baseline.study_uid,
                                                                  baseline.series_uid)
    assert job["pairing_note"].startswith("pacs: most recent earlier study retrieved from ORTHANC@")
    # Orthanc's C-MOVE reached the listener; the baseline was segmented and recorded...
    [(calling_ae, count)] = query(
        config, "listener", "SELECT calling_ae, (SELECT count(*) FROM instances i WHERE "
        "i.series_uid = s.series_uid) FROM series s WHERE series_uid = ?", baseline.series_uid)
    assert (calling_ae, count) == (orthanc.aet, len(baseline.files))
    prior_job = job_row(config, baseline.series_uid)
    assert prior_job is not None
    assert (prior_job["purpose"], prior_job["state"]) == ("prior", "recorded")
    recorded = {row[0] for row in query(
        config, "registrar", "SELECT study_uid FROM studies WHERE patient_key = (SELECT "
        "patient_key FROM studies WHERE series_uid = ?)", later.series_uid)}
    assert recorded == {baseline.study_uid, later.study_uid}
    # ...but not reported: the PACS got results for the follow-up only
    instances = orthanc.instances_of_study(baseline.study_uid)
    assert {i["Modality"] for i in instances} == {"CT"} and len(instances) == len(baseline.files)
    # the delivered SR names the baseline study for every vertebra compared, with the lesion
    # volume change and, measured in both studies, the vBMD change
    private = codes.PRIVATE_SCHEME
    sr = orthanc.download(results["SR"][0]["ID"], tmp_path / "sr.dcm")
    assert dciodvfy_errors(sr) == []
    section = longitudinal_section(sr)
    assert section, "no longitudinal section in the SR"
    for level, items in section.items():
        assert items[private["prior_study"].value] == [baseline.study_uid], level
    assert any(isinstance(v, float) for items in section.values()
               for v in items.get(private["lesion_volume_change"].value, []))
    assert any(isinstance(v, float) for items in section.values()
               for v in items.get(private["vbmd_change"].value, []))

    [(requested, retrieved)] = query(config, "listener", "SELECT requested, retrieved FROM "
                                     "prior_requests WHERE job_id = ?", str(job["id"]))
    completed = job["created"]
    print(f"\nfollow-up complete -> prior chosen (C-FIND) {requested - completed:.1f} s, "
          f"retrieved (C-MOVE) {retrieved - completed:.1f} s, prior recorded "
          f"{prior_job['updated'] - completed:.1f} s; pushed -> results in the PACS "
          f"{pushed_to_results:.1f} s")
