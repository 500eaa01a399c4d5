"""Vertebra-by-vertebra rigid registration of a prior study onto the current one.

Each vertebra labelled in both studies is registered on its own, rigidly (no deformation
inside a vertebra, each level free to move against its neighbours):

1. both studies are cropped to the vertebra's box grown by ``crop_margin_mm``;
2. initialisation: the prior mask's centroid goes onto the current one's, with either no
   rotation or the rotation that maps the principal axes of the masks onto each other (every
   proper choice of their signs); the candidate whose moved prior mask overlaps the current
   mask most wins;
3. refinement (SimpleITK, Euler3DTransform, multi-resolution) of Mattes mutual information
   or mean squares of the HU inside the vertebra grown by ``mask_margin_mm``, neighbouring
   vertebrae left out, in both studies;
4. quality: Dice and HD95 between the prior mask and the current mask warped onto the prior
   grid; a refinement that lowers the Dice markedly is discarded for the initialisation;
   below ``min_dice`` or above ``max_hd95_mm`` the registration is flagged as failed.

Transforms map prior patient coordinates to current ones (4x4, LPS mm): SimpleITK's fixed
image is the prior, its moving image the current study.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk  # noqa: N813 - the conventional alias
from scipy import ndimage

from registrar import images, quality, rigid
from registrar.images import Block
from registrar.rigid import Affine
from registrar.settings import RegistrationSettings
from spinemets import labels, logs
from spinemets.errors import InputError
from spinemets.geometry import Geometry, Volume
from spinemets.labelmaps import LabelMap

log = logging.getLogger(__name__)

_INIT_SAMPLES = 4000  # prior voxels scored per initialisation candidate
#: A refinement that lowers the Dice of the masks by more than this has diverged.
_WORSE_DICE = 0.05


@dataclass(frozen=True)
class VertebraRegistration:
    """The transform of one vertebra (prior -> current patient coordinates) and its quality."""

    level: str
    prior_to_current: Affine
    dice: float
    hd95_mm: float
    failed: bool
    problem: str | None  # why it is flagged as failed
    initialisation: str  # "centroids" or "principal axes"
    refined: bool  # False: the refinement lost overlap, the initialisation was kept
    iterations: int
    seconds: float

    @property
    def rotation_deg(self) -> float:
        return rigid.rotation_deg(self.prior_to_current)


@dataclass(frozen=True)
class Skipped:
    """A level not registered, and why (``absent-in-prior``, ``truncated-in-current``...)."""

    level: str
    reason: str


@dataclass(frozen=True)
class Registration:
    """Every level labelled in either study, registered or skipped, cranial to caudal."""

    vertebrae: tuple[VertebraRegistration, ...]
    skipped: tuple[Skipped, ...]

    def of(self, level: str) -> VertebraRegistration | None:
        return next((v for v in self.vertebrae if v.level == level), None)


@dataclass(frozen=True)
class _Crop:
    """One vertebra of one study: HU, its mask and the metric's mask on a cropped grid."""

    hu: npt.NDArray[np.float32]
    mask: npt.NDArray[np.bool_]
    region: npt.NDArray[np.bool_]
    geometry: Geometry

    def image(self) -> sitk.Image:
        return images.image(self.hu, self.geometry)

    def mask_image(self, which: npt.NDArray[np.bool_]) -> sitk.Image:
        return images.image(which.astype(np.uint8), self.geometry)


def _check(ct: Volume, vertebrae: LabelMap, study: str) -> None:
    if ct.geometry != vertebrae.geometry or not np.allclose(ct.geometry.direction,
                                                            vertebrae.geometry.direction):
        raise InputError(f"the {study} vertebra label map is not on its CT's grid",
                         reason="bad-label-map")


def _boxes(vertebrae: LabelMap) -> dict[str, tuple[int, Block, int]]:
    """Per level present: its value in the map, its bounding box and its voxel count."""
    values = {name: value for value, name in vertebrae.labels.items()}
    found = ndimage.find_objects(vertebrae.array)
    out = {}
    for level in labels.LEVELS:
        value = values.get(labels.vertebra(level).name)
        if value is None or value > len(found) or found[value - 1] is None:
            continue
        box = found[value - 1]
        block = (box[0], box[1], box[2])
        out[level] = (value, block, int((vertebrae.array[block] == value).sum()))
    return out


def _skip_reason(level: str, boxes: dict[str, tuple[int, Block, int]], geometry: Geometry,
                 study: str, settings: RegistrationSettings) -> str | None:
    if level not in boxes:
        return f"absent-in-{study}"
    _, block, voxels = boxes[level]
    if voxels < settings.min_voxels:
        return f"too-small-in-{study}"
    if images.touches_border(block, geometry):
        return f"truncated-in-{study}"
    return None


def _crop(ct: Volume, vertebrae: LabelMap, value: int, block: Block,
          settings: RegistrationSettings) -> _Crop:
    box = images.grown(block, ct.geometry, settings.crop_margin_mm)
    geometry = images.cropped(ct.geometry, box)
    label = vertebrae.array[box]
    mask = label == value
    spacing = np.asarray(geometry.spacing)[::-1]
    near = ndimage.distance_transform_edt(~mask, sampling=spacing) <= settings.mask_margin_mm
    region = near & ((label == 0) | mask)
    return _Crop(ct.array[box].astype(np.float32), mask, region, geometry)


