"""Reading our result objects back: TID 1500 measurement groups from an SR, masks from a SEG.

Used by the demo to print what arrived at the PACS, and by the integration tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset

from spinemets.geometry import Volume


@dataclass(frozen=True)
class GroupReading:
    """One measurement group of a TID 1500 report: tracking identifier, numeric and coded
    values."""

    tracking_identifier: str
    values: dict[str, tuple[float, str]]  # concept meaning -> (last value, UCUM unit)
    referenced_segment: int | None
    codes: dict[str, str]  # concept meaning -> code meaning (e.g. qualitative evaluations)
    #: concept meaning -> every value of that concept (e.g. one per activity, told apart by
    #: concept modifiers), in document order
    series: dict[str, list[float]]


def _items(ds: Dataset) -> list[Dataset]:
    return list(ds.get("ContentSequence", []))


def _meaning(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


def read_measurement_groups(path: Path) -> list[GroupReading]:
    """All Measurement Groups (TID 1411) of the SR at ``path``, in document order."""
    sr = pydicom.dcmread(path)
    groups: list[GroupReading] = []
    for container in _items(sr):
        if _meaning(container) != "Imaging Measurements":
            continue
        for group in _items(container):
            if _meaning(group) != "Measurement Group":
                continue
            tracking, segment, values, coded = "", None, {}, {}
            series: dict[str, list[float]] = {}
            for item in _items(group):
                meaning = _meaning(item)
                if item.ValueType == "TEXT" and meaning == "Tracking Identifier":
                    tracking = str(item.TextValue)
                elif item.ValueType == "NUM":
                    measured = item.MeasuredValueSequence[0]
                    unit = str(measured.MeasurementUnitsCodeSequence[0].CodeValue)
                    values[meaning] = (float(measured.NumericValue), unit)
                    series.setdefault(meaning, []).append(float(measured.NumericValue))
                elif item.ValueType == "CODE":
                    coded[meaning] = str(item.ConceptCodeSequence[0].CodeMeaning)
                elif item.ValueType == "IMAGE" and "ReferencedSOPSequence" in item:
                    ref = item.ReferencedSOPSequence[0]
                    if "ReferencedSegmentNumber" in ref:
                        segment = int(ref.ReferencedSegmentNumber)
            groups.append(GroupReading(tracking, values, segment, coded, series))
    return groups


def seg_masks_on_volume(path: Path, volume: Volume) -> dict[str, npt.NDArray[np.bool_]]:
    """Masks of every segment of the SEG at ``path`` on the grid of ``volume``, by segment label.

    Frames are placed by their referenced source instance, so a SEG that does not sit on the
    source slices raises instead of being silently shifted.
    """
    seg = hd.seg.segread(path)
    index = {uid: k for k, uid in enumerate(volume.slice_instance_uids)}
    masks: dict[str, npt.NDArray[np.bool_]] = {}
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        mask = np.zeros(volume.array.shape, dtype=bool)
        for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
            if int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber) != number:
                continue
            source = item.DerivationImageSequence[0].SourceImageSequence[0]
            k = index[str(source.ReferencedSOPInstanceUID)]
            mask[k] |= seg.get_stored_frame(frame + 1).astype(bool)
        masks[str(description.SegmentLabel)] = mask
    return masks


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    """Dice coefficient of two masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total
