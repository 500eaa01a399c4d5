"""Density and lesion burden of one vertebra: mean HU, trabecular vBMD, lesions by type.

- Trabecular vBMD (SCIENCE.md 2): the body peeled by a configured cortical margin (distance
  to the body surface, mm), lesion voxels excluded when a lesion segmentation is given, mean
  HU converted by the series' calibration. ACR classes (> 120 normal, 80-120 low, < 80 mg/cm3
  osteoporotic) are reported only for calibrated series.
- Lesions: the lesions of the vertebra as :mod:`risk.lesion_type` keeps them (connected
  lesions of at least its minimum size) and the vertebra's lesion type by its rule, the same
  that the SEG and SR show: volume of each type in the whole vertebra and in the body, the
  body fraction they occupy, and the lesion volume in the posterior elements left and right
  of the midline (SINS posterolateral involvement).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from risk.calibration import Calibration
from risk.frames import Frame
from risk.lesion_type import TYPES, VertebraLesions
from risk.method_settings import MeasurementSettings
from risk.values import Measured, Missing
from risk.vertebral_body import VertebraVoxels
from spinemets.geometry import Geometry

LESION_TYPES = TYPES
#: ACR QCT classes of trabecular spine vBMD (mg/cm3): lower bounds.
ACR_NORMAL = 120.0
ACR_LOW = 80.0
NO_LESION_MAP = Missing("no-lesion-segmentation", "no lesion segmentation for this series")


@dataclass(frozen=True)
class VertebraDensity:
    """Attenuation and calibrated density of one vertebra."""

    mean_hu: float
    body_mean_hu: Measured
    trabecular_mean_hu: Measured
    trabecular_voxels: int
    #: Equivalent density (mg/cm3 of the calibration's material).
    vbmd_mg_cm3: Measured
    bmd_class: str | Missing
    lesions_excluded: bool


@dataclass(frozen=True)
class LesionBurden:
    """Metastatic lesion volumes (mL) of one vertebra by type, and fractions of its body."""

    volume_ml: Mapping[str, float]
    body_volume_ml: Mapping[str, float]
    total_ml: float
    body_fraction: Measured
    body_fraction_by_type: Mapping[str, Measured]
    #: Types among the kept lesions, and the vertebra's type (None: no lesion).
    types_present: tuple[str, ...]
    vertebra_type: str | None
    posterior_left_ml: Measured
    posterior_right_ml: Measured


def acr_class(vbmd: float) -> str:
    """ACR classification of a trabecular spine vBMD (mg/cm3)."""
    if vbmd > ACR_NORMAL:
        return "normal"
    if vbmd >= ACR_LOW:
        return "low"
    return "osteoporotic"


def trabecular_region(body: npt.NDArray[np.bool_], geometry: Geometry,
                      margin_mm: float) -> npt.NDArray[np.bool_]:
    """Body voxels deeper than ``margin_mm`` below the body surface (the cortex peeled off)."""
    sx, sy, sz = geometry.spacing
    depth = ndimage.distance_transform_edt(np.pad(body, 1), sampling=(sz, sy, sx))[1:-1, 1:-1,
                                                                                   1:-1]
    inner: npt.NDArray[np.bool_] = body & (depth > margin_mm)
    return inner


def kept_lesions(found: VertebraLesions, v: VertebraVoxels) -> dict[str, npt.NDArray[np.bool_]]:
    """The kept lesion voxels of each type of :mod:`risk.lesion_type` on ``v``'s crop."""
    out = {}
    at = tuple(slice(b.start - o, b.stop - o) for b, o in zip(found.box, v.offset, strict=True))
    for kind in LESION_TYPES:
        mask = np.zeros(v.mask.shape, dtype=bool)
        if kind in found.masks:
            mask[at] = found.masks[kind]
        out[kind] = mask
    return out


def measure_density(ct: npt.NDArray[np.int16], v: VertebraVoxels,
                    body: npt.NDArray[np.bool_] | None, lesion_mask: npt.NDArray[np.bool_] | None,
                    geometry: Geometry, calibration: Calibration,
                    settings: MeasurementSettings) -> VertebraDensity:
    """Mean HU of the vertebra and its body, trabecular HU and vBMD (cortex, lesions out)."""
    hu = ct[v.crop]
    mean_hu = float(hu[v.mask].mean())
    if body is None:
        missing = Missing("no-body", "vertebral body not separated")
        return VertebraDensity(mean_hu, missing, missing, 0, missing, missing,
                               lesion_mask is not None)
    region = trabecular_region(body, geometry, settings.cortical_margin_mm)
    if lesion_mask is not None:
        region &= ~lesion_mask
    n = int(region.sum())
    body_hu = float(hu[body].mean())
    if n == 0:
        missing = Missing("no-trabecular-region",
                          "no body voxel deeper than the cortical margin outside lesions")
        return VertebraDensity(mean_hu, body_hu, missing, 0, missing, missing,
                               lesion_mask is not None)
    trabecular = float(hu[region].mean())
    vbmd = calibration.density_of(trabecular)
    bmd_class: str | Missing = (acr_class(vbmd) if calibration.calibrated else
                                Missing("uncalibrated", "BMD classes need a calibrated series"))
    return VertebraDensity(mean_hu, body_hu, trabecular, n, vbmd, bmd_class,
                           lesion_mask is not None)


def measure_lesions(types: Mapping[str, npt.NDArray[np.bool_]], vertebra_type: str | None,
                    v: VertebraVoxels, body: npt.NDArray[np.bool_] | None, frame: Frame,
                    geometry: Geometry, midline_mm: float) -> LesionBurden:
    """Lesion volumes by type in the vertebra and its body (``types``: masks on ``v``'s crop,
    ``vertebra_type``: the vertebra's lesion type)."""
    voxel_ml = geometry.voxel_volume_mm3 / 1000.0
    volume = {kind: float((mask & v.mask).sum()) * voxel_ml for kind, mask in types.items()}
    present = tuple(kind for kind in LESION_TYPES if volume.get(kind, 0.0) > 0)
    total = sum(volume.values())
    if body is None:
        missing = Missing("no-body", "vertebral body not separated")
        return LesionBurden(volume, {k: 0.0 for k in volume}, total, missing,
                            {k: missing for k in volume}, present, vertebra_type, missing,
                            missing)
    body_ml = float(body.sum()) * voxel_ml
    in_body = {kind: float((mask & body).sum()) * voxel_ml for kind, mask in types.items()}
    fraction_by_type: dict[str, Measured] = {kind: value / body_ml
                                             for kind, value in in_body.items()}
    posterior = v.mask & ~body
    any_lesion = np.zeros(v.mask.shape, dtype=bool)
    for mask in types.values():
        any_lesion |= mask
    x = frame.to_local(v.patient(posterior & any_lesion, geometry))[:, 0]
    left = float((x > midline_mm).sum()) * voxel_ml
    right = float((x < -midline_mm).sum()) * voxel_ml
    return LesionBurden(volume, in_body, total, sum(in_body.values()) / body_ml,
                        fraction_by_type, present, vertebra_type, left, right)
