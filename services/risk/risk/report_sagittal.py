"""The sagittal reformat of the visual report: a mid-sagittal plane that follows the spine.

The plane holds the patient's superior and posterior directions; its left-right position
follows the vertebral body centroids (linear between them, constant beyond), so a lateral
curve keeps every body in view while heights and depths stay true. It is sampled on a square
grid of ``pixel_mm`` (true proportions); rows run head to feet and columns anterior to
posterior, the usual sagittal display with the patient facing left. CT is interpolated
linearly, labels by nearest neighbour; outside the volume is air and no label. Labels become
catalogue values (:mod:`spinemets.labels`), whatever values the model's map used.

Lesions off the midline would be missed by one plane, so the lesions each vertebra keeps by the
lesion-type rule (those of the SEG and the table) are projected, by type, over a slab of
``LESION_SLAB_MM`` to either side of it: every lesion is outlined where it lies along the
spine and front to back, wherever it lies left to right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from risk.lesion_type import VertebraLesions
from spinemets import labels
from spinemets.geometry import Geometry, Volume
from spinemets.labelmaps import LabelMap

F64 = npt.NDArray[np.float64]
#: Air, for samples outside the volume.
AIR_HU = -1024.0
#: Space kept in front of (for the level names), behind, above and below the vertebrae, mm.
ANTERIOR_MARGIN_MM = 45.0
MARGIN_MM = 20.0
#: Finest pixel and largest image side of the reformat.
MIN_PIXEL_MM = 0.5
MAX_PIXELS = 1200
#: Half width of the slab over which lesions are projected (about half a lumbar body), mm.
LESION_SLAB_MM = 25.0


@dataclass(frozen=True)
class Sagittal:
    """A reformatted plane: HU and catalogue label values, ``[row, column]``.

    Row ``r`` lies at patient z ``top_mm - r * pixel_mm``, column ``c`` at patient y
    ``anterior_mm + c * pixel_mm`` (LPS: y grows towards posterior).
    """

    hu: npt.NDArray[np.float32]
    vertebrae: npt.NDArray[np.uint8]
    #: Catalogue value of each lesion type found -> its projection over the slab.
    lesions: dict[int, npt.NDArray[np.bool_]]
    pixel_mm: float
    top_mm: float
    anterior_mm: float

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Outer pixel edges (left, right, bottom, top) in plot coordinates: patient y
        (posterior to the right) and z (up), mm, for ``imshow(origin="upper")``."""
        rows, columns = self.hu.shape
        half = self.pixel_mm / 2
        return (self.anterior_mm - half, self.anterior_mm + (columns - 1) * self.pixel_mm + half,
                self.top_mm - (rows - 1) * self.pixel_mm - half, self.top_mm + half)


def _corners(geometry: Geometry, lower: Sequence[int], upper: Sequence[int]) -> F64:
    """Patient coordinates of the corners of an index box (slice, row, column), inclusive."""
    k0, j0, i0 = lower
    k1, j1, i1 = upper
    ijk = np.array([[i, j, k] for i in (i0, i1) for j in (j0, j1) for k in (k0, k1)], float)
    return geometry.index_to_patient(ijk)


def _bounds(array: npt.NDArray[np.generic]) -> tuple[list[int], list[int]]:
    """Index box (slice, row, column) of the non-zero voxels; the whole array if none."""
    lower, upper = [], []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        found = np.flatnonzero(np.any(array, axis=others))
        lower.append(int(found[0]) if found.size else 0)
        upper.append(int(found[-1]) if found.size else array.shape[axis] - 1)
    return lower, upper


def _catalogue_values(label_map: LabelMap) -> npt.NDArray[np.uint8]:
    """Lookup from the map's values to catalogue values."""
    lookup = np.zeros(max(label_map.labels, default=0) + 1, dtype=np.uint8)
    for value, name in label_map.labels.items():
        lookup[value] = labels.by_name(name).value
    return lookup


def _sample(array: npt.NDArray[np.generic], coords: F64) -> npt.NDArray[np.uint8]:
    found = ndimage.map_coordinates(array, coords, order=0, mode="constant", cval=0)
    return np.asarray(found, dtype=np.uint8)


