"""Acquisition of a phantom: covered spine units, patient pose, voxel grid, noise and blur.

Random choices come from their own seed stream, drawn in a fixed order whatever the options
say, so overriding one option never changes the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from phantom.anatomy import UNITS, Anatomy
from phantom.options import SLICE_THICKNESSES, PhantomOptions
from phantom.shapes import Grid, Pose, Solid, Vec, rotation

MIN_UNITS = 6
MIN_FOV_MM = 200.0


@dataclass(frozen=True)
class View:
    """Resolved acquisition parameters."""

    first: int  # index in UNITS of the first covered unit
    last: int
    pose: Pose
    rotation_deg: tuple[float, float, float]
    grid: Grid
    slice_thickness: float
    noise_sigma: float
    psf_sigma_mm: float


@dataclass(frozen=True)
class _Draws:
    """All random numbers of the view stream, drawn in a fixed order."""

    span: int
    start: float
    full: bool
    angles: Vec
    shift: Vec
    pixel: float
    thickness: float
    full_matrix: bool
    matrix_u: float
    fov_mm: float
    jitter: Vec
    margins: Vec
    noise: float
    psf: float


def _draw(seed: int) -> _Draws:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 10]))
    return _Draws(
        span=int(rng.integers(MIN_UNITS, len(UNITS) + 1)), start=float(rng.random()),
        full=bool(rng.random() < 0.15), angles=rng.uniform(-1, 1, 3), shift=rng.uniform(-1, 1, 3),
        pixel=float(rng.uniform(0.6, 1.0)), thickness=float(rng.choice(SLICE_THICKNESSES)),
        full_matrix=bool(rng.random() < 0.6), matrix_u=float(rng.random()),
        fov_mm=float(rng.uniform(320, 480)), jitter=rng.uniform(-10, 10, 2),
        margins=rng.uniform(3, 20, 2), noise=float(rng.uniform(10, 25)),
        psf=float(rng.uniform(0.35, 0.55)),
    )


def _units(options: PhantomOptions, draws: _Draws) -> tuple[int, int]:
    if options.full_spine:
        return 0, len(UNITS) - 1
    if options.levels is not None:
        return UNITS.index(options.levels[0]), UNITS.index(options.levels[1])
    span = len(UNITS) if draws.full else draws.span
    first = int(draws.start * (len(UNITS) - span + 1))
    return first, first + span - 1


def _round(values: Sequence[float] | Vec, digits: int) -> Vec:
    return np.asarray(np.round(np.asarray(values, dtype=np.float64), digits), dtype=np.float64)


def resolve(options: PhantomOptions, anatomy: Anatomy, units: Sequence[Solid]) -> View:
    """The acquisition for ``options``; ``units`` are the unposed solids of T1..L5, sacrum."""
    draws = _draw(options.seed)
    first, last = _units(options, draws)
    covered = range(first, last + 1)
    centres = np.array([anatomy.curve.point(s) for s in anatomy.unit_s()])
    pivot = _round(centres[first:last + 1].mean(axis=0), 3)
    angles = draws.angles * options.max_rotation_deg
    pose = Pose(rotation(angles), pivot, _round(draws.shift * options.max_translation_mm, 3))

    if options.spacing is not None:
        spacing = _round(options.spacing, 4)
    else:
        spacing = _round([draws.pixel, draws.pixel, draws.thickness], 3)
    if options.size is not None:
        columns, rows, slices = options.size
    else:
        if options.matrix is not None:
            matrix = options.matrix
        elif options.spacing is not None:
            matrix = round(draws.fov_mm / spacing[0])
        elif draws.full_matrix:
            matrix = 512
        else:
            smallest = max(256, math.ceil(MIN_FOV_MM / spacing[0]))
            matrix = smallest + int(draws.matrix_u * (512 - smallest + 1))
        columns = rows = matrix
        boxes = [units[i].posed(pose).bounds(0.0) for i in covered]
        z_lo = min(b[0][2] for b in boxes) - draws.margins[0]
        z_hi = max(b[1][2] for b in boxes) + draws.margins[1]
        slices = max(1, math.ceil((z_hi - z_lo) / spacing[2]) + 1)
    if options.centre is not None:
        centre = _round(options.centre, 3)
    else:
        idx = np.arange(first, last + 1)
        body_y = float(np.mean([anatomy.torso.back[i] - anatomy.torso.half_depth[i]
                                for i in idx]))
        depth = 2 * max(anatomy.torso.half_depth[i] for i in idx)
        offset = body_y if columns * spacing[1] > depth + 40 else 15.0
        z_centre = (z_lo + z_hi) / 2 if options.size is None else float(pose.apply(pivot)[2])
        centre = _round([pivot[0] + draws.jitter[0], pivot[1] + offset + draws.jitter[1],
                         z_centre], 3)
    shape = (slices, rows, columns)
    origin = _round(centre - (np.array(shape[::-1]) - 1) / 2 * spacing, 3)
    noise = draws.noise if options.noise_sigma is None else options.noise_sigma
    psf = draws.psf if options.psf_sigma_mm is None else options.psf_sigma_mm
    return View(first, last, pose, (float(angles[0]), float(angles[1]), float(angles[2])),
                Grid(origin, spacing, shape), float(spacing[2]), float(noise), float(psf))
