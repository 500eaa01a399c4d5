"""Follow-up studies of a phantom: the same patient scanned again, later.

The follow-up keeps the baseline's anatomy on a spine curve of another shape (kyphosis,
lordosis and lateral sway changed a little): every vertebra keeps its shape and moves rigidly
with its frame on the curve, so its transform from the baseline is exact. The patient lies
differently (a rotation about a random axis through the scanned spine, and a shift), lesions
grow, shrink, resolve or appear, and a new compression fracture may occur.

``FollowUp.truth`` (JSON-ready) holds, per level, the 4x4 transform from baseline to follow-up
patient coordinates (LPS mm) and the 8 corners of the vertebral body in the baseline, and the
change of every lesion with its voxel counts and volumes in both studies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from phantom import rigid, skeleton
from phantom.anatomy import Anatomy, CurveShape, Level, bent
from phantom.generator import Phantom, Scene, bodies_in_grid, plan, render, scene_key
from phantom.lesions import Lesion, new_lesion, overlaps
from phantom.options import FollowUpOptions
from phantom.shapes import Blob, Frame, Grid, Pose, Vec
from phantom.view import View
from spinemets import labels

_NEW_LESION_TRIES = 50
_LESION_GAP_MM = 2.0
_GROWTH = (1.4, 2.5)  # range of the volume factor of a growing lesion
_SHRINKAGE = (0.3, 0.7)


@dataclass(frozen=True)
class FollowUp:
    """A follow-up phantom, its baseline and the truth of what changed between them."""

    baseline: Phantom
    phantom: Phantom
    truth: dict[str, Any]


def _rng(baseline_seed: int, seed: int, stream: int) -> np.random.Generator:
    """Each kind of draw has its own stream: one option never changes another's draws."""
    return np.random.default_rng(np.random.SeedSequence([baseline_seed, 60, seed, stream]))


def follow_up(baseline: Phantom, options: FollowUpOptions) -> FollowUp:
    """The follow-up of ``baseline`` described by ``options`` (deterministic for its seeds)."""
    base = plan(baseline.options)
    seed = baseline.options.seed
    shape = _reshaped(_rng(seed, options.seed, 1), base.anatomy.curve.shape, options)
    anat = bent(base.anatomy, shape)
    covered = [lv for lv in anat.levels if base.view.first <= lv.index <= base.view.last]
    realign = rigid.best_fit(_frame_points(anat, covered), _frame_points(base.anatomy, covered))
    base_pose = rigid.of_pose(base.view.pose)
    motion, move = _motion(_rng(seed, options.seed, 2), base, options)
    pose_matrix = motion @ base_pose @ realign
    view = _view(_rng(seed, options.seed, 6), base, baseline.options.size is None, anat,
                 pose_matrix)
    candidates = bodies_in_grid(anat, view)
    fracture = _fracture(_rng(seed, options.seed, 3), options, base.compressions, candidates)
    compressions = base.compressions + ((fracture,) if fracture is not None else ())
    moved, fates = _changed(_rng(seed, options.seed, 4), options, base, anat)
    kept = [lesion for lesion, fate in zip(moved, fates, strict=True) if fate != "resolved"]
    covered_names = {lv.name for lv in covered}
    added = _added(_rng(seed, options.seed, 5), options, baseline, anat,
                   [lv for lv in candidates if lv in covered_names], compressions, moved)
    scene = Scene(anat, view, compressions, tuple(kept + added))
    phantom = render(scene, baseline.options, scene_key((baseline.options, options), view.grid),
                     (seed, 50, options.seed))
    truth = {
        "baseline_seed": seed, "follow_up_seed": options.seed,
        "motion": {**move, "curve": _curve_truth(base.anatomy.curve.shape, shape)},
        "levels": _level_truth(base, anat, pose_matrix, baseline, phantom),
        "lesions": _lesion_truth(baseline, phantom, fates, len(kept), len(added)),
        "compression": {"baseline": _fracture_truth(base.compressions[0])
                        if base.compressions else None,
                        "new": _fracture_truth(fracture) if fracture is not None else None},
    }
    return FollowUp(baseline, phantom, truth)


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def _reshaped(rng: np.random.Generator, shape: CurveShape, options: FollowUpOptions
              ) -> CurveShape:
    """The curve shape changed by up to the options' maxima."""
    u = rng.uniform(-1, 1, 3)
    return CurveShape(shape.kyphosis * (1 + options.max_bend * u[0]),
                      shape.lordosis * (1 + options.max_bend * u[1]),
                      shape.sway_mm + options.max_sway_mm * u[2], shape.sway_phase)


def _frame_points(anat: Anatomy, levels: list[Level]) -> Vec:
    """Centre and unit-axis tips (10 mm) of the frame of each level."""
    points = []
    for lv in levels:
        frame = anat.curve.frame(lv.s)
        points.append(frame.origin)
        points.extend(frame.origin + 10.0 * frame.axes.T)
    return np.asarray(points)