def _initial(prior: _Crop, current: _Crop) -> tuple[str, Affine]:
    """The initialisation candidate whose moved prior mask falls most in the current mask."""
    prior_points = images.points_of(prior.mask, prior.geometry)
    current_points = images.points_of(current.mask, current.geometry)
    step = max(1, len(prior_points) // _INIT_SAMPLES)
    sample = prior_points[::step]
    best: tuple[float, str, Affine] | None = None
    for name, candidate in rigid.candidates(prior_points, current_points):
        moved = rigid.apply(candidate, sample)
        score = float(images.lookup(current.mask, current.geometry, moved).mean())
        if best is None or score > best[0]:
            best = (score, name, candidate)
    assert best is not None
    return best[1], best[2]


def _method(prior: _Crop, current: _Crop, settings: RegistrationSettings
            ) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    if settings.metric == "mattes":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    else:
        method.SetMetricAsMeanSquares()
    method.SetMetricFixedMask(prior.mask_image(prior.region))
    method.SetMetricMovingMask(current.mask_image(current.region))
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings.sampling, settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=settings.iterations,
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def _refine(prior: _Crop, current: _Crop, start: Affine, settings: RegistrationSettings
            ) -> tuple[Affine, int]:
    """Optimise the rigid transform from ``start``; return it and the iterations done."""
    centre = images.points_of(prior.mask, prior.geometry).mean(axis=0)
    euler = sitk.Euler3DTransform()
    euler.SetCenter([float(v) for v in centre])
    euler.SetMatrix([float(v) for v in start[:3, :3].ravel()])
    euler.SetTranslation([float(v) for v in start[:3, :3] @ centre + start[:3, 3] - centre])
    method = _method(prior, current, settings)
    method.SetInitialTransform(euler, inPlace=True)
    method.Execute(prior.image(), current.image())
    rotation = np.asarray(euler.GetMatrix(), dtype=np.float64).reshape(3, 3)
    translation = np.asarray(euler.GetTranslation(), dtype=np.float64)
    found = rigid.matrix(rotation, centre + translation - rotation @ centre)
    return rigid.orthonormal(found), int(method.GetOptimizerIteration())


def _warped(prior: _Crop, current: _Crop, transform: Affine) -> npt.NDArray[np.bool_]:
    """The current mask warped onto the prior grid (nearest neighbour)."""
    sitk_transform = sitk.AffineTransform(3)
    sitk_transform.SetMatrix([float(v) for v in transform[:3, :3].ravel()])
    sitk_transform.SetTranslation([float(v) for v in transform[:3, 3]])
    warped = sitk.Resample(current.mask_image(current.mask), prior.mask_image(prior.mask),
                           sitk_transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    moved: npt.NDArray[np.bool_] = sitk.GetArrayFromImage(warped).astype(bool)
    return moved


def _problem(dice: float, hd95: float, settings: RegistrationSettings) -> str | None:
    problems = []
    if dice < settings.min_dice:
        problems.append(f"Dice {dice:.2f} below {settings.min_dice:.2f}")
    if hd95 > settings.max_hd95_mm:
        problems.append(f"HD95 {hd95:.1f} mm above {settings.max_hd95_mm:.1f} mm")
    return "; ".join(problems) or None


def _register(level: str, prior: _Crop, current: _Crop, settings: RegistrationSettings,
              started: float) -> VertebraRegistration:
    initialisation, start = _initial(prior, current)
    transform, iterations = _refine(prior, current, start, settings)
    moved = _warped(prior, current, transform)
    dice = quality.dice(prior.mask, moved)
    start_moved = _warped(prior, current, start)
    start_dice = quality.dice(prior.mask, start_moved)
    refined = dice >= start_dice - _WORSE_DICE
    if not refined:
        transform, moved, dice = start, start_moved, start_dice
    hd95 = quality.hd95(prior.mask, moved, np.asarray(prior.geometry.spacing)[::-1])
    problem = _problem(dice, hd95, settings)
    return VertebraRegistration(level, transform, dice, hd95, problem is not None, problem,
                                initialisation, refined, iterations,
                                time.monotonic() - started)


def register_vertebrae(prior_ct: Volume, prior_vertebrae: LabelMap, current_ct: Volume,
                       current_vertebrae: LabelMap, settings: RegistrationSettings
                       ) -> Registration:
    """Register every level labelled, whole and large enough in both studies.

    Levels absent, too small or cut by the field of view in either study are skipped with
    the reason. :class:`InputError` if a label map is not on its CT's grid.
    """
    _check(prior_ct, prior_vertebrae, "prior")
    _check(current_ct, current_vertebrae, "current")
    prior_boxes, current_boxes = _boxes(prior_vertebrae), _boxes(current_vertebrae)
    done: list[VertebraRegistration] = []
    skipped: list[Skipped] = []
    for level in labels.LEVELS:
        reason = (_skip_reason(level, prior_boxes, prior_ct.geometry, "prior", settings)
                  or _skip_reason(level, current_boxes, current_ct.geometry, "current",
                                  settings))
        if reason is not None:
            if level in prior_boxes or level in current_boxes:
                skipped.append(Skipped(level, reason))
            continue
        started = time.monotonic()
        value, block, _ = prior_boxes[level]
        prior = _crop(prior_ct, prior_vertebrae, value, block, settings)
        value, block, _ = current_boxes[level]
        current = _crop(current_ct, current_vertebrae, value, block, settings)
        result = _register(level, prior, current, settings, started)
        log.info("vertebra registered", extra=logs.fields(
            level=level, dice=round(result.dice, 3), hd95_mm=round(result.hd95_mm, 2),
            failed=result.failed, seconds=round(result.seconds, 2)))
        done.append(result)
    return Registration(tuple(done), tuple(skipped))
