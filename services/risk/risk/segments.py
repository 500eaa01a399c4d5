"""The segments of the result objects: what each one shows, its number, volume and model.

:func:`plan_segments` fixes the order that the SEG and the SR share (segment ``i + 1`` is
element ``i``): the vertebrae in the order of the measurements, the muscles found in catalogue
order, then per vertebra (cranial to caudal) its lytic, blastic and mixed lesions as kept by the
lesion-type rule (:mod:`risk.lesion_type`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from risk.lesion_type import VertebraLesions
from risk.measure import VertebraMeasurement, volume_ml
from risk.provenance import Provenance
from spinemets import labels
from spinemets.labelmaps import LabelMap


@dataclass(frozen=True)
class Segment:
    """One segment: the catalogue entry it shows, its label, tracking key, model and volume."""

    label: labels.Label
    text: str  # Segment Label and Tracking ID
    key: str  # tracking key: the same structure keeps its tracking UID
    provenance: Provenance  # of the model that found it
    volume_ml: float
    region: labels.Label | None = None  # lesions: the vertebra they lie in

    @property
    def tracking_uid(self) -> str:
        return self.provenance.tracking_uid(self.key)


def lesion_segment_text(level: str, kind: str) -> str:
    """Segment label and tracking identifier of the ``kind`` lesions of vertebra ``level``."""
    return f"{level} {kind} lesion"


def plan_segments(measurements: Sequence[VertebraMeasurement], provenance: Provenance,
                  muscles: LabelMap | None = None, lesions: Sequence[VertebraLesions] = (),
                  lesion_map: LabelMap | None = None) -> list[Segment]:
    """The segments in SEG order. ``lesions`` are the lesion-type results of ``lesion_map``."""
    planned = [Segment(m.label, m.label.display, m.label.name, provenance, m.volume_ml)
               for m in measurements]
    if muscles is not None:
        counts = np.bincount(muscles.array.ravel(), minlength=256)
        for label in labels.in_group(labels.Group.MUSCLE):
            voxels = sum(int(counts[v]) for v, n in muscles.labels.items() if n == label.name)
            if voxels:
                planned.append(Segment(label, label.display, label.name, provenance.of(muscles),
                                       volume_ml(voxels, muscles.geometry)))
    if lesions and lesion_map is None:
        raise ValueError("lesion segments need the lesion model's label map")
    for vertebra in lesions:
        for kind, volume in vertebra.volume_ml.items():
            if volume > 0 and lesion_map is not None:
                planned.append(Segment(labels.by_name(f"lesion_{kind}"),
                                       lesion_segment_text(vertebra.level, kind),
                                       f"lesion_{kind}_{vertebra.level}",
                                       provenance.of(lesion_map), volume, vertebra.vertebra))
    return planned