def _motion(rng: np.random.Generator, base: Scene, options: FollowUpOptions
            ) -> tuple[Vec, dict[str, Any]]:
    """The patient's motion on the table (patient coordinates) and its truth."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = options.max_rotation_deg * rng.uniform(0.5, 1.0)
    direction = rng.normal(size=3)
    shift = direction / np.linalg.norm(direction) * options.max_translation_mm * rng.uniform(
        0.5, 1.0)
    centre = base.view.pose.apply(base.view.pose.pivot)
    rotation = rigid.about_axis(axis, angle)
    motion = rigid.matrix(rotation, centre + shift - rotation @ centre)
    return motion, {"rotation_deg": _r(angle), "axis": [_r(v) for v in axis],
                    "centre_lps": [_r(v) for v in centre],
                    "translation_mm": [_r(v) for v in shift]}


def _units_box(anat: Anatomy, view: View, pose: Pose) -> tuple[Vec, Vec]:
    """Box round the posed units that ``view`` covers."""
    units = [skeleton.vertebra(anat, lv) for lv in anat.levels] + [skeleton.sacrum(anat)[0]]
    boxes = [units[i].posed(pose).bounds(0.0) for i in range(view.first, view.last + 1)]
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def _view(rng: np.random.Generator, base: Scene, sized_by_units: bool, anat: Anatomy,
          pose_matrix: Vec) -> View:
    """The follow-up acquisition: the baseline's protocol, with the field of view moved with
    the scanned spine (up to 3 mm of jitter in plane); the slices cover the baseline's units
    with new margins, unless the baseline's grid size was given."""
    jitter, margins = rng.uniform(-3, 3, 2), rng.uniform(3, 20, 2)
    grid = base.view.grid
    pose = rigid.to_pose(pose_matrix, base.view.pose.pivot)
    before = _units_box(base.anatomy, base.view, base.view.pose)
    lo, hi = _units_box(anat, base.view, pose)
    centre = (grid.origin + (np.array(grid.shape[::-1]) - 1) / 2 * grid.spacing
              + (lo + hi) / 2 - (before[0] + before[1]) / 2)
    centre[:2] += jitter
    slices = grid.shape[0]
    if sized_by_units:
        z_lo, z_hi = lo[2] - margins[0], hi[2] + margins[1]
        slices = max(1, math.ceil((z_hi - z_lo) / grid.spacing[2]) + 1)
        centre[2] = (z_lo + z_hi) / 2
    shape = (slices, grid.shape[1], grid.shape[2])
    origin = np.round(centre - (np.array(shape[::-1]) - 1) / 2 * grid.spacing, 3)
    return View(base.view.first, base.view.last, pose, rigid.euler_deg(pose.rotation),
                Grid(origin, grid.spacing, shape), base.view.slice_thickness,
                base.view.noise_sigma, base.view.psf_sigma_mm)


def _fracture(rng: np.random.Generator, options: FollowUpOptions,
              existing: tuple[skeleton.Compression, ...], candidates: list[str]
              ) -> skeleton.Compression | None:
    """The new compression fracture asked for, at a level not fractured yet."""
    order = [labels.LEVELS[i] for i in rng.permutation(len(labels.LEVELS))]
    fraction = float(rng.uniform(0.2, 0.5))
    wedge = bool(rng.random() < 0.6)
    if options.compression is None:
        return None
    taken = {c.level for c in existing}
    if options.compression == "random":
        free = [lv for lv in order if lv in candidates and lv not in taken]
        if not free:
            return None
        level = free[0]
    elif options.compression in taken:
        raise ValueError(f"compression: {options.compression} is already fractured in the "
                         "baseline")
    else:
        level = options.compression
    if options.compression_fraction is not None:
        fraction = options.compression_fraction
    return skeleton.Compression(level, fraction, wedge)


def _level_motion(base: Anatomy, anat: Anatomy, level: str) -> Vec:
    """How the bend moves the frame of ``level`` (anatomy coordinates)."""
    s = base.level(level).s
    return rigid.of_frame(anat.curve.frame(s)) @ np.linalg.inv(
        rigid.of_frame(base.curve.frame(s)))


def _changed(rng: np.random.Generator, options: FollowUpOptions, base: Scene, anat: Anatomy
             ) -> tuple[list[Lesion], list[str]]:
    """Every baseline lesion moved with its vertebra (grown or shrunk unless it resolves), and
    its fate: ``resolved``, ``grown`` or ``shrunk``."""
    n = len(base.lesions)
    order = rng.permutation(n)
    grows = rng.random(n) < 0.5
    factors = np.where(grows, rng.uniform(*_GROWTH, n), rng.uniform(*_SHRINKAGE, n))
    resolved = {int(i) for i in order[:options.resolved]}
    moved: list[Lesion] = []
    fates: list[str] = []
    for i, lesion in enumerate(base.lesions):
        fate = "resolved" if i in resolved else "grown" if grows[i] else "shrunk"
        move = _level_motion(base.anatomy, anat, lesion.level)
        blob = lesion.blob
        scale = 1.0 if fate == "resolved" else float(factors[i]) ** (1 / 3)
        moved.append(replace(lesion, blob=Blob(
            Frame(rigid.apply(move, blob.frame.origin), move[:3, :3] @ blob.frame.axes),
            (blob.radii[0] * scale, blob.radii[1] * scale, blob.radii[2] * scale),
            blob.bumps, blob.amplitude)))
        fates.append(fate)
    return moved, fates


