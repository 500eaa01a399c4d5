"""Vertebral strength without finite elements (SCIENCE.md 3).

- CT rigidity analysis (Whealan et al., JBJS 2000; Snyder et al., Clin Cancer Res 2009): the
  body is resampled on cross-sections perpendicular to the vertebral axis; each voxel's
  density gives a modulus by the configured law; ``EA(z) = sum E_i * A_px`` and the bending
  rigidities ``EI(z) = sum E_i * d_i^2 * A_px`` about the modulus-weighted centroid (``d``:
  antero-posterior distance for flexion, lateral distance for lateral bending). Strength is
  governed by the weakest section: ``F = yield_strain * min_z EA(z)``. Sections near the
  endplates, whose area is below a configured fraction of the largest, are left out.
- Density x area: ``F = sigma_f(rho) * A_min``, the failure stress at the mean trabecular
  density times the smallest cross-sectional area of the body. ``sigma_f`` is by default
  ``yield_strain * E(rho)`` with the configured modulus law (the rigidity analysis applied to
  a uniform section), or the yield stress of trabecular bone ``37.4 * rho_app^1.39``
  (Kopperdahl 2002 as cited in SCIENCE.md) at the apparent density.
- Density kinds are never mixed: QCT-equivalent density (mg/cm3 of K2HPO4 or HA, from the
  calibration) becomes ash density by the material's configured relation and apparent density
  by the ash fraction; the Crawford law takes K2HPO4-equivalent density directly. Voxels of
  non-positive equivalent density (fat, fluid) have no stiffness.
- Confidence: lower for vertebrae with blastic or mixed lesions (density -> modulus laws were
  made on non-metastatic bone; Anderson et al. 2022, 2026), for uncalibrated series, and
  unknown without a lesion segmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from risk.calibration import Calibration
from risk.frames import F64, Frame, axis_range, local_grid, sample
from risk.method_settings import (
    DensityAreaLaw,
    Material,
    MeasurementSettings,
    ModulusLaw,
    StrengthSettings,
)
from risk.values import Measured, Missing
from risk.vertebral_body import VertebraVoxels
from spinemets.geometry import Geometry

#: Yield stress of trabecular bone (Kopperdahl 2002 as cited in SCIENCE.md 3), MPa.
YIELD_STRESS_COEFFICIENT = 37.4
YIELD_STRESS_EXPONENT = 1.39


@dataclass(frozen=True)
class VertebraStrength:
    """Strength estimates of one vertebral body and how confident they are."""

    modulus_law: str
    yield_strain: float
    #: Minimum axial rigidity over the cross-sections (N) and where (mm along the axis from
    #: the body centroid).
    axial_rigidity_n: Measured
    weakest_section_mm: Measured
    #: Smallest bending rigidities over the sections (N mm2): flexion-extension, lateral.
    bending_rigidity_ap_n_mm2: Measured
    bending_rigidity_lateral_n_mm2: Measured
    sections: int
    min_section_area_mm2: Measured
    ctra_failure_load_n: Measured
    trabecular_apparent_density_g_cm3: Measured
    density_area_failure_load_n: Measured
    confidence: str  # "normal", "lower" or "unknown"
    confidence_reasons: tuple[str, ...]


def ash_density(rho_mg_cm3: npt.ArrayLike, material: Material,
                settings: StrengthSettings) -> F64:
    """Ash density (g/cm3) of QCT-equivalent density; 0 where that is not positive."""
    rho = np.asarray(rho_mg_cm3, dtype=np.float64) / 1000.0
    relation = settings.k2hpo4_to_ash if material is Material.K2HPO4 else settings.ha_to_ash
    return np.where(rho > 0, relation.intercept + relation.slope * rho, 0.0)


def apparent_density(rho_mg_cm3: npt.ArrayLike, material: Material,
                     settings: StrengthSettings) -> F64:
    """Apparent (wet) density in g/cm3: ash density / ash fraction."""
    return np.asarray(ash_density(rho_mg_cm3, material, settings) / settings.ash_fraction)


def k2hpo4_density(rho_mg_cm3: npt.ArrayLike, material: Material,
                   settings: StrengthSettings) -> F64:
    """K2HPO4-equivalent density (g/cm3), through ash density for an HA calibration."""
    rho = np.asarray(rho_mg_cm3, dtype=np.float64) / 1000.0
    if material is Material.K2HPO4:
        return np.clip(rho, 0.0, None)
    ash = ash_density(rho_mg_cm3, material, settings)
    relation = settings.k2hpo4_to_ash
    return np.asarray(np.where(ash > 0, np.clip((ash - relation.intercept) / relation.slope,
                                                0.0, None), 0.0))


def modulus_mpa(rho_mg_cm3: npt.ArrayLike, material: Material,
                settings: StrengthSettings) -> F64:
    """Elastic modulus (MPa) of QCT-equivalent densities by the configured law."""
    law = settings.modulus_law
    if law is ModulusLaw.CRAWFORD_2003:
        rho_qct = k2hpo4_density(rho_mg_cm3, material, settings)
        return np.asarray(np.clip(-34.7 + 3230.0 * rho_qct, 0.0, None))
    rho_app = apparent_density(rho_mg_cm3, material, settings)
    if law is ModulusLaw.MORGAN_2003:
        return np.asarray(4730.0 * rho_app ** 1.56)
    return np.asarray(2980.0 * rho_app ** 1.05)


def yield_stress_mpa(rho_app_g_cm3: float) -> float:
    """Yield stress of trabecular bone at an apparent density (MPa)."""
    return float(YIELD_STRESS_COEFFICIENT * max(rho_app_g_cm3, 0.0) ** YIELD_STRESS_EXPONENT)


def failure_stress_mpa(rho_mg_cm3: float, material: Material,
                       settings: StrengthSettings) -> float:
    """Failure stress of the density x area estimate at a QCT-equivalent density (MPa)."""
    if settings.density_area_law is DensityAreaLaw.YIELD_STRAIN:
        return float(settings.yield_strain * modulus_mpa(rho_mg_cm3, material, settings))
    return yield_stress_mpa(float(apparent_density(rho_mg_cm3, material, settings)))


@dataclass(frozen=True)
class SectionProperties:
    """Per-section area (mm2), axial rigidity (N) and bending rigidities (N mm2)."""

    z_mm: F64
    area_mm2: F64
    axial_n: F64
    bending_ap: F64
    bending_lateral: F64


def section_properties(inside: npt.NDArray[np.bool_], modulus: F64, x: F64, y: F64, z: F64,
                       step: float) -> SectionProperties:
    """Properties of the sections ``inside[z]`` (bool, z x y x x) with moduli (MPa)."""
    pixel = step * step
    e = np.where(inside, modulus, 0.0)
    area = inside.sum(axis=(1, 2)) * pixel
    axial = e.sum(axis=(1, 2)) * pixel
    with np.errstate(invalid="ignore", divide="ignore"):
        y_bar = (e * y[None, :, None]).sum(axis=(1, 2)) * pixel / axial
        x_bar = (e * x[None, None, :]).sum(axis=(1, 2)) * pixel / axial
    y_bar = np.nan_to_num(y_bar)
    x_bar = np.nan_to_num(x_bar)
    dy = y[None, :, None] - y_bar[:, None, None]
    dx = x[None, None, :] - x_bar[:, None, None]
    bending_ap = (e * dy * dy).sum(axis=(1, 2)) * pixel
    bending_lateral = (e * dx * dx).sum(axis=(1, 2)) * pixel
    return SectionProperties(z, area, axial, bending_ap, bending_lateral)


def confidence(types_present: Sequence[str] | None, calibration: Calibration,
               settings: StrengthSettings) -> tuple[str, tuple[str, ...]]:
    """Confidence of a strength estimate and the reasons it is not normal."""
    reasons: list[str] = []
    level = "normal"
    if types_present is None:
        level = "unknown"
        reasons.append("no lesion segmentation: lesion types unknown")
    else:
        for kind in types_present:
            if kind in settings.low_confidence_lesions:
                reasons.append(f"{kind} lesion: density-modulus laws were made on "
                               "non-metastatic bone")
    if not calibration.calibrated:
        reasons.append("uncalibrated density")
    if level == "normal" and reasons:
        level = "lower"
    return level, tuple(reasons)


def measure_strength(ct: npt.NDArray[np.int16], v: VertebraVoxels,
                     body: npt.NDArray[np.bool_] | None, frame: Frame, geometry: Geometry,
                     calibration: Calibration, trabecular_mg_cm3: Measured,
                     types_present: Sequence[str] | None, measurement: MeasurementSettings,
                     settings: StrengthSettings) -> VertebraStrength:
    """CT rigidity analysis and the density x area estimate of one vertebral body."""
    level, reasons = confidence(types_present, calibration, settings)
    law = settings.modulus_law.value
    if v.truncated or body is None:
        missing = (Missing("truncated", "vertebra cut by the border of the volume")
                   if v.truncated else Missing("no-body", "vertebral body not separated"))
        return VertebraStrength(law, settings.yield_strain, missing, missing, missing, missing,
                                0, missing, missing, missing, missing, level, reasons)
    step = measurement.section_step_mm
    local = frame.to_local(v.patient(body, geometry))
    lo, hi = local.min(axis=0) - 1.0, local.max(axis=0) + 1.0
    x, y, z = (axis_range(float(lo[a]), float(hi[a]), step) for a in range(3))
    points = local_grid(frame, x, y, z)
    inside = sample(body, geometry, points, 1, v.offset) > 0.5
    hu = sample(ct[v.crop], geometry, points, 1, v.offset)
    modulus = modulus_mpa(calibration.density(hu), calibration.material, settings)
    props = section_properties(inside, modulus, x, y, z, step)
    keep = props.area_mm2 >= measurement.min_section_area_fraction * props.area_mm2.max()
    weakest = int(np.flatnonzero(keep)[np.argmin(props.axial_n[keep])])
    min_ea = float(props.axial_n[weakest])
    min_area = float(props.area_mm2[keep].min())
    rho_app: Measured = trabecular_mg_cm3
    density_area: Measured = trabecular_mg_cm3
    if not isinstance(trabecular_mg_cm3, Missing):
        rho_app = float(apparent_density(trabecular_mg_cm3, calibration.material, settings))
        density_area = failure_stress_mpa(trabecular_mg_cm3, calibration.material,
                                          settings) * min_area
    return VertebraStrength(
        law, settings.yield_strain, min_ea, float(props.z_mm[weakest]),
        float(props.bending_ap[keep].min()), float(props.bending_lateral[keep].min()),
        int(keep.sum()), min_area, settings.yield_strain * min_ea, rho_app, density_area,
        level, reasons)

