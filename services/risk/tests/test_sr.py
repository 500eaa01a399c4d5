"""The TID 1500 Comprehensive 3D SR: conformance, content, values and references."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from risk.measure import VertebraMeasurement
from risk.provenance import DEMO_DISCLAIMER, Provenance
from spinemets import codes

Measurements = tuple[VertebraMeasurement, ...]


def report_of(path: Path) -> hd.sr.MeasurementReport:
    report = hd.sr.srread(path).content
    assert isinstance(report, hd.sr.MeasurementReport)
    return report


def code_of(item: hd.sr.CodedConcept) -> codes.Code:
    return codes.Code(item.value, item.scheme_designator, item.meaning)


def test_dciodvfy_reports_no_errors(sr_path: Path,
                                    dciodvfy: Callable[[Path], list[str]]) -> None:
    assert dciodvfy(sr_path) == []


def test_one_group_per_vertebra_with_codes_values_and_units(
        sr_path: Path, measurements: Measurements, provenance: Provenance) -> None:
    groups = report_of(sr_path).get_volumetric_roi_measurement_groups()
    assert len(groups) == len(measurements) == 3
    for group, m in zip(groups, measurements, strict=True):
        assert group.tracking_identifier == f"{m.level} vertebra"
        assert group.tracking_uid == provenance.tracking_uid(m.label.name)
        assert group.finding_type is not None
        assert code_of(group.finding_type) == m.label.type
        assert [code_of(site.value) for site in group.finding_sites] == [m.label.type]
        volume = group.get_measurements(name=hd.sr.CodedConcept(*_fields(codes.VOLUME)))
        assert len(volume) == 1
        assert volume[0].value == pytest.approx(m.volume_ml)
        assert code_of(volume[0].unit) == codes.MILLILITER
        attenuation = group.get_measurements(
            name=hd.sr.CodedConcept(*_fields(codes.ATTENUATION_COEFFICIENT)))
        assert len(attenuation) == 1
        assert attenuation[0].value == pytest.approx(m.mean_hu)
        assert code_of(attenuation[0].unit) == codes.HOUNSFIELD_UNIT
        assert attenuation[0].derivation is not None
        assert code_of(attenuation[0].derivation) == codes.MEAN


def _fields(code: codes.Code) -> tuple[str, str, str]:
    return code.value, code.scheme, code.meaning


def test_groups_reference_their_segment_of_the_seg(sr_path: Path, seg_path: Path,
                                                   ct_series: list[Dataset]) -> None:
    seg = hd.seg.segread(seg_path)
    groups = report_of(sr_path).get_volumetric_roi_measurement_groups()
    for group in groups:
        ref = group.referenced_segment
        assert ref is not None
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert ref.referenced_sop_class_uid == seg.SOPClassUID
        assert ref.referenced_segment_numbers is not None
        (number,) = ref.referenced_segment_numbers
        segment = seg.get_segment_description(number)
        assert segment.tracking_uid == group.tracking_uid
        source_series = ref.source_series_for_segmentation
        assert source_series is not None
        assert source_series.value == ct_series[0].SeriesInstanceUID


def test_evidence_lists_the_seg_and_the_source_images(sr_path: Path, seg_path: Path,
                                                      ct_series: list[Dataset]) -> None:
    sr = dcmread(sr_path)
    evidence = {item.ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence}
    assert evidence == {dcmread(seg_path).SOPInstanceUID} | {
        ds.SOPInstanceUID for ds in ct_series}
    assert sr.StudyInstanceUID == ct_series[0].StudyInstanceUID


def test_the_observer_is_the_model_marked_as_a_demo(sr_path: Path,
                                                    provenance: Provenance) -> None:
    sr = dcmread(sr_path)
    (observer,) = report_of(sr_path).get_observer_contexts()
    assert code_of(observer.observer_type) == codes.DEVICE
    device = observer.observer_identifying_attributes
    assert isinstance(device, hd.sr.DeviceObserverIdentifyingAttributes)
    assert device.uid == provenance.device_uid
    assert device.name == f"vertebrae ({DEMO_DISCLAIMER})"
    assert "not for clinical use" in sr.SeriesDescription
    assert (sr.VerificationFlag, sr.PreliminaryFlag, sr.CompletionFlag) == (
        "UNVERIFIED", "PRELIMINARY", "COMPLETE")


def test_pixelmed_sr_validator_finds_no_errors(
        sr_path: Path, pixelmed: Callable[[Path], tuple[str, list[str]]]) -> None:
    _, errors = pixelmed(sr_path)
    assert errors == []