def _added(rng: np.random.Generator, options: FollowUpOptions, baseline: Phantom,
           anat: Anatomy, candidates: list[str],
           compressions: tuple[skeleton.Compression, ...], earlier: list[Lesion]
           ) -> list[Lesion]:
    """New lesions in the bodies of ``candidates``, apart from every other lesion of their
    level, the ``earlier`` ones (resolved ones included) and each other."""
    broken = {c.level: c for c in compressions}
    added: list[Lesion] = []
    for _ in range(options.new_lesions if candidates else 0):
        for _ in range(_NEW_LESION_TRIES):
            level = candidates[int(rng.integers(len(candidates)))]
            lesion = new_lesion(rng, anat, level, baseline.options.lesion_kinds,
                                broken.get(level))
            if not any(other.level == level and overlaps(lesion, other, _LESION_GAP_MM)
                       for other in earlier + added):
                added.append(lesion)
                break
    return added


def _corners(base: Scene, level: str) -> Vec:
    """The 8 corners of the box of a vertebral body (baseline patient coordinates)."""
    lv = base.anatomy.level(level)
    a, b, h = lv.width / 2, lv.depth / 2, lv.height / 2
    local = np.array([[x, y, z] for x in (-a, a) for y in (-b, b) for z in (-h, h)])
    return base.view.pose.apply(base.anatomy.curve.frame(lv.s).to_world(local))


def _lesion_entry(item: dict[str, Any] | None, voxel_ml: float) -> dict[str, Any] | None:
    if item is None:
        return None
    return {"centre_lps": item["centre_lps"], "voxels": item["voxels"],
            "volume_ml": _r(item["voxels"] * voxel_ml, 5)}


def _lesion_truth(baseline: Phantom, phantom: Phantom, fates: list[str], kept: int,
                  added: int) -> list[dict[str, Any]]:
    """One entry per lesion of either study: fate, both studies' volumes, the change."""
    voxel_ml = (baseline.ct.geometry.voxel_volume_mm3 / 1000,
                phantom.ct.geometry.voxel_volume_mm3 / 1000)
    after = iter(phantom.truth["lesions"][:kept])
    pairs = [(fate, before, None if fate == "resolved" else next(after))
             for fate, before in zip(fates, baseline.truth["lesions"], strict=True)]
    pairs += [("new", None, item) for item in phantom.truth["lesions"][kept:kept + added]]
    out = []
    for fate, before, now in pairs:
        first, second = _lesion_entry(before, voxel_ml[0]), _lesion_entry(now, voxel_ml[1])
        ml = (first["volume_ml"] if first else 0.0, second["volume_ml"] if second else 0.0)
        either = before if before is not None else now
        assert either is not None
        out.append({"level": either["level"], "type": either["type"], "change": fate,
                    "baseline": first, "follow_up": second,
                    "volume_change_ml": _r(ml[1] - ml[0], 5),
                    "volume_change_percent": _r(100 * (ml[1] - ml[0]) / ml[0], 2)
                    if ml[0] else None})
    return out


def _curve_truth(before: CurveShape, after: CurveShape) -> dict[str, float]:
    return {"kyphosis_factor": _r(after.kyphosis / before.kyphosis),
            "lordosis_factor": _r(after.lordosis / before.lordosis),
            "sway_change_mm": _r(after.sway_mm - before.sway_mm)}


def _level_truth(base: Scene, anat: Anatomy, pose_matrix: Vec, baseline: Phantom,
                 phantom: Phantom) -> dict[str, Any]:
    """Per level: the transform from baseline to follow-up patient coordinates (the level's
    frame, posed, in each study), the baseline body's corners, whether it is in each view."""
    base_pose = rigid.of_pose(base.view.pose)
    out = {}
    for lv in anat.levels:
        transform = (pose_matrix @ rigid.of_frame(anat.curve.frame(lv.s))
                     @ np.linalg.inv(base_pose @ rigid.of_frame(base.anatomy.curve.frame(lv.s))))
        out[lv.name] = {
            "baseline_to_follow_up": [[_r(v, 6) for v in row] for row in transform],
            "body_corners_lps": [[_r(v) for v in p] for p in _corners(base, lv.name)],
            "in_view": [lv.name in baseline.truth["levels_in_view"],
                        lv.name in phantom.truth["levels_in_view"]]}
    return out


def _fracture_truth(compression: skeleton.Compression) -> dict[str, Any]:
    return {"level": compression.level, "fraction": _r(compression.fraction),
            "kind": "wedge" if compression.wedge else "crush"}
