"""Running a role inside a box around another role's labels (``segmenter.crops``).

Lesions are reported inside the vertebrae only, so the lesion model need not see the whole CT:
a crop rule runs a role after its reference role, on the smallest box holding the reference
map's labels of one catalogue group (e.g. the vertebrae T1-L5), grown by a margin in mm. The box
is then widened, where the volume allows, to at least the model's patch along every axis, so
that every patch sees real image content rather than padding. The role's map is pasted into a
full-size map that is background outside the box.

Inside the box the result differs from a whole-volume run only at the borders of what the model
labels: the box has its own model grid (edge-aligned to the box, so resampled at other points)
and its own window placement (other Gaussian-weighted sums). On the whole-pipeline phantom
(``bench/roles.py``) 99.99 % of the box's voxels agree and the lesion voxels' Dice with the
truth is the same within 0.02; the voxels either run labels agree for 75 %: lesion borders move
by a voxel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import Field
from scipy import ndimage

from segmenter.orientation import Reorientation
from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.config import Section
from spinemets.geometry import Geometry, Volume
from spinemets.labelmaps import LabelMap

#: ``array[box]`` of a ``[slice, row, column]`` array.
Box = tuple[slice, slice, slice]


class CropRule(Section):
    """A role run inside the box around another role's labels."""

    #: Role whose label map gives the box; it runs first.
    around: str = Field(min_length=1)
    #: Catalogue group of the labels the box is drawn around (``spinemets.labels.Group``).
    group: labels.Group = labels.Group.VERTEBRA
    #: Margin added to the box on every side, mm.
    margin_mm: float = Field(default=10.0, ge=0)
    #: The role's labelled voxels that touch the reference labels join the nearest of them in
    #: the reference map (:func:`extend`): a lytic lesion that the vertebra model left out,
    #: having no bone density, is part of its vertebra.
    extend_reference: bool = False


def array_spacing(geometry: Geometry) -> tuple[float, float, float]:
    """Voxel spacing along the array axes ``[slice, row, column]`` (mm)."""
    return geometry.spacing[2], geometry.spacing[1], geometry.spacing[0]


def patch_extent(geometry: Geometry, spec: ModelSpec) -> tuple[float, float, float]:
    """Physical size (mm) of the model's patch along each array axis of a volume on ``geometry``."""
    canonical_axes = Reorientation.of(geometry, spec.orientation).axes
    extent = [0.0, 0.0, 0.0]
    for canonical, source in enumerate(canonical_axes):
        extent[source] = spec.patch_size_zyx[canonical] * spec.spacing_zyx[canonical]
    return extent[0], extent[1], extent[2]


def box_around(mask: npt.NDArray[np.bool_], spacing: Sequence[float], margin_mm: float,
               min_extent_mm: Sequence[float]) -> Box | None:
    """The box of ``mask``'s voxels grown by ``margin_mm`` and to ``min_extent_mm`` (mm, per
    axis), within the array; None when ``mask`` is empty.

    A box narrower than the minimum is widened about its centre and shifted back inside the
    array where it would leave it; an array narrower than the minimum is taken whole.
    """
    box = []
    for axis, (n, step) in enumerate(zip(mask.shape, spacing, strict=True)):
        occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if occupied.size == 0:
            return None
        grow = math.ceil(margin_mm / step - 1e-9)
        lo, hi = max(int(occupied[0]) - grow, 0), min(int(occupied[-1]) + 1 + grow, n)
        width = min(math.ceil(min_extent_mm[axis] / step - 1e-9), n)
        if hi - lo < width:
            lo = min(max((lo + hi - width) // 2, 0), n - width)
            hi = lo + width
        box.append(slice(lo, hi))
    return box[0], box[1], box[2]


def group_box(reference: LabelMap, group: labels.Group, margin_mm: float,
              min_extent_mm: Sequence[float]) -> Box | None:
    """:func:`box_around` the labels of ``group`` in ``reference`` (None: none of them)."""
    values = [value for value, name in reference.labels.items()
              if labels.by_name(name).group is group]
    return box_around(np.isin(reference.array, values), array_spacing(reference.geometry),
                      margin_mm, min_extent_mm)


def crop_volume(volume: Volume, box: Box) -> Volume:
    """The part of ``volume`` in ``box``, with its own geometry and slice instances."""
    first = (box[2].start, box[1].start, box[0].start)  # column, row, slice
    origin = volume.geometry.index_to_patient(first)
    array = volume.array[box]
    geometry = Geometry((array.shape[2], array.shape[1], array.shape[0]),
                        volume.geometry.spacing, (float(origin[0]), float(origin[1]),
                                                  float(origin[2])),
                        volume.geometry.direction)
    return Volume(array, geometry, volume.slice_instance_uids[box[0]], volume.sop_class_uid)


def paste(part: LabelMap, box: Box, geometry: Geometry) -> LabelMap:
    """``part`` (a map over ``box``) on the whole grid ``geometry``, background outside."""
    columns, rows, slices = geometry.size
    array = np.zeros((slices, rows, columns), dtype=part.array.dtype)
    array[box] = part.array
    return LabelMap(array, geometry, dict(part.labels), part.model_name, part.model_version,
                    demo=part.demo)


def empty(geometry: Geometry, spec: ModelSpec) -> LabelMap:
    """The map of a role whose box is empty: background everywhere."""
    columns, rows, slices = geometry.size
    return LabelMap(np.zeros((slices, rows, columns), dtype=np.uint8), geometry, spec.label_names,
                    spec.name, spec.version, demo=spec.demo)


def extend(reference: LabelMap, part: LabelMap, box: Box, group: labels.Group) -> LabelMap:
    """``reference`` with the labelled voxels of ``part`` (a full-size map, labelled inside
    ``box`` only) that are background in it and connected (26-neighbourhood) to its labels of
    ``group`` given the label of the nearest such voxel (physical distance)."""
    values = [value for value, name in reference.labels.items()
              if labels.by_name(name).group is group]
    region = reference.array[box]
    target = np.isin(region, values)
    found = (part.array[box] > 0) & (region == 0)
    components, _ = ndimage.label(found | target, structure=np.ones((3, 3, 3), dtype=bool))
    touching = np.unique(components[target])
    join = found & np.isin(components, touching[touching > 0])
    if not join.any():
        return reference
    nearest = ndimage.distance_transform_edt(~target, sampling=array_spacing(reference.geometry),
                                             return_distances=False, return_indices=True)
    array = reference.array.copy()
    array[box][join] = region[tuple(axis[join] for axis in nearest)]
    return LabelMap(array, reference.geometry, dict(reference.labels), reference.model_name,
                    reference.model_version, demo=reference.demo)
