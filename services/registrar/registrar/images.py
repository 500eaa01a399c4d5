"""Voxel arrays of a study in patient space: crops round a structure, SimpleITK images.

Arrays are indexed ``[slice, row, column]`` on a :class:`~spinemets.geometry.Geometry`;
points are patient coordinates (LPS, mm).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk  # noqa: N813 - the conventional alias

from spinemets.geometry import Geometry

Block = tuple[slice, slice, slice]
Points = npt.NDArray[np.float64]


def shape_of(geometry: Geometry) -> tuple[int, int, int]:
    """Array shape ``(slices, rows, columns)`` of a geometry."""
    columns, rows, slices = geometry.size
    return slices, rows, columns


def grown(block: Block, geometry: Geometry, margin_mm: float) -> Block:
    """``block`` grown by ``margin_mm`` on every side, clipped to the grid."""
    pad = np.ceil(margin_mm / np.asarray(geometry.spacing)[::-1]).astype(int)
    out = [slice(max(int(s.start) - int(p), 0), min(int(s.stop) + int(p), n))
           for s, p, n in zip(block, pad, shape_of(geometry), strict=True)]
    return out[0], out[1], out[2]


def touches_border(block: Block, geometry: Geometry) -> bool:
    """Whether ``block`` reaches the first or last voxel along any axis."""
    return any(s.start == 0 or s.stop == n
               for s, n in zip(block, shape_of(geometry), strict=True))


def cropped(geometry: Geometry, block: Block) -> Geometry:
    """The geometry of the voxels in ``block``."""
    start = (block[2].start, block[1].start, block[0].start)
    origin = geometry.index_to_patient(start)
    return Geometry(size=(block[2].stop - block[2].start, block[1].stop - block[1].start,
                          block[0].stop - block[0].start),
                    spacing=geometry.spacing,
                    origin=(float(origin[0]), float(origin[1]), float(origin[2])),
                    direction=geometry.direction)


def to_index(geometry: Geometry, points: npt.ArrayLike) -> Points:
    """Continuous voxel indices (column, row, slice) of patient points (..., 3)."""
    scaled = geometry.direction @ np.diag(geometry.spacing)
    offsets = np.asarray(points, dtype=np.float64) - np.asarray(geometry.origin)
    index: Points = np.linalg.solve(scaled, offsets.reshape(-1, 3).T).T.reshape(offsets.shape)
    return index


def points_of(mask: npt.NDArray[np.bool_], geometry: Geometry) -> Points:
    """Patient coordinates of the voxels of ``mask`` (n, 3)."""
    return geometry.index_to_patient(np.argwhere(mask)[:, ::-1])


def lookup(array: npt.NDArray[np.generic], geometry: Geometry, points: Points,
           outside: int = 0) -> npt.NDArray[np.generic]:
    """Values of ``array`` at the voxels nearest to ``points``; ``outside`` beyond the grid."""
    index = np.rint(to_index(geometry, points)).astype(np.int64)[:, ::-1]
    inside = np.all((index >= 0) & (index < np.asarray(array.shape)), axis=1)
    values = np.full(len(points), outside, dtype=array.dtype)
    values[inside] = array[tuple(index[inside].T)]
    return values


def image(array: npt.NDArray[np.generic], geometry: Geometry) -> sitk.Image:
    """A SimpleITK image of ``array`` placed in patient space by ``geometry``."""
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.SetSpacing([float(v) for v in geometry.spacing])
    out.SetOrigin([float(v) for v in geometry.origin])
    out.SetDirection([float(v) for v in geometry.direction.ravel()])
    return out
