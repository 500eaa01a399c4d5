"""Patient-space frames of a vertebra and sampling of volumes along lines, planes and grids.

Coordinates are DICOM patient coordinates (LPS, mm); arrays are indexed ``[slice, row,
column]`` as in :mod:`spinemets.geometry`. A vertebra's :class:`Frame` has its z axis along the
spine (cranial), y posterior and x to the patient's left, so cross-sections perpendicular to
the vertebral axis are planes of constant local z (SCIENCE.md 3, CT rigidity analysis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from spinemets.geometry import Geometry

F64 = npt.NDArray[np.float64]
#: Patient directions (LPS): superior and posterior.
SUPERIOR = np.array([0.0, 0.0, 1.0])
POSTERIOR = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class Frame:
    """A rigid frame: ``origin`` (patient mm) and ``axes`` (columns: local x, y, z)."""

    origin: F64
    axes: F64

    @property
    def axis(self) -> F64:
        """The vertebral axis (local z, cranial) in patient coordinates."""
        return np.asarray(self.axes[:, 2])

    def to_local(self, points: npt.ArrayLike) -> F64:
        """Local coordinates of patient points (..., 3)."""
        return np.asarray((np.asarray(points, dtype=np.float64) - self.origin) @ self.axes)

    def to_patient(self, local: npt.ArrayLike) -> F64:
        """Patient coordinates of local points (..., 3)."""
        return np.asarray(np.asarray(local, dtype=np.float64) @ self.axes.T + self.origin)

    def moved_to(self, origin: npt.ArrayLike) -> Frame:
        return Frame(np.asarray(origin, dtype=np.float64), self.axes)


def frame_from(origin: npt.ArrayLike, axis: npt.ArrayLike,
               posterior: npt.ArrayLike = POSTERIOR) -> Frame:
    """Right-handed frame with z along ``axis`` and y towards ``posterior`` (made orthogonal)."""
    z = np.asarray(axis, dtype=np.float64)
    z = z / np.linalg.norm(z)
    y = np.asarray(posterior, dtype=np.float64)
    y = y - (y @ z) * z
    if np.linalg.norm(y) < 1e-6:  # axis along the posterior hint: fall back to patient posterior
        y = POSTERIOR - (POSTERIOR @ z) * z
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    return Frame(np.asarray(origin, dtype=np.float64), np.stack([x, y, z], axis=1))


def index_to_patient(geometry: Geometry, kji: npt.ArrayLike) -> F64:
    """Patient coordinates of array indices ``(slice, row, column)`` (..., 3)."""
    idx = np.asarray(kji, dtype=np.float64)[..., ::-1]  # -> column, row, slice
    return geometry.index_to_patient(idx)


def patient_to_index(geometry: Geometry, points: npt.ArrayLike) -> F64:
    """Fractional array indices ``(slice, row, column)`` of patient points (..., 3)."""
    offset = np.asarray(points, dtype=np.float64) - np.asarray(geometry.origin)
    ijk = (offset @ geometry.direction) / np.asarray(geometry.spacing)
    return np.asarray(ijk[..., ::-1])


def sample(array: npt.NDArray[np.generic], geometry: Geometry, points: npt.ArrayLike,
           order: int = 1, offset: tuple[int, int, int] = (0, 0, 0),
           cval: float = 0.0) -> F64:
    """Values of ``array`` at patient points (..., 3): nearest (order 0) or trilinear (1).

    ``array`` may be a crop of the volume starting at index ``offset``; points outside it take
    ``cval``. Booleans are sampled as 0/1 (trilinear > 0.5 puts the border half way between
    voxel centres, the border of the voxelised shape).
    """
    pts = np.asarray(points, dtype=np.float64)
    idx = patient_to_index(geometry, pts) - np.asarray(offset, dtype=np.float64)
    source = array.astype(np.float32) if array.dtype == np.bool_ else array
    flat = idx.reshape(-1, 3).T
    values = ndimage.map_coordinates(source, flat, order=order, mode="constant", cval=cval,
                                     output=np.float64)
    return np.asarray(values).reshape(pts.shape[:-1])


def local_grid(frame: Frame, x: F64, y: F64, z: F64) -> F64:
    """Patient coordinates of the local grid ``z x y x x`` (shape (nz, ny, nx, 3))."""
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return frame.to_patient(np.stack([xx, yy, zz], axis=-1))


def axis_range(lo: float, hi: float, step: float) -> F64:
    """Sample positions from ``lo`` to ``hi`` (inclusive when it falls on the step)."""
    n = max(int(np.floor((hi - lo) / step + 1e-9)) + 1, 1)
    return lo + step * np.arange(n, dtype=np.float64)


def run_through(inside: npt.NDArray[np.bool_], at: int) -> tuple[int, int] | None:
    """First and last index of the run of True values of a 1-D array containing ``at``, or of
    the run nearest to it; None if there is no True value."""
    where = np.flatnonzero(inside)
    if where.size == 0:
        return None
    if not inside[at]:
        at = int(where[np.argmin(np.abs(where - at))])
    lo = at
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = at
    while hi < inside.size - 1 and inside[hi + 1]:
        hi += 1
    return lo, hi


def runs(inside: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """All runs of True values of a 1-D array as (first, last) indices."""
    padded = np.concatenate([[False], inside, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]
