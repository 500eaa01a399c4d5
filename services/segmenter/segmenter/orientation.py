"""Reorientation of volumes to a model's canonical array order, and back.

Canonical order (``model.json`` ``"orientation"``): array axes ``(z, y, x)`` with the slice index
increasing towards Superior, and for ``"LPS"`` (the project's models) the row index towards
Posterior and the column index towards patient Left; for ``"RAS"`` (models trained on
RAS-canonical NIfTI read by SimpleITK, as TotalSegmentator's) towards Anterior and Right. Any
series whose axes are each closest to a different patient axis (axial,
sagittal, coronal, in any direction) is brought there by an axis permutation and flips only, so
voxel values are never interpolated and the way back is exact. A residual obliquity is kept as it
is (the network sees the voxels as acquired), as nnU-Net does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from spinemets.errors import GeometryError
from spinemets.geometry import Geometry

#: Patient axis (0 = x, 1 = y, 2 = z) of each canonical array axis (z, y, x).
_CANONICAL_PATIENT_AXES = (2, 1, 0)
#: Sign of the LPS patient direction each canonical axis (z, y, x) runs along, per orientation.
_SIGNS = {"LPS": (1.0, 1.0, 1.0), "RAS": (1.0, -1.0, -1.0)}

Scalar = TypeVar("Scalar", bound=np.generic)


@dataclass(frozen=True)
class Reorientation:
    """Axis permutation and flips between a ``[slice, row, column]`` array and canonical order.

    ``axes[c]`` is the source array axis that becomes canonical axis ``c``; ``flips[c]`` says
    whether it is reversed. ``spacing_zyx`` is the voxel spacing (mm) in canonical order.
    """

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    spacing_zyx: tuple[float, float, float]

    @classmethod
    def of(cls, geometry: Geometry, orientation: str = "LPS") -> Reorientation:
        """The reorientation of a grid to ``orientation`` ("LPS" or "RAS"), from its cosines.

        Raises :class:`GeometryError` when two array axes are closest to the same patient axis
        (an oblique grid near 45 degrees that no permutation can bring to canonical order).
        """
        direction = np.asarray(geometry.direction, dtype=np.float64)
        # Array axes [slice, row, column] run along the normal, column and row directions.
        source_dirs = (direction[:, 2], direction[:, 1], direction[:, 0])
        source_spacing = (geometry.spacing[2], geometry.spacing[1], geometry.spacing[0])
        patient_axis = [int(np.argmax(np.abs(d))) for d in source_dirs]
        if sorted(patient_axis) != [0, 1, 2]:
            raise GeometryError(
                "the grid's axes cannot be matched to patient axes (oblique by about 45 degrees)",
                reason="oblique-orientation")
        axes = tuple(patient_axis.index(p) for p in _CANONICAL_PATIENT_AXES)
        flips = tuple(bool(source_dirs[a][p] * sign < 0) for a, p, sign
                      in zip(axes, _CANONICAL_PATIENT_AXES, _SIGNS[orientation], strict=True))
        return cls((axes[0], axes[1], axes[2]), (flips[0], flips[1], flips[2]),
                   (source_spacing[axes[0]], source_spacing[axes[1]], source_spacing[axes[2]]))

    def _flipped(self) -> tuple[int, ...]:
        return tuple(c for c in range(3) if self.flips[c])

    def to_canonical(self, array: npt.NDArray[Scalar]) -> npt.NDArray[Scalar]:
        """The array in canonical ``(z, y, x)`` order (a view)."""
        return np.flip(np.transpose(array, self.axes), axis=self._flipped())

    def from_canonical(self, array: npt.NDArray[Scalar]) -> npt.NDArray[Scalar]:
        """Inverse of :meth:`to_canonical`: back to the source ``[slice, row, column]`` order."""
        return np.transpose(np.flip(array, axis=self._flipped()), np.argsort(self.axes))
