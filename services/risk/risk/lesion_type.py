"""Metastatic lesion type of each vertebra, from the lesion voxels inside it.

Rule [D] (``docs/risk-methods.md``, settings ``risk.lesion_types``):

1. The lesion voxels of any type (lytic, blastic, mixed) inside the vertebra's label form its
   lesions: connected components, face adjacency. Lesions smaller than ``min_lesion_ml``
   (default 0.1 mL, a sphere of 5.8 mm) are left out: below what CT characterises reliably and
   what the segmentation delineates.
2. The voxels of the lesions left are shared out by type. The vertebra is *lytic* when lytic
   voxels make up at least ``dominant_share`` (default 0.8) of them, *blastic* likewise, and
   *mixed* otherwise (mixed lesions, or lytic and blastic lesions together, as SINS counts them).
3. A vertebra with no lesion of the minimum size has no lesion type.

The kept voxels are also what the SEG's lesion segments and the SR's lesion groups show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import Field
from scipy import ndimage

from spinemets import labels
from spinemets.config import Section
from spinemets.labelmaps import LabelMap

#: Lesion types in catalogue order (catalogue names ``lesion_<type>``).
TYPES: tuple[str, ...] = tuple(label.name.removeprefix("lesion_")
                               for label in labels.in_group(labels.Group.LESION))
Box = tuple[slice, slice, slice]


class LesionTypeSettings(Section):
    """Section ``risk.lesion_types``: the per-vertebra lesion type rule."""

    #: Lesions (connected components) smaller than this are left out, mL.
    min_lesion_ml: float = Field(default=0.1, ge=0)
    #: Share of lesion voxels of one pure type (lytic or blastic) that makes the vertebra that
    #: type; below it the vertebra is mixed.
    dominant_share: float = Field(default=0.8, gt=0.5, le=1)


@dataclass(frozen=True)
class VertebraLesions:
    """The lesions of one vertebra: kept voxels by type (in ``box`` of the grid) and its type."""

    vertebra: labels.Label
    box: Box
    masks: Mapping[str, npt.NDArray[np.bool_]]  # type -> kept voxels inside ``box``
    volume_ml: Mapping[str, float]  # type -> volume of the kept voxels
    lesions: int  # lesions of at least the minimum size
    type: str | None

    @property
    def level(self) -> str:
        return self.vertebra.name.removeprefix("vertebra_")

    def mask(self, kind: str, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
        """The kept voxels of ``kind`` on the whole grid of ``shape``."""
        out = np.zeros(shape, dtype=bool)
        out[self.box] = self.masks[kind]
        return out


def classify(volume_ml: Mapping[str, float], settings: LesionTypeSettings) -> str | None:
    """The vertebra's type from the volumes of its kept lesion voxels by type (rule 2, 3)."""
    total = sum(volume_ml.get(kind, 0.0) for kind in TYPES)
    if total <= 0:
        return None
    for kind in ("lytic", "blastic"):
        if volume_ml.get(kind, 0.0) >= settings.dominant_share * total:
            return kind
    return "mixed"


def vertebra_lesions(vertebra: npt.NDArray[np.bool_], lesions: Mapping[str, npt.NDArray[np.bool_]],
                     voxel_ml: float, settings: LesionTypeSettings
                     ) -> tuple[dict[str, npt.NDArray[np.bool_]], int]:
    """Rule 1 on one crop: the lesion voxels of each type inside ``vertebra`` that belong to a
    lesion of the minimum size, and the number of such lesions."""
    inside = {kind: mask & vertebra for kind, mask in lesions.items()}
    components, count = ndimage.label(np.logical_or.reduce(list(inside.values())))
    sizes = np.bincount(components.ravel(), minlength=count + 1) * voxel_ml
    keep = sizes >= settings.min_lesion_ml
    keep[0] = False
    kept = keep[components]
    return {kind: mask & kept for kind, mask in inside.items()}, int(keep.sum())


def analyse(vertebrae: LabelMap, lesions: LabelMap, settings: LesionTypeSettings
            ) -> tuple[VertebraLesions, ...]:
    """The lesions and type of every vertebra T1-L5 of ``vertebrae``, cranial to caudal.

    Both maps must lie on the same grid (checked by the caller).
    """
    voxel_ml = vertebrae.geometry.voxel_volume_mm3 / 1000.0
    values = {kind: [v for v, n in lesions.labels.items() if n == f"lesion_{kind}"]
              for kind in TYPES}
    boxes = ndimage.find_objects(vertebrae.array)
    found = []
    for label in labels.in_group(labels.Group.VERTEBRA):
        keys = [v for v, n in vertebrae.labels.items()
                if n == label.name and 0 < v <= len(boxes) and boxes[v - 1] is not None]
        if not keys:
            continue
        box = _union([boxes[v - 1] for v in keys])
        crop = lesions.array[box]
        masks, count = vertebra_lesions(np.isin(vertebrae.array[box], keys),
                                        {k: np.isin(crop, v) for k, v in values.items()},
                                        voxel_ml, settings)
        volume = {kind: float(mask.sum()) * voxel_ml for kind, mask in masks.items()}
        found.append(VertebraLesions(label, box, masks, volume, count,
                                     classify(volume, settings)))
    return tuple(found)


def _union(boxes: list[tuple[slice, ...] | None]) -> Box:
    """The smallest box holding all ``boxes``."""
    present = [b for b in boxes if b is not None]
    z, y, x = (slice(min(b[d].start for b in present), max(b[d].stop for b in present))
               for d in range(3))
    return z, y, x
