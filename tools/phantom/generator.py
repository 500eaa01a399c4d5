"""``generate``: a synthetic thoraco-lumbar CT with its ground truth, from options and a seed.

``plan`` resolves the options into a :class:`Scene` (anatomy, acquisition, fractures, lesions)
and ``render`` paints it; a follow-up (:mod:`phantom.followup`) renders a changed scene.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from phantom import anatomy as anatomy_mod
from phantom import lesions as lesions_mod
from phantom import skeleton
from phantom.anatomy import UNITS, Anatomy
from phantom.canvas import Canvas, Tissue, paint, paint_bone
from phantom.options import PhantomOptions
from phantom.shapes import Grid, Pose, Solid, evaluate
from phantom.softtissue import paint_soft_tissue
from phantom.view import View, resolve
from spinemets import labels
from spinemets.geometry import CT_IMAGE_STORAGE, Geometry, Volume
from spinemets.labelmaps import LabelMap
from spinemets.uids import derived_uid

MODEL_NAME = "phantom-truth"
MODEL_VERSION = "1"
HU_RANGE = (-1024, 3071)  # 12-bit CT numbers


@dataclass(frozen=True)
class Phantom:
    """A generated CT (HU, ``[slice, row, column]``, slice 0 most inferior) and its truth.

    ``tissues`` holds a :class:`~phantom.canvas.Tissue` class per voxel; ``truth`` is plain
    JSON-ready data (levels in view, lesions, compression, pose, per-level dimensions).
    """

    ct: Volume
    vertebrae: LabelMap
    muscles: LabelMap
    lesions: LabelMap
    tissues: npt.NDArray[np.uint8]
    truth: dict[str, Any]
    options: PhantomOptions
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str


@dataclass(frozen=True)
class Scene:
    """What a phantom shows: the anatomy as scanned, the acquisition, the compression
    fractures (the newest last) and the lesions (unposed, in anatomy coordinates)."""

    anatomy: Anatomy
    view: View
    compressions: tuple[skeleton.Compression, ...]
    lesions: tuple[lesions_mod.Lesion, ...]


def scene_key(identity: object, grid: Grid) -> str:
    text = repr((identity, grid.origin.tolist(), grid.spacing.tolist(), grid.shape))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _compression(options: PhantomOptions, candidates: list[str]) -> skeleton.Compression | None:
    rng = np.random.default_rng(np.random.SeedSequence([options.seed, 40]))
    order = [labels.LEVELS[i] for i in rng.permutation(len(labels.LEVELS))]
    fraction = float(rng.uniform(0.2, 0.5))
    wedge = bool(rng.random() < 0.6)
    if options.compression is None:
        return None
    if options.compression == "random":
        in_view = [lv for lv in order if lv in candidates]
        level = in_view[0] if in_view else order[0]
    else:
        level = options.compression
    return skeleton.Compression(
        level,
        options.compression_fraction if options.compression_fraction is not None else fraction,
        options.compression_wedge if options.compression_wedge is not None else wedge)


def bodies_in_grid(anat: Anatomy, view: View) -> list[str]:
    """Levels whose vertebral body lies inside the grid of ``view``."""
    return [lv.name for lv in anat.levels
            if _inside(view.grid, Solid(skeleton.vertebra(anat, lv).parts[:1]).posed(view.pose))]


def _inside(grid: Grid, solid: Solid) -> bool:
    lo, hi = solid.bounds(0.0)
    first = grid.origin
    last = grid.origin + (np.array(grid.shape[::-1]) - 1) * grid.spacing
    return bool(np.all(lo >= first) and np.all(hi <= last))


def plan(options: PhantomOptions) -> Scene:
    """The scene of the phantom described by ``options`` (deterministic for a given seed)."""
    anat = anatomy_mod.build(options.seed)
    units = [skeleton.vertebra(anat, lv) for lv in anat.levels]
    view = resolve(options, anat, [*units, skeleton.sacrum(anat)[0]])
    candidates = bodies_in_grid(anat, view)
    compression = _compression(options, candidates)
    planned = lesions_mod.plan_lesions(options, anat, candidates, compression)
    return Scene(anat, view, () if compression is None else (compression,), tuple(planned))


def generate(options: PhantomOptions) -> Phantom:
    """Generate the phantom described by ``options`` (deterministic for a given seed)."""
    scene = plan(options)
    return render(scene, options, scene_key(options, scene.view.grid), (options.seed, 50))


def render(scene: Scene, options: PhantomOptions, key: str, noise: Sequence[int]) -> Phantom:
    """Paint ``scene``; ``key`` derives the UIDs, ``noise`` seeds the noise stream."""
    anat, view = scene.anatomy, scene.view
    pose, grid = view.pose, view.grid
    broken = {c.level: c for c in scene.compressions}
    units = [skeleton.vertebra(anat, lv, broken.get(lv.name)) for lv in anat.levels]
    canvas = Canvas.empty(grid)
    paint_soft_tissue(canvas, anat, pose)
    tis = anat.tissues
    for disc in skeleton.discs(anat, scene.compressions):
        _paint(canvas, disc.posed(pose), tis.disc, Tissue.DISC)
    for level in (anat.c7, *anat.levels):
        _paint(canvas, skeleton.canal(anat, level).posed(pose), tis.csf, Tissue.CSF)
    sacrum, sacral_fluid = skeleton.sacrum(anat)
    _paint(canvas, sacral_fluid.posed(pose), tis.csf, Tissue.CSF)
    rib_voxels = _paint_ribs(canvas, anat, pose)
    posed_units = [u.posed(pose) for u in units]
    _paint_bones(canvas, anat, pose, posed_units, sacrum.posed(pose))
    lesion_truth = []
    for lesion in scene.lesions:
        i = labels.LEVELS.index(lesion.level)
        level = anat.levels[i]
        count = lesions_mod.paint_lesion(canvas, lesion, posed_units[i], level.shell, pose,
                                         level.value)
        lesion_truth.append(_lesion_truth(lesion, count, grid, pose))
    canvas.muscles[canvas.tissue != Tissue.MUSCLE] = 0
    ct = _finish(canvas, view, noise)
    compression = scene.compressions[-1] if scene.compressions else None
    return _phantom(options, key, canvas, ct, view, anat, lesion_truth, compression, rib_voxels)


def _paint_ribs(canvas: Canvas, anat: Anatomy, pose: Pose) -> dict[str, int]:
    """Paint the ribs; return the number of rib voxels of each level."""
    voxels: dict[str, int] = {}
    for name, rib in skeleton.ribs(anat):
        level = anat.level(name)
        found = evaluate(rib.posed(pose), canvas.grid, canvas.ramp)
        if found is not None:
            block, d = found
            paint_bone(canvas, block, d, 0.9 * level.cortex_hu, 0.9 * level.trabecular_hu,
                       skeleton.RIB_SHELL, (Tissue.RIB, Tissue.RIB))
            voxels[name] = voxels.get(name, 0) + int((d <= 0).sum())
    return voxels


def _paint_bones(canvas: Canvas, anat: Anatomy, pose: Pose, units: list[Solid],
                 sacrum: Solid) -> None:
    """C7, the labelled vertebrae, the iliac wings and the sacrum (all posed)."""
    c7 = anat.c7
    _paint_bone(canvas, skeleton.vertebra(anat, c7).posed(pose), c7.cortex_hu,
                c7.trabecular_hu, c7.shell, None)
    for level, unit in zip(anat.levels, units, strict=True):
        _paint_bone(canvas, unit, level.cortex_hu, level.trabecular_hu, level.shell,
                    level.value)
    sac = anat.sacrum
    for ilium in skeleton.ilia(anat):
        _paint_bone(canvas, ilium.posed(pose), sac.cortex_hu, 0.85 * sac.trabecular_hu,
                    sac.shell, None)
    _paint_bone(canvas, sacrum, sac.cortex_hu, sac.trabecular_hu, sac.shell,
                anatomy_mod.SACRUM_VALUE)


def _phantom(options: PhantomOptions, key: str, canvas: Canvas, ct: npt.NDArray[np.int16],
             view: View, anat: Anatomy, lesion_truth: list[dict[str, Any]],
             compression: skeleton.Compression | None, rib_voxels: dict[str, int]) -> Phantom:
    """Wrap the painted arrays: geometry, label maps, UIDs and truth."""
    grid = view.grid
    geometry = Geometry(size=(grid.shape[2], grid.shape[1], grid.shape[0]),
                        spacing=(float(grid.spacing[0]), float(grid.spacing[1]),
                                 float(grid.spacing[2])),
                        origin=(float(grid.origin[0]), float(grid.origin[1]),
                                float(grid.origin[2])),
                        direction=np.eye(3))
    series_uid = derived_uid("spinemets-phantom", key, "series")
    uids = tuple(derived_uid(series_uid, "instance", str(k)) for k in range(grid.shape[0]))
    maps = {name: _label_map(array, geometry)
            for name, array in (("vertebrae", canvas.vertebrae), ("muscles", canvas.muscles),
                                ("lesions", canvas.lesions))}
    truth = _truth(anat, view, maps["vertebrae"], lesion_truth, compression, rib_voxels,
                   options)
    return Phantom(Volume(ct, geometry, uids, CT_IMAGE_STORAGE), maps["vertebrae"],
                   maps["muscles"], maps["lesions"], canvas.tissue, truth, options,
                   derived_uid("spinemets-phantom", key, "study"), series_uid,
                   derived_uid("spinemets-phantom", key, "frame-of-reference"))


def _paint(canvas: Canvas, solid: Solid, value: float, tissue: Tissue) -> None:
    found = evaluate(solid, canvas.grid, canvas.ramp)
    if found is not None:
        paint(canvas, found[0], found[1], value, tissue)


def _paint_bone(canvas: Canvas, solid: Solid, cortex: float, marrow: float, shell: float,
                value: int | None) -> None:
    found = evaluate(solid, canvas.grid, canvas.ramp)
    if found is not None:
        paint_bone(canvas, found[0], found[1], cortex, marrow, shell,
                   (Tissue.CORTEX, Tissue.TRABECULAR), value or None)


def _finish(canvas: Canvas, view: View, noise: Sequence[int]) -> npt.NDArray[np.int16]:
    """Blur with the scanner's point spread and slice profile, add noise, round to int16."""
    hu = canvas.hu
    spacing = view.grid.spacing
    z_sigma = max(view.psf_sigma_mm, 0.35 * view.slice_thickness) if view.psf_sigma_mm else 0
    sigma = (z_sigma / spacing[2], view.psf_sigma_mm / spacing[1],
             view.psf_sigma_mm / spacing[0])
    if any(s > 0 for s in sigma):
        ndimage.gaussian_filter(hu, sigma, output=hu, truncate=3.0)
    rng = np.random.default_rng(np.random.SeedSequence(list(noise)))
    out = np.empty(hu.shape, dtype=np.int16)
    for k in range(hu.shape[0]):
        plane = hu[k]
        if view.noise_sigma > 0:
            plane += rng.standard_normal(plane.shape, dtype=np.float32) * np.float32(
                view.noise_sigma)
        out[k] = np.clip(np.rint(plane), *HU_RANGE)
    return out


