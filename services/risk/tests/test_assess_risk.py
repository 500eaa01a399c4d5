"""Assess computes the risk numbers and stores them in measurements.json (the export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from phantom import write_dicom_series
from risk.assess import assess
from risk.outbox import Outbox
from risk.research_export import SCHEMA, document, write
from risk.settings import Settings
from risk.spine import SpineAssessment
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap


def record_of(outbox: Outbox, series_uid: str) -> dict[str, Any]:
    entry = outbox.get(series_uid)
    record: dict[str, Any] = json.loads((entry.path / "measurements.json").read_text())
    return record


def missing(value: Any) -> str:
    assert isinstance(value, dict) and set(value) == {"missing", "detail"}, value
    return str(value["missing"])


def test_phantom_with_muscles_and_lesions_gets_every_number(
        tmp_path: Path, lesion_phantom: Any) -> None:
    ph = lesion_phantom.phantom
    files = write_dicom_series(ph, tmp_path / "dicom", patient_id="RISK-TEST-ID",
                               patient_name="Risk^Tester", patient_sex="F",
                               patient_weight_kg=61.0, patient_size_m=1.64)
    headers = [dcmread(f, stop_before_pixels=True) for f in files]
    settings = Settings()  # no phantom calibration configured: internal calibration
    outbox = Outbox(tmp_path / "outbox")
    result = assess(ph.study_uid, ph.series_uid, ph.ct, headers,
                    [ph.vertebrae, ph.muscles, ph.lesions], settings, outbox)
    assert [o.modality for o in result.objects] == ["SEG", "SR", "DOC", "OT"]
    text = (outbox.get(ph.series_uid).path / "measurements.json").read_text()
    assert "Risk^Tester" not in text and "RISK-TEST-ID" not in text
    risk = json.loads(text)["risk"]
    assert risk["schema"] == SCHEMA
    assert risk["inputs"] == {"muscle_segmentation": True, "lesion_segmentation": True}
    assert risk["calibration"]["method"] == "internal"  # no phantom for this scanner
    assert {"method", "material", "kvp", "kernel"} <= risk["calibration"].keys()
    assert risk["body"]["mass_kg"] == 61.0 and risk["body"]["sex"] == "female"
    assert risk["anthropometry"]["mass_fractions"]["head"] == pytest.approx(0.0668)
    in_view = [v for v in risk["vertebrae"] if not v["geometry"]["truncated"]]
    assert [v["level"] for v in in_view] == ph.truth["levels_in_view"]
    for v in in_view:
        assert v["geometry"]["body_volume_ml"] > 5
        assert v["density"]["vbmd_mg_cm3"] > 0
        assert v["strength"]["ctra_failure_load_n"] > 0
        assert [f["activity"] for f in v["factors_of_risk"]] == [
            "standing", "standing_5kg", "flexion_30_5kg"]
        phis = [f["phi"] for f in v["factors_of_risk"]]
        assert all(isinstance(p, float) and p > 0 for p in phis)
        assert phis == sorted(phis)
        assert v["loads"][0]["moment_arm_source"].startswith("CT")
        assert "pain" in v["sins"]["missing"]
    assert {m["muscle"] for m in risk["muscles"]} >= {"deep_back_muscle", "psoas_major"}


def test_vertebrae_only_reports_what_is_missing_and_why(
        tmp_path: Path, volume: Volume, headers: list[Dataset], label_map: LabelMap) -> None:
    outbox = Outbox(tmp_path)
    first = headers[0]
    assess(str(first.StudyInstanceUID), str(first.SeriesInstanceUID), volume, headers,
           [label_map], Settings(), outbox)
    text = (outbox.get(str(first.SeriesInstanceUID)).path / "measurements.json").read_text()
    assert "Phantom^Synthetic" not in text and "SYN-0001" not in text
    risk = json.loads(text)["risk"]
    assert risk["inputs"] == {"muscle_segmentation": False, "lesion_segmentation": False}
    assert missing(risk["muscles"]) == "no-muscle-segmentation"
    assert risk["calibration"]["method"] == "uncalibrated"
    assert risk["calibration"]["kvp"] == 120.0
    assert risk["body"]["mass_source"] == "configuration"
    assert [v["level"] for v in risk["vertebrae"]] == ["L1", "L2", "L3"]
    for v in risk["vertebrae"]:
        assert missing(v["lesions"]) == "no-lesion-segmentation"
        assert missing(v["density"]["bmd_class"]) in ("uncalibrated", "no-body",
                                                       "no-trabecular-region")
        for load in v["loads"]:
            assert load["body_weight_above_n"] > 0
            assert missing(load["compression_n"]) in ("no-muscle-segmentation", "truncated")
        for f in v["factors_of_risk"]:
            missing(f["phi"])
        assert {"pain", "bone_lesion", "posterolateral"} <= set(v["sins"]["missing"])


def test_the_export_file_holds_the_same_numbers(tmp_path: Path,
                                                lesion_assessment: SpineAssessment) -> None:
    path = tmp_path / "risk.json"
    write(lesion_assessment, path)
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(document(lesion_assessment)))
    l2 = {v["level"]: v for v in saved["vertebrae"]}["L2"]
    model = {v.level: v for v in lesion_assessment.vertebrae}["L2"]
    assert l2["strength"]["ctra_failure_load_n"] == model.strength.ctra_failure_load_n
    assert l2["geometry"]["frame"]["axis_lps"] == pytest.approx(list(model.geometry.frame.axis))
    assert saved["methods"]["strength"]["modulus_law"] == "crawford2003"
