"""Density calibration, HU -> volumetric BMD in mg/cm3 of a reference material (SCIENCE.md 2).

Three methods, each recorded with the result (method, material, kVp, kernel, coefficients):

- phantom: coefficients of the scanner and tube voltage from configuration, measured at the
  site on a calibration phantom. :func:`fit_linear` fits them from rod values
  (``HU = a + b * rho``); :func:`fit_mindways` implements the Mindways K2HPO4 phantom's
  water-corrected fit (QCT PRO manual, as implemented in Bonelab "Ogo"):
  ``HU_i - rho_water_i = s * rho_K2HPO4_i + b``, ``s_CT = s - 0.2174``, ``b_CT = b + 999.6``.
- internal (phantomless): the patient's own air, fat and muscle with configured equivalent
  densities give a least-squares line (Lee et al., Bone 2017; Michalski et al., Med Eng Phys
  2020). Air and fat come from automatic regions (air window connected to the image edge; fat
  window), muscle from the muscle segmentation; every region is eroded against partial
  volume and summarised by its median. Contrast biases it (Kaesmacher et al. 2017): a
  contrast-enhanced series is flagged.
- uncalibrated: nominal coefficients from configuration; BMD classes are then not reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from scipy import ndimage

from risk.method_settings import (
    CalibrationMethod,
    CalibrationSettings,
    InternalCalibrationSettings,
    LinearCalibration,
    Material,
    PhantomCalibration,
)
from spinemets.geometry import Geometry

log = logging.getLogger(__name__)

#: Mindways QCT PRO conversion of the water-corrected fit (HU per mg/cm3, HU).
MINDWAYS_SLOPE_OFFSET = 0.2174
MINDWAYS_INTERCEPT_OFFSET = 999.6
#: Plausible calibration slopes (HU per mg/cm3): outside, an internal fit is rejected.
SLOPE_RANGE = (0.3, 5.0)
#: Automatic regions are searched on a grid of at least this spacing (mm), for speed.
ROI_GRID_MM = 2.0


@dataclass(frozen=True)
class ScanInfo:
    """Acquisition attributes of a series that calibration depends on (no patient data)."""

    manufacturer: str
    model: str
    kvp: float | None
    kernel: str
    contrast_agent: str | None

    @classmethod
    def from_headers(cls, sources: Sequence[Dataset]) -> ScanInfo:
        ds = sources[0] if sources else Dataset()
        kvp = ds.get("KVP")
        kernel = ds.get("ConvolutionKernel")
        if kernel is not None and not isinstance(kernel, str):
            kernel = "\\".join(str(k) for k in kernel)
        agent = ds.get("ContrastBolusAgent")
        try:
            kvp_value = float(kvp) if kvp not in (None, "") else None
        except (TypeError, ValueError):
            kvp_value = None
        return cls(manufacturer=str(ds.get("Manufacturer") or ""),
                   model=str(ds.get("ManufacturerModelName") or ""),
                   kvp=kvp_value, kernel=str(kernel or ""),
                   contrast_agent=str(agent).strip() or None if agent else None)

    @property
    def scanner(self) -> str:
        return " ".join(p for p in (self.manufacturer, self.model) if p)


@dataclass(frozen=True)
class ReferenceSample:
    """One reference region of an internal calibration."""

    tissue: str
    hu: float
    voxels: int
    equivalent_mg_cm3: float
    region: str  # how it was found


@dataclass(frozen=True)
class Calibration:
    """``HU = intercept_hu + slope_hu_per_mg_cm3 * rho``; rho in mg/cm3 of ``material``."""

    method: CalibrationMethod
    material: Material
    slope_hu_per_mg_cm3: float
    intercept_hu: float
    kvp: float | None
    kernel: str
    scanner: str
    contrast_agent: str | None
    source: str
    references: tuple[ReferenceSample, ...] = ()
    residual_rms_hu: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def calibrated(self) -> bool:
        return self.method is not CalibrationMethod.UNCALIBRATED

    def density(self, hu: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Equivalent density (mg/cm3) of HU values."""
        return np.asarray((np.asarray(hu, dtype=np.float64) - self.intercept_hu)
                          / self.slope_hu_per_mg_cm3)

    def density_of(self, hu: float) -> float:
        return (hu - self.intercept_hu) / self.slope_hu_per_mg_cm3