def _sample_labels(label_map: LabelMap, coords: F64) -> npt.NDArray[np.uint8]:
    lookup = _catalogue_values(label_map)
    found = ndimage.map_coordinates(label_map.array, coords, order=0, mode="constant", cval=0)
    inside = (found >= 0) & (found < lookup.size)
    out: npt.NDArray[np.uint8] = np.where(inside, lookup[np.where(inside, found, 0)], 0).astype(
        np.uint8)
    return out


def _kept_lesions(found: Sequence[VertebraLesions], shape: tuple[int, ...]
                  ) -> npt.NDArray[np.uint8]:
    """The kept lesion voxels of every vertebra as catalogue values on the whole grid."""
    out = np.zeros(shape, dtype=np.uint8)
    for vertebra in found:
        crop = out[vertebra.box]
        for kind, mask in vertebra.masks.items():
            crop[mask] = labels.by_name(f"lesion_{kind}").value
    return out


def _project_lesions(kept: npt.NDArray[np.uint8], points: F64, geometry: Geometry,
                     pixel: float) -> dict[int, npt.NDArray[np.bool_]]:
    """Each lesion type's voxels projected left-right over the slab around ``points``."""
    found: dict[int, npt.NDArray[np.bool_]] = {}
    step_mm = max(pixel, 1.0)
    steps = int(LESION_SLAB_MM / step_mm)
    for step in range(-steps, steps + 1):
        shifted = points + np.array([step * step_mm, 0.0, 0.0])
        values = _sample(kept, _coordinates(shifted, geometry))
        for value in np.unique(values[values > 0]).tolist():
            inside = values == value
            found[value] = found[value] | inside if value in found else inside
    return dict(sorted(found.items()))


def _coordinates(points: F64, geometry: Geometry) -> F64:
    """Array coordinates (slice, row, column first) of patient points (..., 3)."""
    # patient = origin + (ijk * spacing) @ direction.T, with an orthonormal direction
    ijk = (points - np.asarray(geometry.origin)) @ geometry.direction / np.asarray(
        geometry.spacing)
    return np.moveaxis(ijk[..., ::-1], -1, 0)


def reformat(volume: Volume, vertebra_map: LabelMap, lesions: Sequence[VertebraLesions],
             centroids: Sequence[npt.ArrayLike]) -> Sagittal:
    """The plane through ``centroids`` (patient mm, one per vertebral body, any order) over the
    vertebrae of ``vertebra_map`` (on the volume's grid), sampled from ``volume``, with the
    kept lesions of each vertebra (:func:`risk.lesion_type.analyse`: those the SEG holds)."""
    geometry = volume.geometry
    centres = np.asarray(centroids, dtype=np.float64).reshape(-1, 3)
    if not len(centres):
        raise ValueError("a sagittal reformat needs at least one vertebral centroid")
    order = np.argsort(centres[:, 2])
    spine = _corners(geometry, *_bounds(vertebra_map.array))
    whole = _corners(geometry, [0, 0, 0], [n - 1 for n in volume.array.shape])
    y0 = max(spine[:, 1].min() - ANTERIOR_MARGIN_MM, whole[:, 1].min())
    y1 = min(spine[:, 1].max() + MARGIN_MM, whole[:, 1].max())
    z0 = max(spine[:, 2].min() - MARGIN_MM, whole[:, 2].min())
    z1 = min(spine[:, 2].max() + MARGIN_MM, whole[:, 2].max())
    pixel = max(min(geometry.spacing), MIN_PIXEL_MM, (y1 - y0) / MAX_PIXELS,
                (z1 - z0) / MAX_PIXELS)
    ys = y0 + pixel * np.arange(int((y1 - y0) / pixel) + 1)
    zs = z1 - pixel * np.arange(int((z1 - z0) / pixel) + 1)
    xs = np.interp(zs, centres[order, 2], centres[order, 0])
    points = np.stack(np.broadcast_arrays(xs[:, None], ys[None, :], zs[:, None]), axis=-1)
    coords = _coordinates(points, geometry)
    hu = ndimage.map_coordinates(volume.array, coords, output=np.float32, order=1,
                                 mode="constant", cval=AIR_HU)
    vertebrae = _sample_labels(vertebra_map, coords)
    projected = (_project_lesions(_kept_lesions(lesions, volume.array.shape), points, geometry,
                                  pixel) if lesions else {})
    return Sagittal(hu, vertebrae, projected, float(pixel), float(z1), float(y0))