def _label_map(array: npt.NDArray[np.uint8], geometry: Geometry) -> LabelMap:
    values = [int(v) for v in np.flatnonzero(np.bincount(array.ravel(), minlength=256)) if v]
    return LabelMap(array, geometry, {v: labels.by_value(v).name for v in values}, MODEL_NAME,
                    MODEL_VERSION)


def _lesion_truth(lesion: lesions_mod.Lesion, count: int, grid: Grid, pose: Pose
                  ) -> dict[str, Any]:
    centre = pose.apply(lesion.blob.frame.origin)
    return {"level": lesion.level, "type": lesion.kind, "value": lesion.value,
            "site": lesion.site, "centre_lps": [round(float(v), 2) for v in centre],
            "diameter_mm": round(lesion.diameter, 2), "voxels": count,
            "volume_ml": round(count * float(np.prod(grid.spacing)) / 1000, 4),
            "hu": {kind: round(value, 1) for kind, value in zip(("lytic", "blastic"), lesion.hu,
                                                                 strict=True)
                   if lesion.kind in (kind, "mixed")}}


def _in_view(vertebrae: LabelMap) -> tuple[list[str], list[str]]:
    """Units whose label lies fully inside the grid, and those cut by its border."""
    array = vertebrae.array
    border = np.zeros(array.shape, dtype=bool)
    border[[0, -1], :, :] = True
    border[:, [0, -1], :] = True
    border[:, :, [0, -1]] = True
    touching = {int(v) for v in np.unique(array[border]) if v}
    full: list[str] = []
    partial: list[str] = []
    for unit in UNITS:
        value = labels.by_name("sacrum" if unit == "sacrum" else f"vertebra_{unit}").value
        if value in vertebrae.labels:
            (partial if value in touching else full).append(unit)
    return full, partial


