"""The DICOM-SEG: conformance, codes from the catalogue, frames on the source slices."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.dataset import Dataset

from risk.measure import VertebraMeasurement, measure_vertebrae
from risk.provenance import DEMO_DISCLAIMER, Provenance
from risk.seg_writer import build_seg, segment_array, source_images
from risk.settings import Settings
from spinemets import codes
from spinemets.errors import InputError
from spinemets.geometry import ENHANCED_CT_IMAGE_STORAGE, Volume, assemble_ct
from spinemets.labelmaps import LabelMap
from spinemets.uids import derived_uid

Measurements = tuple[VertebraMeasurement, ...]


def code_of(item: hd.sr.CodedConcept) -> codes.Code:
    return codes.Code(item.value, item.scheme_designator, item.meaning)


def test_dciodvfy_reports_no_errors(seg_path: Path,
                                    dciodvfy: Callable[[Path], list[str]]) -> None:
    assert dciodvfy(seg_path) == []


def test_segments_are_coded_from_the_catalogue(seg_path: Path, measurements: Measurements,
                                               provenance: Provenance) -> None:
    seg = hd.seg.segread(seg_path)
    assert seg.SegmentationType == "BINARY"
    assert [m.level for m in measurements] == ["L1", "L2", "L3"]
    assert list(seg.segment_numbers) == [1, 2, 3]
    for number, m in enumerate(measurements, start=1):
        segment = seg.get_segment_description(number)
        assert segment.segment_label == f"{m.level} vertebra"
        assert code_of(segment.segmented_property_type) == m.label.type
        assert code_of(segment.segmented_property_category) == m.label.category
        assert segment.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        assert segment.algorithm_identification is not None
        algorithm = segment.algorithm_identification[0]
        assert algorithm.AlgorithmName == f"vertebrae ({DEMO_DISCLAIMER})"
        assert algorithm.AlgorithmVersion == "1"
        assert code_of(hd.sr.CodedConcept.from_dataset(
            algorithm.AlgorithmFamilyCodeSequence[0])) == codes.ARTIFICIAL_INTELLIGENCE
        assert segment.tracking_uid == provenance.tracking_uid(m.label.name)
    assert "not for clinical use" in seg.SeriesDescription


def test_seg_belongs_to_the_source_study_and_frame_of_reference(
        seg_path: Path, ct_series: list[Dataset]) -> None:
    seg = hd.seg.segread(seg_path)
    source = ct_series[0]
    for keyword in ("StudyInstanceUID", "PatientID", "FrameOfReferenceUID"):
        assert seg.get(keyword) == source.get(keyword)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID


def test_frames_lie_at_the_positions_of_the_source_slices_they_reference(
        seg_path: Path, ct_series: list[Dataset], label_map: LabelMap,
        measurements: Measurements) -> None:
    seg = hd.seg.segread(seg_path)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in ct_series}
    numbers = segment_array(label_map, measurements)
    non_empty = sum(int(np.any(numbers[k] == n))
                    for k in range(numbers.shape[0]) for n in (1, 2, 3))
    assert seg.NumberOfFrames == non_empty  # empty frames are omitted
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(
            position, by_uid[source.ReferencedSOPInstanceUID].ImagePositionPatient, atol=1e-4)


def test_read_back_on_the_source_slices_equals_the_label_map(
        seg_path: Path, volume: Volume, label_map: LabelMap,
        measurements: Measurements) -> None:
    """highdicom maps the SEG back onto the source instances: voxel for voxel the label map."""
    seg = hd.seg.segread(seg_path)
    pixels = seg.get_pixels_by_source_instance(list(volume.slice_instance_uids),
                                               combine_segments=True)
    np.testing.assert_array_equal(pixels, segment_array(label_map, measurements))


def test_sources_follow_the_volume_slices_not_the_instance_numbers(
        volume: Volume, ct_series: list[Dataset]) -> None:
    ordered, order = source_images(volume.slice_instance_uids, ct_series)
    z = [float(ds.ImagePositionPatient[2]) for ds in ordered]
    assert z == sorted(z)
    assert [int(ds.InstanceNumber) for ds in ordered] == sorted(
        (int(ds.InstanceNumber) for ds in ordered), reverse=True)
    assert list(order) == list(range(len(ordered)))


def test_a_multiframe_source_is_referenced_frame_by_frame(
        tmp_path: Path, ct_series: list[Dataset], label_map: LabelMap,
        provenance: Provenance) -> None:
    """One multi-frame CT whose frames run head to feet, opposite to the volume's slices."""
    source = hd.legacy.LegacyConvertedEnhancedCTImage(
        ct_series, derived_uid("mf", "series"), 5, derived_uid("mf", "instance"), 1)
    source.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE  # same functional groups as Enhanced CT
    volume = assemble_ct([source])
    frames = [int(uid.split("#")[1]) for uid in volume.slice_instance_uids]
    assert frames == sorted(frames, reverse=True)
    measurements = measure_vertebrae(volume.array, label_map)
    build_seg([source], volume.slice_instance_uids, label_map, measurements, provenance,
              Settings().equipment, 9701).save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    positions = {n + 1: item.PlanePositionSequence[0].ImagePositionPatient
                 for n, item in enumerate(source.PerFrameFunctionalGroupsSequence)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        np.testing.assert_allclose(frame.PlanePositionSequence[0].ImagePositionPatient,
                                   positions[int(ref.ReferencedFrameNumber)], atol=1e-4)
    pixels = seg.get_pixels_by_source_frame(str(source.SOPInstanceUID), frames,
                                            combine_segments=True)
    np.testing.assert_array_equal(pixels, segment_array(label_map, measurements))


def test_missing_source_instances_are_an_input_error(volume: Volume,
                                                     ct_series: list[Dataset]) -> None:
    with pytest.raises(InputError, match="not received"):
        source_images(volume.slice_instance_uids, ct_series[1:])


def test_sources_without_type2_patient_and_study_attributes_still_give_a_valid_seg(
        headers: list[Dataset], volume: Volume, label_map: LabelMap,
        measurements: tuple[VertebraMeasurement, ...], provenance: Provenance,
        tmp_path: Path, dciodvfy: Callable[[Path], list[str]]) -> None:
    """Some scanners omit Type 2 attributes (seen on a real CT): they are written empty."""
    stripped = [copy.deepcopy(ds) for ds in headers]
    for ds in stripped:
        for keyword in ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
                        "AccessionNumber"):
            if keyword in ds:
                delattr(ds, keyword)
    seg = build_seg(stripped, volume.slice_instance_uids, label_map, measurements, provenance,
                    Settings().equipment, 9701)
    assert seg.PatientBirthDate == "" and seg.PatientSex == ""
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    assert dciodvfy(path) == []
