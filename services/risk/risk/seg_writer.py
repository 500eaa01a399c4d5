"""DICOM Segmentation (BINARY) of the vertebrae, paraspinal muscles and lesions, with highdicom.

Segments, numbered in this order, all coded from the label catalogue:

1. one per vertebra found, cranial to caudal in the order of the measurements (segment
   ``i + 1`` is ``measurements[i]``): category Anatomical Structure, type the vertebra;
2. one per muscle the muscle model found, in catalogue order: type the muscle, its side as
   Segmented Property Type Modifier (SCT Left / Right), as TotalSegmentator and dcmqi code
   lateral structures;
3. one per vertebra and lesion type holding lesion voxels that the lesion-type rule keeps
   (:mod:`risk.lesion_type`), cranial to caudal, lytic / blastic / mixed: category
   Morphologically Altered Structure, type Neoplasm, the lesion type (private scheme) as type
   modifier, Anatomic Region the vertebra, label e.g. "L2 lytic lesion". Lesion segments lie
   inside their vertebra's segment (Segments Overlap YES).

Every segment names the model that found it (algorithm name and version, demo disclaimer) and
carries a tracking identifier and UID that the SR's groups repeat. Frames reference the source
CT images one by one; empty frames are omitted. With muscles or lesions the segments are passed
to highdicom stacked (one boolean volume per segment), else as one array of segment numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from risk.lesion_type import VertebraLesions
from risk.measure import VertebraMeasurement
from risk.objects import concept, content_dates
from risk.provenance import Provenance
from risk.segments import Segment, plan_segments
from risk.settings import Equipment
from spinemets import codes, labels
from spinemets.errors import InputError
from spinemets.labelmaps import LabelMap

#: Type 2 attributes of the Patient and General Study modules that the result objects copy from
#: their source. Some scanners omit them; Type 2 may be empty, so they are added empty.
COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def complete_type2(datasets: Sequence[Dataset]) -> None:
    """Add the :data:`COPIED_TYPE2` attributes a source lacks, empty (in memory only)."""
    for ds in datasets:
        for keyword in COPIED_TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")


def source_images(slice_instance_uids: Sequence[str], datasets: Sequence[Dataset]
                  ) -> tuple[list[Dataset], npt.NDArray[np.intp]]:
    """Source images in the order highdicom pairs them with frames, and the slice order.

    Returns ``(sources, order)`` such that ``array[order]`` lines up with ``sources``: for a
    series of single-frame images, ``sources[k]`` is the image of slice ``k`` (``order`` is the
    identity); for one multi-frame image (slice UIDs ``"<uid>#<frame>"``) ``sources`` is that
    image and ``array[order][f - 1]`` is the slice of frame ``f``.
    """
    complete_type2(datasets)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    if all("#" in uid for uid in slice_instance_uids):
        uids = {uid.split("#")[0] for uid in slice_instance_uids}
        frames = [int(uid.split("#")[1]) for uid in slice_instance_uids]
        uid = uids.pop()
        if uids or uid not in by_uid or sorted(frames) != list(range(1, len(frames) + 1)):
            raise InputError("slice references do not match the frames of one source instance",
                             reason="source-mismatch")
        return [by_uid[uid]], np.argsort(frames)
    missing = [uid for uid in slice_instance_uids if uid not in by_uid]
    if missing:
        raise InputError(f"{len(missing)} source instances of the volume were not received",
                         reason="source-mismatch")
    return [by_uid[uid] for uid in slice_instance_uids], np.arange(len(slice_instance_uids))


def segment_array(label_map: LabelMap, measurements: Sequence[VertebraMeasurement]
                  ) -> npt.NDArray[np.uint8]:
    """The label map recoded to segment numbers (0 = none), ``[slice, row, column]``."""
    lookup = np.zeros(int(label_map.array.max(initial=0)) + 1, dtype=np.uint8)
    for number, m in enumerate(measurements, start=1):
        for value, name in label_map.labels.items():
            if name == m.label.name and value < lookup.size:
                lookup[value] = number
    array: npt.NDArray[np.uint8] = lookup[label_map.array]
    return array


def stacked_array(label_map: LabelMap, measurements: Sequence[VertebraMeasurement],
                  muscles: LabelMap | None, lesions: Sequence[VertebraLesions],
                  segments: Sequence[Segment]) -> npt.NDArray[np.bool_]:
    """One boolean volume per segment, ``[slice, row, column, segment]`` (segments may overlap).

    ``segments`` come from :func:`plan_segments` with the same arguments.
    """
    shape = label_map.array.shape
    out = np.zeros((*shape, len(segments)), dtype=bool)
    numbers = segment_array(label_map, measurements)
    for index in range(len(measurements)):
        out[..., index] = numbers == index + 1
    lesions_of = {v.vertebra.name: v for v in lesions}
    for index, segment in enumerate(segments[len(measurements):], start=len(measurements)):
        if segment.region is not None:
            vertebra = lesions_of[segment.region.name]
            kind = segment.label.name.removeprefix("lesion_")
            out[(*vertebra.box, index)] = vertebra.masks[kind]
        elif muscles is not None:
            out[..., index] = muscles.mask(segment.label.name)
    return out


def segment_descriptions(segments: Sequence[Segment]) -> list[hd.seg.SegmentDescription]:
    """One description per segment: catalogue codes (laterality and lesion type as type
    modifier, the vertebra of a lesion as anatomic region), colour, algorithm, tracking."""
    descriptions = []
    for number, segment in enumerate(segments, start=1):
        label = segment.label
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment.text,
            segmented_property_category=concept(label.category),
            segmented_property_type=concept(label.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name=segment.provenance.algorithm_name,
                family=concept(codes.ARTIFICIAL_INTELLIGENCE),
                version=segment.provenance.model_version),
            tracking_uid=segment.tracking_uid,
            tracking_id=segment.text,
            anatomic_regions=None if segment.region is None else [concept(segment.region.type)],
            display_color=hd.color.CIELabColor.from_rgb(*label.rgb),
        )
        if label.modifier is not None:
            prop = description.SegmentedPropertyTypeCodeSequence[0]
            prop.SegmentedPropertyTypeModifierCodeSequence = [concept(label.modifier)]
        descriptions.append(description)
    return descriptions


def build_seg(sources: Sequence[Dataset], slice_instance_uids: Sequence[str],
              label_map: LabelMap, measurements: Sequence[VertebraMeasurement],
              provenance: Provenance, equipment: Equipment, series_number: int, *,
              muscles: LabelMap | None = None, lesions: Sequence[VertebraLesions] = (),
              lesion_map: LabelMap | None = None) -> hd.seg.Segmentation:
    """The SEG of ``measurements``' vertebrae, the muscles of ``muscles`` and the lesions of
    ``lesions`` (found by the model of ``lesion_map``) over the source CT.

    ``slice_instance_uids`` names the source image (or frame) of each slice of the label maps
    (:attr:`spinemets.geometry.Volume.slice_instance_uids`), all on one grid; ``sources`` are
    the source instances (header only is enough).
    """
    if not measurements:
        raise ValueError("a segmentation needs at least one segment")
    ordered, order = source_images(slice_instance_uids, sources)
    segments = plan_segments(measurements, provenance, muscles, lesions, lesion_map)
    pixels: npt.NDArray[np.bool_] | npt.NDArray[np.uint8] = (
        segment_array(label_map, measurements) if len(segments) == len(measurements)
        else stacked_array(label_map, measurements, muscles, lesions, segments))
    return hd.seg.Segmentation(
        source_images=ordered,
        pixel_array=pixels[order],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(segments),
        series_instance_uid=provenance.seg_series_uid,
        series_number=series_number,
        sop_instance_uid=provenance.seg_instance_uid,
        instance_number=1,
        manufacturer=equipment.manufacturer,
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number=equipment.device_serial_number,
        content_description=provenance.describe(contents(segments)),
        content_label="VERTEBRAE" if len(segments) == len(measurements) else "SPINE",
        omit_empty_frames=True,
        series_description=provenance.describe(
            "Vertebrae T1-L5 segmentation" if len(segments) == len(measurements)
            else contents(segments)),
        **content_dates(ordered[0]),
    )


def contents(segments: Sequence[Segment]) -> str:
    """What the segments show, for Content and Series Description."""
    groups = {segment.label.group for segment in segments}
    if groups == {labels.Group.VERTEBRA}:
        return "Vertebrae T1-L5"
    return ", ".join(name for group, name in ((labels.Group.VERTEBRA, "Vertebrae"),
                                              (labels.Group.MUSCLE, "muscles"),
                                              (labels.Group.LESION, "lesions"))
                     if group in groups)
