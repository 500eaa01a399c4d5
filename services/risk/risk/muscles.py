"""Paraspinal muscles per level and side, in the plane perpendicular to the spine axis.

For each vertebra in view, the plane through its body centroid perpendicular to its axis
(mid-body height) is sampled on a regular grid: the muscle label nearest to each point and the
HU by trilinear interpolation. For each muscle and side found there: cross-sectional area of
the labelled pixels within the lean tissue window (Mitsiopoulos et al. 1998: -29..150 HU),
their mean HU, and the distance of their centroid from the body centroid with its
antero-posterior and lateral components. The antero-posterior distance of the deep back
muscles (erector spinae and multifidus) is the extensor moment arm of the load model
(SCIENCE.md 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from risk.frames import Frame, axis_range, local_grid, sample
from risk.method_settings import MeasurementSettings
from risk.values import Missing
from spinemets import labels
from spinemets.geometry import Geometry
from spinemets.labelmaps import LabelMap

EXTENSOR = "deep_back_muscle"
SIDES = ("left", "right")


@dataclass(frozen=True)
class MuscleMeasurement:
    """One muscle on one side at one level."""

    level: str
    muscle: str  # catalogue name without side, e.g. "deep_back_muscle"
    side: str
    csa_mm2: float
    mean_hu: float
    centroid_distance_mm: float
    #: Components of the centroid offset from the body centroid in the plane: posterior and
    #: patient-left positive.
    posterior_mm: float
    left_mm: float


@dataclass(frozen=True)
class Extensors:
    """Both deep back muscles at a level: the moment arm and size the load model uses."""

    level: str
    moment_arm_mm: float  # posterior distance of their area-weighted centroid
    csa_mm2: float


def _muscle_names(label_map: LabelMap) -> dict[str, list[int]]:
    names: dict[str, list[int]] = {}
    for value, name in label_map.labels.items():
        if labels.by_name(name).group is labels.Group.MUSCLE:
            names.setdefault(name, []).append(value)
    return names


def measure_level(level: str, frame: Frame, ct: npt.NDArray[np.int16], muscle_map: LabelMap,
                  geometry: Geometry, settings: MeasurementSettings
                  ) -> tuple[MuscleMeasurement, ...]:
    """Every muscle found in the mid-body plane of one vertebra."""
    step, half = settings.plane_step_mm, settings.plane_half_size_mm
    coords = axis_range(-half, half, step)
    points = local_grid(frame, coords, coords, np.zeros(1))[0]
    values = sample(muscle_map.array, geometry, points, 0).astype(np.int64)
    hu = sample(ct, geometry, points, 1, cval=-1024.0)
    lo, hi = settings.lean_window_hu
    lean = (hu >= lo) & (hu <= hi)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    found = []
    for name, keys in sorted(_muscle_names(muscle_map).items()):
        pixels = np.isin(values, keys) & lean
        n = int(pixels.sum())
        if n == 0:
            continue
        x, y = float(xx[pixels].mean()), float(yy[pixels].mean())
        label = labels.by_name(name)
        side = "left" if label.modifier == labels.LEFT else "right"
        found.append(MuscleMeasurement(level, name.removesuffix(f"_{side}"), side,
                                       n * step * step, float(hu[pixels].mean()),
                                       float(np.hypot(x, y)), y, x))
    return tuple(found)


def measure_muscles(ct: npt.NDArray[np.int16], muscle_map: LabelMap, geometry: Geometry,
                    frames: Mapping[str, Frame], settings: MeasurementSettings
                    ) -> tuple[MuscleMeasurement, ...]:
    """Muscles of every level in ``frames`` (cranial to caudal)."""
    out: list[MuscleMeasurement] = []
    for level in labels.LEVELS:
        if level in frames:
            out.extend(measure_level(level, frames[level], ct, muscle_map, geometry, settings))
    return tuple(out)


def extensors(measurements: Sequence[MuscleMeasurement]) -> dict[str, Extensors]:
    """Levels where both deep back muscles were measured: their moment arm and total CSA."""
    by_level: dict[str, list[MuscleMeasurement]] = {}
    for m in measurements:
        if m.muscle == EXTENSOR:
            by_level.setdefault(m.level, []).append(m)
    out = {}
    for level, found in by_level.items():
        if {m.side for m in found} != set(SIDES):
            continue
        area = sum(m.csa_mm2 for m in found)
        arm = sum(m.posterior_mm * m.csa_mm2 for m in found) / area
        out[level] = Extensors(level, arm, area)
    return out


def missing_extensors(muscle_map: LabelMap | None) -> Missing:
    """Why the extensor moment arm of a level is not measured."""
    if muscle_map is None:
        return Missing("no-muscle-segmentation", "no muscle segmentation for this series")
    return Missing("no-extensors", "left and right deep back muscles not both found in the "
                   "mid-body plane")
