"""DICOM Segmentation (BINARY) of the vertebrae, written with highdicom.

One segment per vertebra found, numbered cranial to caudal in the order of the measurements
(segment ``i + 1`` is ``measurements[i]``), coded from the label catalogue, referencing the
source CT images frame by frame. Empty frames are omitted.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from risk.measure import VertebraMeasurement
from risk.objects import concept, content_dates
from risk.provenance import Provenance
from risk.settings import Equipment
from spinemets import codes
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


def segment_descriptions(measurements: Sequence[VertebraMeasurement], provenance: Provenance
                         ) -> list[hd.seg.SegmentDescription]:
    """One description per vertebra: catalogue codes, colour, algorithm, tracking id and UID."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name=provenance.algorithm_name, family=concept(codes.ARTIFICIAL_INTELLIGENCE),
        version=provenance.model_version)
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=m.label.display,
            segmented_property_category=concept(m.label.category),
            segmented_property_type=concept(m.label.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=provenance.tracking_uid(m.label.name),
            tracking_id=m.label.display,
            display_color=hd.color.CIELabColor.from_rgb(*m.label.rgb),
        )
        for number, m in enumerate(measurements, start=1)
    ]


def build_seg(sources: Sequence[Dataset], slice_instance_uids: Sequence[str],
              label_map: LabelMap, measurements: Sequence[VertebraMeasurement],
              provenance: Provenance, equipment: Equipment, series_number: int
              ) -> hd.seg.Segmentation:
    """The SEG of ``measurements``' vertebrae over the source CT.

    ``slice_instance_uids`` names the source image (or frame) of each slice of the label map
    (:attr:`spinemets.geometry.Volume.slice_instance_uids`); ``sources`` are the source
    instances (header only is enough).
    """
    if not measurements:
        raise ValueError("a segmentation needs at least one segment")
    ordered, order = source_images(slice_instance_uids, sources)
    return hd.seg.Segmentation(
        source_images=ordered,
        pixel_array=segment_array(label_map, measurements)[order],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(measurements, provenance),
        series_instance_uid=provenance.seg_series_uid,
        series_number=series_number,
        sop_instance_uid=provenance.seg_instance_uid,
        instance_number=1,
        manufacturer=equipment.manufacturer,
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number=equipment.device_serial_number,
        content_description=provenance.describe("Vertebrae T1-L5"),
        content_label="VERTEBRAE",
        omit_empty_frames=True,
        series_description=provenance.describe("Vertebrae T1-L5 segmentation"),
        **content_dates(ordered[0]),
    )
