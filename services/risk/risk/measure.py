"""Per-vertebra measurements on a CT volume and its label map: volume and mean attenuation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from spinemets import labels
from spinemets.errors import GeometryError, InputError
from spinemets.geometry import Geometry
from spinemets.labelmaps import LabelMap

#: Largest origin or spacing difference (mm) between a CT and a label map on the "same" grid.
GRID_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class VertebraMeasurement:
    """Measurements of one vertebra (a catalogue label of group VERTEBRA)."""

    label: labels.Label
    voxels: int
    volume_ml: float
    mean_hu: float

    @property
    def level(self) -> str:
        """Vertebral level, "T1" .. "L5"."""
        return self.label.name.removeprefix("vertebra_")


def volume_ml(voxels: int, geometry: Geometry) -> float:
    """Volume of ``voxels`` voxels of ``geometry`` in mL (1 mL = 1000 mm3)."""
    return voxels * geometry.voxel_volume_mm3 / 1000.0


def check_same_grid(a: Geometry, b: Geometry) -> None:
    """Raise :class:`GeometryError` unless two geometries describe the same voxel grid."""
    same = (a.size == b.size
            and np.allclose(a.spacing, b.spacing, atol=GRID_TOLERANCE_MM)
            and np.allclose(a.origin, b.origin, atol=GRID_TOLERANCE_MM)
            and np.allclose(a.direction, b.direction, atol=1e-6))
    if not same:
        raise GeometryError("label map and CT volume are not on the same grid",
                            reason="grid-mismatch")


def measure_vertebrae(ct: npt.NDArray[np.int16], label_map: LabelMap
                      ) -> tuple[VertebraMeasurement, ...]:
    """Volume and mean HU of every vertebra present in ``label_map``, cranial to caudal.

    ``ct`` is the HU array on the label map's grid. One pass over the voxels: counts and HU sums
    per label value by :func:`numpy.bincount`.
    """
    values: npt.NDArray[Any] = label_map.array
    if ct.shape != values.shape:
        raise GeometryError(f"label map shape {values.shape} differs from CT shape {ct.shape}",
                            reason="grid-mismatch")
    if not np.issubdtype(values.dtype, np.integer) or (values.size and values.min() < 0):
        raise InputError("label map values must be non-negative integers",
                         reason="bad-label-map")
    flat = values.ravel()
    counts = np.bincount(flat)
    sums = np.bincount(flat, weights=ct.ravel().astype(np.float64))
    found: list[VertebraMeasurement] = []
    for label in labels.in_group(labels.Group.VERTEBRA):
        keys = [v for v, name in label_map.labels.items() if name == label.name and v < counts.size]
        n = int(sum(counts[v] for v in keys))
        if n == 0:
            continue
        total = float(sum(sums[v] for v in keys))
        found.append(VertebraMeasurement(label, n, volume_ml(n, label_map.geometry), total / n))
    return tuple(found)