def _truth(anat: Anatomy, view: View, vertebrae: LabelMap, lesions: list[dict[str, Any]],
           compression: skeleton.Compression | None, rib_voxels: dict[str, int],
           options: PhantomOptions) -> dict[str, Any]:
    full, partial = _in_view(vertebrae)
    pose = view.pose
    levels = {}
    for lv in anat.levels:
        frame = anat.curve.frame(lv.s).posed(pose)
        levels[lv.name] = {
            "centre_lps": [round(float(v), 2) for v in frame.origin],
            "axis_lps": [round(float(v), 4) for v in frame.axes[:, 2]],
            "height_mm": lv.height, "width_mm": lv.width, "depth_mm": lv.depth,
            "disc_below_mm": lv.disc_below, "cortex_hu": lv.cortex_hu,
            "trabecular_hu": lv.trabecular_hu,
        }
    comp = None
    if compression is not None:
        lv = anat.level(compression.level)
        comp = {"level": compression.level, "fraction": round(compression.fraction, 4),
                "kind": "wedge" if compression.wedge else "crush",
                "height_before_mm": lv.height,
                "anterior_height_mm": round(lv.height * (1 - compression.fraction), 2),
                "posterior_height_mm": round(lv.height * (1 - (0 if compression.wedge
                                                                else compression.fraction)), 2)}
    return {
        "seed": options.seed, "generator": f"{MODEL_NAME} {MODEL_VERSION}",
        "levels_in_view": full, "levels_partly_in_view": partial,
        "covered_units": [UNITS[view.first], UNITS[view.last]],
        "ribs": [name for name in labels.LEVELS if rib_voxels.get(name, 0) > 0],
        "lesions": lesions, "compression": comp,
        "pose": {"rotation_deg": [round(a, 3) for a in view.rotation_deg],
                 "translation_mm": [float(v) for v in pose.translation],
                 "pivot_lps": [float(v) for v in pose.pivot]},
        "grid": {"size": [view.grid.shape[2], view.grid.shape[1], view.grid.shape[0]],
                 "spacing_mm": [float(v) for v in view.grid.spacing],
                 "origin_lps": [float(v) for v in view.grid.origin]},
        "slice_thickness_mm": view.slice_thickness, "noise_sigma_hu": round(view.noise_sigma, 2),
        "psf_sigma_mm": round(view.psf_sigma_mm, 3), "levels": levels,
    }
