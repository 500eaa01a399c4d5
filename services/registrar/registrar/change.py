"""Lesion change per vertebra between a prior and the current study.

Lesions are the connected components (26-connected) of the lesion label map, each assigned
to the vertebra holding most of its voxels (components outside every vertebra, or smaller
than ``min_lesion_ml``, are not counted). Within a registered vertebra, a prior and a current
lesion match when either, moved through the vertebra's transform, overlaps the other, or
when their centroids end up within ``match_distance_mm``; lesions linked by matches form one
group (a lesion that split or merged). A group without prior lesions is ``new``, one without
current lesions ``resolved``; otherwise its volume change decides: ``growing`` or
``shrinking`` beyond ``growth_percent``, else ``stable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from registrar import images, rigid
from registrar.registration import Registration
from registrar.settings import ChangeSettings
from spinemets import labels
from spinemets.errors import InputError
from spinemets.labelmaps import LabelMap

Status = Literal["new", "resolved", "growing", "shrinking", "stable"]
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Lesion:
    """One connected component of a lesion label map."""

    id: int  # component number in its study
    level: str
    kind: str  # catalogue name of its most frequent label, e.g. "lesion_lytic"
    voxels: int
    volume_ml: float
    centroid_lps: tuple[float, float, float]


class _VolumeChange:
    """Change from ``prior_ml`` to ``current_ml``; the percentage is undefined from nothing."""

    prior_ml: float
    current_ml: float

    @property
    def change_ml(self) -> float:
        return self.current_ml - self.prior_ml

    @property
    def change_percent(self) -> float | None:
        return 100 * self.change_ml / self.prior_ml if self.prior_ml else None


@dataclass(frozen=True)
class LesionChange(_VolumeChange):
    """A group of matched lesions (one each in most cases) and its change."""

    status: Status
    prior: tuple[Lesion, ...]
    current: tuple[Lesion, ...]
    prior_ml: float
    current_ml: float


@dataclass(frozen=True)
class VertebraChange(_VolumeChange):
    """Lesion burden of one registered vertebra in both studies, and its lesions' changes.

    ``registration_failed``: the vertebra's registration is flagged, so the matching of its
    lesions (not the volumes) is in doubt.
    """

    level: str
    prior_ml: float
    current_ml: float
    lesions: tuple[LesionChange, ...]
    registration_failed: bool


@dataclass(frozen=True)
class _Components:
    """The lesion components of one study: numbered voxels, boxes and descriptions."""

    array: npt.NDArray[np.int32]
    boxes: dict[int, images.Block]
    lesions: dict[int, Lesion]
    map: LabelMap

    def of(self, level: str) -> list[Lesion]:
        return [lesion for lesion in self.lesions.values() if lesion.level == level]

    def points(self, lesion: Lesion) -> npt.NDArray[np.float64]:
        """Patient coordinates of the voxels of ``lesion``."""
        box = self.boxes[lesion.id]
        offset = np.array([s.start for s in box])
        index = np.argwhere(self.array[box] == lesion.id) + offset
        return self.map.geometry.index_to_patient(index[:, ::-1])


def _components(lesion_map: LabelMap, vertebrae: LabelMap, settings: ChangeSettings,
                study: str) -> _Components:
    if lesion_map.geometry != vertebrae.geometry:
        raise InputError(f"the {study} lesion and vertebra label maps are on different grids",
                         reason="bad-label-map")
    levels = {value: name.removeprefix("vertebra_") for value, name in vertebrae.labels.items()
              if labels.by_name(name).group is labels.Group.VERTEBRA}
    kinds = {value: name for value, name in lesion_map.labels.items()
             if labels.by_name(name).group is labels.Group.LESION}
    numbered, count = ndimage.label(np.isin(lesion_map.array, list(kinds)), _CONNECTIVITY)
    geometry = lesion_map.geometry
    voxel_ml = geometry.voxel_volume_mm3 / 1000
    lesions: dict[int, Lesion] = {}
    boxes: dict[int, images.Block] = {}
    for n, found in enumerate(ndimage.find_objects(numbered, count), start=1):
        box = (found[0], found[1], found[2])
        inside = numbered[box] == n
        voxels = int(inside.sum())
        hosts = np.bincount(vertebrae.array[box][inside].astype(np.int64))
        hosts = hosts * np.isin(np.arange(len(hosts)), list(levels))
        if voxels * voxel_ml < settings.min_lesion_ml or not hosts.any():
            numbered[box][inside] = 0
            continue
        values = np.bincount(lesion_map.array[box][inside].astype(np.int64))
        offset = np.array([s.start for s in box[::-1]])
        centroid = geometry.index_to_patient(np.argwhere(inside)[:, ::-1].mean(axis=0) + offset)
        boxes[n] = box
        lesions[n] = Lesion(n, levels[int(hosts.argmax())], kinds[int(values.argmax())], voxels,
                            voxels * voxel_ml, (float(centroid[0]), float(centroid[1]),
                                                float(centroid[2])))
    return _Components(numbered.astype(np.int32), boxes, lesions, lesion_map)


def _overlaps(source: _Components, lesions: list[Lesion], target: _Components,
              candidates: list[Lesion], transform: rigid.Affine) -> set[tuple[int, int]]:
    """(source id, candidate id) where a voxel of a source lesion, moved, lands in one of the
    candidate lesions of the target study."""
    allowed = {lesion.id for lesion in candidates}
    links = set()
    for lesion in lesions:
        moved = rigid.apply(transform, source.points(lesion))
        landed = images.lookup(target.array, target.map.geometry, moved)
        links |= {(lesion.id, int(n)) for n in np.unique(landed) if int(n) in allowed}
    return links


def _groups(prior: list[Lesion], current: list[Lesion], links: set[tuple[int, int]]
            ) -> list[tuple[list[Lesion], list[Lesion]]]:
    """Connected groups of the bipartite graph of links (prior id, current id)."""
    nodes = [("p", lesion.id) for lesion in prior] + [("c", lesion.id) for lesion in current]
    parent = {node: node for node in nodes}

    def root(node: tuple[str, int]) -> tuple[str, int]:
        while parent[node] != node:
            node = parent[node]
        return node

    for a, b in links:
        parent[root(("p", a))] = root(("c", b))
    groups: dict[tuple[str, int], tuple[list[Lesion], list[Lesion]]] = {}
    for lesion in prior:
        groups.setdefault(root(("p", lesion.id)), ([], []))[0].append(lesion)
    for lesion in current:
        groups.setdefault(root(("c", lesion.id)), ([], []))[1].append(lesion)
    return list(groups.values())


def _status(prior_ml: float, current_ml: float, settings: ChangeSettings) -> Status:
    if not prior_ml:
        return "new"
    if not current_ml:
        return "resolved"
    percent = 100 * (current_ml - prior_ml) / prior_ml
    if percent > settings.growth_percent:
        return "growing"
    if percent < -settings.growth_percent:
        return "shrinking"
    return "stable"


def _matched(prior: _Components, current: _Components, level: str, transform: rigid.Affine,
             settings: ChangeSettings) -> tuple[LesionChange, ...]:
    before, after = prior.of(level), current.of(level)
    links = _overlaps(prior, before, current, after, transform)
    links |= {(a, b) for b, a in _overlaps(current, after, prior, before,
                                           rigid.inverse(transform))}
    for p in before:
        moved = rigid.apply(transform, p.centroid_lps)
        links |= {(p.id, c.id) for c in after
                  if np.linalg.norm(moved - np.asarray(c.centroid_lps))
                  <= settings.match_distance_mm}
    out = []
    for group_prior, group_current in _groups(before, after, links):
        prior_ml = sum(lesion.volume_ml for lesion in group_prior)
        current_ml = sum(lesion.volume_ml for lesion in group_current)
        out.append(LesionChange(_status(prior_ml, current_ml, settings), tuple(group_prior),
                                tuple(group_current), prior_ml, current_ml))
    return tuple(out)


def lesion_changes(prior_lesions: LabelMap, prior_vertebrae: LabelMap, current_lesions: LabelMap,
                   current_vertebrae: LabelMap, registration: Registration,
                   settings: ChangeSettings) -> tuple[VertebraChange, ...]:
    """Lesion change of every registered vertebra, cranial to caudal.

    :class:`InputError` if a study's lesion and vertebra label maps are on different grids.
    """
    prior = _components(prior_lesions, prior_vertebrae, settings, "prior")
    current = _components(current_lesions, current_vertebrae, settings, "current")
    out = []
    for vertebra in registration.vertebrae:
        changes = _matched(prior, current, vertebra.level, vertebra.prior_to_current, settings)
        out.append(VertebraChange(
            vertebra.level, sum(lesion.volume_ml for lesion in prior.of(vertebra.level)),
            sum(lesion.volume_ml for lesion in current.of(vertebra.level)), changes,
            vertebra.failed))
    return tuple(out)