def fit_linear(hu: Sequence[float], density: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``HU = intercept + slope * density``: (slope, intercept, RMS residual)."""
    x = np.asarray(density, dtype=np.float64)
    y = np.asarray(hu, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("a calibration line needs two or more distinct densities")
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    return float(slope), float(intercept), float(np.sqrt(np.mean(residual ** 2)))


def fit_mindways(hu: Sequence[float], k2hpo4_mg_cm3: Sequence[float],
                 water_mg_cm3: Sequence[float]) -> tuple[float, float, float]:
    """Mindways K2HPO4 phantom: (s_CT, b_CT, RMS residual) from rod HU and certificate values.

    Fits ``HU_i - water_i = s * K2HPO4_i + b``, then ``s_CT = s - 0.2174`` and
    ``b_CT = b + 999.6`` so that ``HU = b_CT + s_CT * rho_K2HPO4`` (QCT PRO manual).
    """
    if not len(hu) == len(k2hpo4_mg_cm3) == len(water_mg_cm3):
        raise ValueError("one HU, K2HPO4 and water value per rod are required")
    lhs = np.asarray(hu, dtype=np.float64) - np.asarray(water_mg_cm3, dtype=np.float64)
    s, b, rms = fit_linear(list(lhs), k2hpo4_mg_cm3)
    return s - MINDWAYS_SLOPE_OFFSET, b + MINDWAYS_INTERCEPT_OFFSET, rms


def matching_phantom(scan: ScanInfo, phantoms: Sequence[PhantomCalibration]
                     ) -> PhantomCalibration | None:
    """The configured phantom calibration of this scanner, tube voltage (and kernel)."""

    def same(a: str, b: str) -> bool:
        return a.strip().casefold() == b.strip().casefold()

    for entry in phantoms:
        if scan.kvp is None or abs(scan.kvp - entry.kvp) > 0.5:
            continue
        if not same(entry.manufacturer, scan.manufacturer):
            continue
        if entry.model is not None and not same(entry.model, scan.model):
            continue
        if entry.kernel is not None and not same(entry.kernel, scan.kernel):
            continue
        return entry
    return None


def _box_erode(mask: npt.NDArray[np.bool_], spacing: tuple[float, float, float],
               depth_mm: float) -> npt.NDArray[np.bool_]:
    """Erode by a box reaching ``depth_mm`` along each axis (``spacing`` in array order)."""
    size = tuple(2 * int(np.ceil(depth_mm / s - 1e-9)) + 1 for s in spacing)
    if all(v == 1 for v in size):
        return mask
    eroded: npt.NDArray[np.bool_] = ndimage.minimum_filter(
        mask.astype(np.uint8), size=size, mode="constant", cval=0).astype(bool)
    return eroded


def _strides(geometry: Geometry) -> tuple[int, int, int]:
    sx, sy, sz = geometry.spacing
    return (max(1, int(ROI_GRID_MM // sz)), max(1, int(ROI_GRID_MM // sy)),
            max(1, int(ROI_GRID_MM // sx)))


def reference_regions(ct: npt.NDArray[np.int16], geometry: Geometry,
                      muscle: npt.NDArray[np.bool_] | None,
                      settings: InternalCalibrationSettings) -> dict[str, tuple[float, int, str]]:
    """Median HU, voxel count and region description of air, fat and muscle (those found)."""
    step = _strides(geometry)
    view = ct[::step[0], ::step[1], ::step[2]]
    sx, sy, sz = geometry.spacing
    spacing = (sz * step[0], sy * step[1], sx * step[2])
    found: dict[str, tuple[float, int, str]] = {}

    def summarise(name: str, region: npt.NDArray[np.bool_], values: npt.NDArray[np.int16],
                  how: str) -> None:
        eroded = _box_erode(region, spacing, settings.erosion_mm)
        n = int(eroded.sum())
        if n >= settings.min_voxels:
            found[name] = (float(np.median(values[eroded])), n, how)

    lo, hi = settings.air_window_hu
    # Outside the body: air, and the padding outside a round reconstruction field (below the
    # window), connected to the in-plane edge of the image; the lungs are not.
    low = view <= hi
    labelled, count = ndimage.label(low)
    if count:
        edge = np.zeros(view.shape, dtype=bool)
        edge[:, [0, -1], :] = True
        edge[:, :, [0, -1]] = True
        outside = np.unique(labelled[edge & low])
        summarise("air", np.isin(labelled, outside[outside > 0]) & (view >= lo), view,
                  "air window, outside the body (connected to the in-plane image edge)")
    lo, hi = settings.fat_window_hu
    summarise("fat", (view >= lo) & (view <= hi), view, "adipose window")
    if muscle is not None:
        lo, hi = settings.muscle_window_hu
        summarise("muscle", muscle[::step[0], ::step[1], ::step[2]] & (view >= lo) & (view <= hi),
                  view, "muscle segmentation in the lean tissue window")
    return found


def internal_calibration(ct: npt.NDArray[np.int16], geometry: Geometry,
                         muscle: npt.NDArray[np.bool_] | None, scan: ScanInfo,
                         settings: InternalCalibrationSettings) -> Calibration | str:
    """Internal calibration, or a sentence saying why it cannot be made."""
    equivalents = {"air": settings.air_mg_cm3, "fat": settings.fat_mg_cm3,
                   "muscle": settings.muscle_mg_cm3}
    regions = reference_regions(ct, geometry, muscle, settings)
    samples = tuple(ReferenceSample(name, hu, n, equivalents[name], how)
                    for name, (hu, n, how) in regions.items())
    if len(samples) < 2:
        found = ", ".join(s.tissue for s in samples) or "none"
        return f"internal calibration needs two reference tissues (found: {found})"
    slope, intercept, rms = fit_linear([s.hu for s in samples],
                                       [s.equivalent_mg_cm3 for s in samples])
    if not SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]:
        return f"internal calibration slope {slope:.3f} HU per mg/cm3 is implausible"
    notes: tuple[str, ...] = ()
    if scan.contrast_agent:
        notes = ("contrast-enhanced series: internal calibration and BMD are biased",)
    return Calibration(CalibrationMethod.INTERNAL, settings.material, slope, intercept, scan.kvp,
                       scan.kernel, scan.scanner, scan.contrast_agent,
                       "patient reference tissues (" + ", ".join(s.tissue for s in samples)
                       + ")", samples, rms, notes)


def _from_coefficients(method: CalibrationMethod, coefficients: LinearCalibration,
                       scan: ScanInfo, source: str, notes: tuple[str, ...]) -> Calibration:
    return Calibration(method, coefficients.material, coefficients.slope_hu_per_mg_cm3,
                       coefficients.intercept_hu, scan.kvp, scan.kernel, scan.scanner,
                       scan.contrast_agent, source, notes=notes)


def calibrate(ct: npt.NDArray[np.int16], geometry: Geometry,
              muscle: npt.NDArray[np.bool_] | None, scan: ScanInfo,
              settings: CalibrationSettings) -> Calibration:
    """The calibration of a series by the configured method, falling back as documented.

    ``auto``: phantom if one matches, else internal, else uncalibrated; ``phantom`` and
    ``internal``: that method, else uncalibrated. Each fallback is noted in the result.
    """
    method = settings.method
    notes: list[str] = []
    contrast = (("contrast-enhanced series: BMD is biased",) if scan.contrast_agent else ())
    if method in (CalibrationMethod.AUTO, CalibrationMethod.PHANTOM):
        entry = matching_phantom(scan, settings.phantoms)
        if entry is not None:
            return _from_coefficients(CalibrationMethod.PHANTOM, entry, scan,
                                      entry.source or "phantom calibration", contrast)
        kvp = "unknown" if scan.kvp is None else f"{scan.kvp:g}"
        notes.append(f"no phantom calibration configured for {scan.scanner or 'this scanner'}"
                     f" at {kvp} kVp")
    if method in (CalibrationMethod.AUTO, CalibrationMethod.INTERNAL):
        result = internal_calibration(ct, geometry, muscle, scan, settings.internal)
        if isinstance(result, Calibration):
            return replace(result, notes=(*notes, *result.notes))
        notes.append(result)
    if notes:
        log.info("density calibration falls back to nominal coefficients: %s", "; ".join(notes))
    return _from_coefficients(CalibrationMethod.UNCALIBRATED, settings.nominal, scan,
                              "nominal coefficients (configuration)", (*notes, *contrast))
