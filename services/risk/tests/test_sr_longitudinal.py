"""The SR's longitudinal section: per vertebra, the prior study and the change since it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from risk.measure import VertebraMeasurement
from risk.provenance import Provenance
from risk.settings import Settings
from risk.sr_writer import build_sr
from spinemets import codes
from spinemets.v1 import longitudinal_pb2, volume_pb2

PRIOR_STUDY = "1.2.826.0.1.3680043.10.1234.1"
_P = codes.PRIVATE_SCHEME


def comparison() -> longitudinal_pb2.Longitudinal:
    """L1 and L3 registered and compared (L3 without lesion in the prior), L2 failed."""
    def registration(level: str, failed: bool = False) -> longitudinal_pb2.VertebraRegistration:
        return longitudinal_pb2.VertebraRegistration(
            level=level, prior_to_current=[1, 0, 0, 2, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
            dice=0.6 if failed else 0.93, hd95_mm=4.5 if failed else 1.2, failed=failed,
            problem="Dice 0.60 below 0.80" if failed else "", refined=True)
    return longitudinal_pb2.Longitudinal(
        prior=volume_pb2.SeriesRef(study_instance_uid=PRIOR_STUDY,
                                   series_instance_uid=PRIOR_STUDY + ".1"),
        registrations=[registration("L1"), registration("L2", failed=True), registration("L3")],
        changes=[
            longitudinal_pb2.VertebraChange(level="L1", prior_ml=2.0, current_ml=3.0,
                                            change_ml=1.0, change_percent=50.0,
                                            growing_lesions=1, new_lesions=1),
            longitudinal_pb2.VertebraChange(level="L2", prior_ml=1.0, current_ml=0.0,
                                            change_ml=-1.0, change_percent=-100.0,
                                            registration_failed=True, resolved_lesions=1),
            longitudinal_pb2.VertebraChange(level="L3", prior_ml=0.0, current_ml=0.5,
                                            change_ml=0.5, new_lesions=1)])


@pytest.fixture(scope="module")
def sr_path(headers: list[Dataset], seg_path: Path,
            measurements: tuple[VertebraMeasurement, ...], provenance: Provenance,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    sr = build_sr(headers, dcmread(seg_path), measurements, provenance, Settings().equipment,
                  9702, longitudinal=comparison())
    path = tmp_path_factory.mktemp("sr") / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return path


def value(group: hd.sr.MeasurementsAndQualitativeEvaluations, key: str
          ) -> tuple[float, str] | None:
    code = _P[key]
    found = group.get_measurements(name=hd.sr.CodedConcept(code.value, code.scheme,
                                                           code.meaning))
    return None if not found else (found[0].value, found[0].unit.value)


def since_prior(report: hd.sr.MeasurementReport
                ) -> list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    """The longitudinal groups of the report, in document order."""
    return [g for g in report.get_volumetric_roi_measurement_groups()
            if g.tracking_identifier.endswith(" since prior study")]


def segment_number(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations) -> int:
    [number] = [int(item.ReferencedSOPSequence[0].ReferencedSegmentNumber)
                for item in group[0].ContentSequence if item.ValueType == "IMAGE"]
    return number


def prior_study(group: hd.sr.MeasurementsAndQualitativeEvaluations) -> list[str]:
    return [str(item.UID) for item in group[0].ContentSequence
            if item.ValueType == "UIDREF" and item.name.value == _P["prior_study"].value]


def failed(group: hd.sr.MeasurementsAndQualitativeEvaluations) -> str:
    [evaluation] = group.get_qualitative_evaluations(name=hd.sr.CodedConcept(
        _P["registration_failed"].value, codes.PRIVATE_DESIGNATOR,
        _P["registration_failed"].meaning))
    return str(evaluation.value.value)


def test_each_registered_vertebra_has_a_group_with_the_prior_study_and_the_change(
        sr_path: Path, provenance: Provenance) -> None:
    report = hd.sr.srread(sr_path).content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = since_prior(report)
    assert [g.tracking_identifier for g in groups] == [
        f"{level} vertebra since prior study" for level in ("L1", "L2", "L3")]
    # each references the segment of its vertebra, as the vertebra's own group does
    own = {g.tracking_identifier.split()[0]: segment_number(g)
           for g in report.get_volumetric_roi_measurement_groups()
           if g not in groups}
    assert [segment_number(g) for g in groups] == [own[level] for level in ("L1", "L2", "L3")]
    assert groups[0].tracking_uid == provenance.uid("longitudinal", "vertebra_L1")
    assert all(prior_study(g) == [PRIOR_STUDY] for g in groups)
    l1, l2, l3 = groups
    assert value(l1, "lesion_volume_change") == (pytest.approx(1.0), "ml")
    assert value(l1, "lesion_volume_change_percent") == (pytest.approx(50.0), "%")
    assert value(l1, "lesion_volume_prior") == (pytest.approx(2.0), "ml")
    assert value(l1, "registration_dice") == (pytest.approx(0.93), "1")
    assert value(l1, "registration_hd95") == (pytest.approx(1.2), "mm")
    assert (value(l1, "new_lesions"), value(l1, "growing_lesions")) == ((1, "{lesions}"),) * 2
    assert failed(l1) == codes.NO.value and failed(l2) == codes.YES.value
    assert value(l2, "resolved_lesions") == (1, "{lesions}")
    assert value(l3, "lesion_volume_change_percent") is None  # no lesion in the prior
    # the vertebra groups are as before
    assert len(report.get_volumetric_roi_measurement_groups()) == 6


def test_a_vertebra_registered_without_lesion_change_has_only_the_registration(
        headers: list[Dataset], seg_path: Path, measurements: tuple[VertebraMeasurement, ...],
        provenance: Provenance, tmp_path: Path) -> None:
    found = comparison()
    del found.changes[:]
    build_sr(headers, dcmread(seg_path), measurements, provenance, Settings().equipment, 9702,
             longitudinal=found).save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    report = hd.sr.srread(tmp_path / "sr.dcm").content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = since_prior(report)
    assert len(groups) == 3 and all(prior_study(g) == [PRIOR_STUDY] for g in groups)
    assert value(groups[0], "registration_dice") is not None
    assert value(groups[0], "lesion_volume_change") is None


def test_dciodvfy_reports_no_errors(sr_path: Path,
                                    dciodvfy: Callable[[Path], list[str]]) -> None:
    assert dciodvfy(sr_path) == []


def test_pixelmed_finds_tid_1500_and_no_errors(
        sr_path: Path, pixelmed: Callable[[Path], tuple[str, list[str]]]) -> None:
    output, errors = pixelmed(sr_path)
    assert "Found Root Template TID_1500 (MeasurementReport)" in output, output[-2000:]
    assert errors == []
