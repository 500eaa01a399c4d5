"""SEG and SR with muscle and lesion segments: codes, laterality, regions, pixels, SR content."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from risk.lesion_type import LesionTypeSettings, VertebraLesions, analyse
from risk.measure import VertebraMeasurement
from risk.provenance import DEMO_DISCLAIMER, Provenance
from risk.seg_writer import build_seg
from risk.settings import Settings
from risk.sr_writer import build_sr
from spinemets import codes, labels
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

Measurements = tuple[VertebraMeasurement, ...]
#: 1.4 mm3 voxels: a lesion needs at least 15 voxels.
SETTINGS = LesionTypeSettings(min_lesion_ml=0.02)
MUSCLES = {"psoas_major_left": (slice(2, 10), slice(8, 14), slice(40, 46)),  # +x: patient left
           "psoas_major_right": (slice(2, 10), slice(8, 14), slice(2, 8)),
           "deep_back_muscle_left": (slice(0, 12), slice(33, 39), slice(28, 36))}


def code_of(item: Dataset) -> codes.Code:
    return codes.Code(str(item.CodeValue), str(item.CodingSchemeDesignator),
                      str(item.CodeMeaning))


@pytest.fixture(scope="module")
def muscles(label_map: LabelMap) -> LabelMap:
    array = np.zeros_like(label_map.array)
    for name, box in MUSCLES.items():
        array[box] = labels.by_name(name).value
    return LabelMap(array, label_map.geometry, {labels.by_name(n).value: n for n in MUSCLES},
                    "muscles", "1", demo=True)


@pytest.fixture(scope="module")
def lesion_map(label_map: LabelMap) -> LabelMap:
    """L2 (slices 4-7): lytic; L1 (slices 8-10): lytic and blastic halves (mixed); L3: a speck."""
    array = np.zeros_like(label_map.array)
    array[4:7, 20:25, 20:25] = labels.by_name("lesion_lytic").value  # 75 voxels, 0.105 mL
    array[8:10, 20:24, 20:24] = labels.by_name("lesion_lytic").value
    array[8:10, 20:24, 24:28] = labels.by_name("lesion_blastic").value
    array[1, 22, 24] = labels.by_name("lesion_mixed").value  # below the minimum
    names = {labels.by_name(f"lesion_{k}").value: f"lesion_{k}"
             for k in ("lytic", "blastic", "mixed")}
    return LabelMap(array, label_map.geometry, names, "lesions", "3", demo=True)


@pytest.fixture(scope="module")
def lesions(label_map: LabelMap, lesion_map: LabelMap) -> tuple[VertebraLesions, ...]:
    return analyse(label_map, lesion_map, SETTINGS)


@pytest.fixture(scope="module")
def full_provenance(provenance: Provenance, muscles: LabelMap,
                    lesion_map: LabelMap) -> Provenance:
    return provenance.with_maps(muscles, lesion_map)


@pytest.fixture(scope="module")
def objects(headers: list[Dataset], volume: Volume, label_map: LabelMap,
            measurements: Measurements, full_provenance: Provenance, muscles: LabelMap,
            lesion_map: LabelMap, lesions: tuple[VertebraLesions, ...],
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("findings")
    seg = build_seg(headers, volume.slice_instance_uids, label_map, measurements,
                    full_provenance, Settings().equipment, 9701, muscles=muscles,
                    lesions=lesions, lesion_map=lesion_map)
    seg.save_as(folder / "seg.dcm", enforce_file_format=True)
    sr = build_sr(headers, dcmread(folder / "seg.dcm"), measurements, full_provenance,
                  Settings().equipment, 9702, muscles=muscles, lesions=lesions,
                  lesion_map=lesion_map)
    sr.save_as(folder / "sr.dcm", enforce_file_format=True)
    return folder / "seg.dcm", folder / "sr.dcm"


EXPECTED = ["L1 vertebra", "L2 vertebra", "L3 vertebra", "Deep muscle of back, left",
            "Psoas major muscle, left", "Psoas major muscle, right", "L1 lytic lesion",
            "L1 blastic lesion", "L2 lytic lesion"]


def test_dciodvfy_reports_no_errors(objects: tuple[Path, Path],
                                    dciodvfy: Callable[[Path], list[str]]) -> None:
    assert dciodvfy(objects[0]) == []
    assert dciodvfy(objects[1]) == []


def test_segments_follow_vertebrae_muscles_lesions(objects: tuple[Path, Path]) -> None:
    seg = hd.seg.segread(objects[0])
    assert [seg.get_segment_description(n).segment_label
            for n in seg.segment_numbers] == EXPECTED
    assert seg.SegmentsOverlap == "YES"
    assert "muscles, lesions" in seg.SeriesDescription
    assert "not for clinical use" in seg.SeriesDescription


def test_muscle_segments_carry_their_side(objects: tuple[Path, Path]) -> None:
    seg = dcmread(objects[0])
    for item in seg.SegmentSequence[3:6]:
        name = {"left": "_left", "right": "_right"}[item.SegmentLabel.split(", ")[1]]
        label = next(lb for lb in labels.in_group(labels.Group.MUSCLE)
                     if lb.display == item.SegmentLabel)
        assert label.name.endswith(name)
        assert code_of(item.SegmentedPropertyCategoryCodeSequence[0]) == labels.ANATOMICAL_STRUCTURE
        prop = item.SegmentedPropertyTypeCodeSequence[0]
        assert code_of(prop) == label.type
        (modifier,) = prop.SegmentedPropertyTypeModifierCodeSequence
        assert code_of(modifier) == (labels.LEFT if name == "_left" else labels.RIGHT)
        assert "AnatomicRegionSequence" not in item
        assert item.SegmentAlgorithmName == f"muscles ({DEMO_DISCLAIMER})"


def test_lesion_segments_are_neoplasms_in_their_vertebra(objects: tuple[Path, Path]) -> None:
    seg = dcmread(objects[0])
    for item, (level, kind) in zip(seg.SegmentSequence[6:], [("L1", "lytic"), ("L1", "blastic"),
                                                            ("L2", "lytic")], strict=True):
        assert code_of(item.SegmentedPropertyCategoryCodeSequence[0]) == (
            labels.MORPHOLOGICALLY_ALTERED_STRUCTURE)
        prop = item.SegmentedPropertyTypeCodeSequence[0]
        assert code_of(prop) == labels.NEOPLASM
        (modifier,) = prop.SegmentedPropertyTypeModifierCodeSequence
        assert code_of(modifier) == codes.PRIVATE_SCHEME[f"lesion_{kind}"]
        (region,) = item.AnatomicRegionSequence
        assert code_of(region) == labels.vertebra(level).type
        assert item.SegmentAlgorithmName == f"lesions ({DEMO_DISCLAIMER})"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "3"


def test_pixels_read_back_segment_by_segment(objects: tuple[Path, Path], volume: Volume,
                                             label_map: LabelMap, muscles: LabelMap,
                                             lesion_map: LabelMap) -> None:
    seg = hd.seg.segread(objects[0])
    pixels = seg.get_pixels_by_source_instance(list(volume.slice_instance_uids))
    assert pixels.shape == (*label_map.array.shape, len(EXPECTED))
    for index, level in enumerate(("L1", "L2", "L3")):
        np.testing.assert_array_equal(pixels[..., index], label_map.mask(f"vertebra_{level}"))
    for index, name in enumerate(("deep_back_muscle_left", "psoas_major_left",
                                  "psoas_major_right"), start=3):
        np.testing.assert_array_equal(pixels[..., index], muscles.mask(name))
    l1 = label_map.mask("vertebra_L1")
    np.testing.assert_array_equal(pixels[..., 6], lesion_map.mask("lesion_lytic") & l1)
    np.testing.assert_array_equal(pixels[..., 7], lesion_map.mask("lesion_blastic") & l1)
    np.testing.assert_array_equal(pixels[..., 8], lesion_map.mask("lesion_lytic")
                                  & label_map.mask("vertebra_L2"))
    assert not (pixels[..., 6:] & ~pixels[..., :3].any(axis=-1, keepdims=True)).any()


def test_sr_reports_the_lesion_type_of_every_vertebra(objects: tuple[Path, Path]) -> None:
    report = hd.sr.srread(objects[1]).content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = {g.tracking_identifier: g for g in report.get_volumetric_roi_measurement_groups()}
    assert list(groups) == EXPECTED
    name = hd.sr.CodedConcept(*_fields(codes.PRIVATE_SCHEME["lesion_type"]))
    types = {}
    for level in ("L1", "L2", "L3"):
        (evaluation,) = groups[f"{level} vertebra"].get_qualitative_evaluations(name=name)
        types[level] = _code(evaluation.value)
    assert types == {"L1": codes.PRIVATE_SCHEME["lesion_mixed"],
                     "L2": codes.PRIVATE_SCHEME["lesion_lytic"], "L3": codes.NONE}


def test_sr_groups_of_muscles_and_lesions_reference_their_segments(
        objects: tuple[Path, Path], lesions: tuple[VertebraLesions, ...],
        muscles: LabelMap) -> None:
    seg = hd.seg.segread(objects[0])
    report = hd.sr.srread(objects[1]).content
    assert isinstance(report, hd.sr.MeasurementReport)
    groups = report.get_volumetric_roi_measurement_groups()
    voxel_ml = muscles.geometry.voxel_volume_mm3 / 1000
    by_level = {v.level: v for v in lesions}
    for group in groups[3:]:
        ref = group.referenced_segment
        assert ref is not None and ref.referenced_segment_numbers is not None
        (number,) = ref.referenced_segment_numbers
        segment = seg.get_segment_description(number)
        assert segment.segment_label == group.tracking_identifier
        assert segment.tracking_uid == group.tracking_uid
        (volume,) = group.get_measurements(name=hd.sr.CodedConcept(*_fields(codes.VOLUME)))
        (site,) = group.finding_sites
        text = group.tracking_identifier
        if text.endswith("lesion"):
            level, kind, _ = text.split()
            assert volume.value == pytest.approx(by_level[level].volume_ml[kind])
            assert _code(site.value) == labels.vertebra(level).type
            assert group.finding_category is not None
            assert _code(group.finding_category) == labels.MORPHOLOGICALLY_ALTERED_STRUCTURE
        else:
            label = next(lb for lb in labels.in_group(labels.Group.MUSCLE) if lb.display == text)
            assert volume.value == pytest.approx(muscles.mask(label.name).sum() * voxel_ml)
            assert site.laterality is not None
            assert _code(site.laterality) == label.modifier


def test_uids_follow_every_model(provenance: Provenance, muscles: LabelMap,
                                 lesion_map: LabelMap, full_provenance: Provenance) -> None:
    assert provenance.with_maps(None, None).seg_instance_uid == provenance.seg_instance_uid
    assert full_provenance.seg_instance_uid != provenance.seg_instance_uid
    newer = LabelMap(lesion_map.array, lesion_map.geometry, lesion_map.labels, "lesions", "4")
    assert (provenance.with_maps(muscles, newer).seg_instance_uid
            != full_provenance.seg_instance_uid)


def _fields(code: codes.Code) -> tuple[str, str, str]:
    return code.value, code.scheme, code.meaning


def _code(item: hd.sr.CodedConcept) -> codes.Code:
    return codes.Code(item.value, item.scheme_designator, item.meaning)


def test_pixelmed_sr_validator_finds_no_errors(
        objects: tuple[Path, Path], pixelmed: Callable[[Path], tuple[str, list[str]]]) -> None:
    _, errors = pixelmed(objects[1])
    assert errors == []


