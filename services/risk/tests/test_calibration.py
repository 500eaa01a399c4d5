"""Density calibration (SCIENCE.md 2): phantom fits, scanner matching, internal calibration."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from phantom import anatomy
from risk.calibration import ScanInfo, calibrate, fit_linear, fit_mindways
from risk.method_settings import (
    CalibrationMethod,
    CalibrationSettings,
    Material,
    MethodSettings,
    PhantomCalibration,
)
from risk.spine import assess_spine
from spinemets import labels
from spinemets.geometry import Geometry, Volume

#: A Mindways-like rod set: K2HPO4 and water densities of five rods (mg/cm3).
RODS_K2HPO4 = (-51.8, -53.4, 58.9, 157.0, 375.8)
RODS_WATER = (1012.2, 1057.4, 1103.9, 1119.5, 923.2)


def scan(**changes: Any) -> ScanInfo:
    base = ScanInfo(manufacturer="Synthetic", model="Phantom CT", kvp=120.0, kernel="B30f",
                    contrast_agent=None)
    return dataclasses.replace(base, **changes)


def test_mindways_fit_recovers_the_scanner_coefficients() -> None:
    s_ct, b_ct = 1.237, -4.2
    hu = [w + (s_ct + 0.2174) * k + (b_ct - 999.6) for k, w in zip(RODS_K2HPO4, RODS_WATER,
                                                                    strict=True)]
    slope, intercept, rms = fit_mindways(hu, RODS_K2HPO4, RODS_WATER)
    assert slope == pytest.approx(s_ct, abs=1e-9)
    assert intercept == pytest.approx(b_ct, abs=1e-7)
    assert rms < 1e-7
    # An ideal K2HPO4 solution (water displaced 0.2174 mg per mg) reads as its K2HPO4 density.
    ideal = [999.6 - 0.2174 * k + (s_ct + 0.2174) * k + (b_ct - 999.6) for k in (0, 100, 200)]
    assert [(h - intercept) / slope for h in ideal] == pytest.approx([0, 100, 200])


def test_linear_fit_recovers_ha_rods_despite_noise() -> None:
    rods = np.array([0.0, 50.0, 100.0, 200.0])
    noise = np.random.default_rng(1).normal(0, 0.5, rods.size)
    slope, intercept, rms = fit_linear(list(3.0 + 0.81 * rods + noise), list(rods))
    assert slope == pytest.approx(0.81, abs=0.01)
    assert intercept == pytest.approx(3.0, abs=1.0)
    assert 0 < rms < 1.0
    with pytest.raises(ValueError, match="two or more distinct"):
        fit_linear([10.0, 12.0], [50.0, 50.0])


def test_phantom_coefficients_are_chosen_by_scanner_kvp_and_kernel(
        phantom_calibration: PhantomCalibration) -> None:
    other_kernel = phantom_calibration.model_copy(update={"kernel": "B70f", "slope_hu_per_mg_cm3":
                                                         2.0, "source": "sharp kernel"})
    settings = CalibrationSettings(phantoms=(other_kernel, phantom_calibration))
    ct = np.zeros((2, 2, 2), np.int16)
    found = calibrate(ct, _geometry(), None, scan(), settings)
    assert (found.method, found.material, found.slope_hu_per_mg_cm3, found.intercept_hu) == (
        CalibrationMethod.PHANTOM, Material.K2HPO4, 1.25, -5.0)
    assert (found.kvp, found.kernel, found.scanner, found.source) == (
        120.0, "B30f", "Synthetic Phantom CT", "test phantom")
    sharp = calibrate(ct, _geometry(), None, scan(kernel="b70F"), settings)
    assert (sharp.slope_hu_per_mg_cm3, sharp.source) == (2.0, "sharp kernel")
    # Another tube voltage has no phantom: internal calibration finds nothing in this tiny
    # volume, so the nominal coefficients are used and both fallbacks are noted.
    other = calibrate(ct, _geometry(), None, scan(kvp=100.0), settings)
    assert other.method is CalibrationMethod.UNCALIBRATED
    assert not other.calibrated
    assert any("100 kVp" in note for note in other.notes)
    assert any("internal calibration needs two reference tissues" in n for n in other.notes)


def _geometry() -> Geometry:
    return Geometry((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))


def test_internal_calibration_finds_the_patients_air_fat_and_muscle(wide_phantom: Any) -> None:
    ph = wide_phantom.phantom
    tissues = anatomy.build(ph.options.seed).tissues
    muscle = np.isin(ph.muscles.array, [labels.by_name(f"deep_back_muscle_{s}").value
                                        for s in ("left", "right")])
    found = calibrate(ph.ct.array, ph.ct.geometry, muscle, scan(kvp=90.0),
                      CalibrationSettings())
    assert found.method is CalibrationMethod.INTERNAL
    measured = {r.tissue: r.hu for r in found.references}
    truth = {"air": -1000.0, "fat": tissues.fat, "muscle": float(np.mean(tissues.muscle[:2]))}
    assert measured.keys() == truth.keys()
    for tissue, hu in truth.items():
        assert measured[tissue] == pytest.approx(hu, abs=4.0), tissue


def test_internal_calibration_cancels_a_scanner_offset_and_gain(wide_phantom: Any) -> None:
    """The same patient on a scanner reading 4 % high plus 25 HU gets the same vBMD, which
    nominal (uncalibrated) coefficients cannot give."""
    ph = wide_phantom.phantom
    drifted = Volume(np.rint(1.04 * ph.ct.array + 25).astype(np.int16), ph.ct.geometry,
                     ph.ct.slice_instance_uids, ph.ct.sop_class_uid)

    def vbmd(volume: Volume, method: CalibrationMethod) -> float:
        settings = MethodSettings(calibration=CalibrationSettings(method=method))
        result = assess_spine(volume, ph.vertebrae, ph.muscles, None, [], settings)
        value = {v.level: v.density.vbmd_mg_cm3 for v in result.vertebrae}["L2"]
        assert isinstance(value, float)
        assert result.calibration.method is method
        return value

    internal, internal_drifted = (vbmd(v, CalibrationMethod.INTERNAL) for v in (ph.ct, drifted))
    assert internal_drifted == pytest.approx(internal, rel=0.01)
    nominal, nominal_drifted = (vbmd(v, CalibrationMethod.UNCALIBRATED) for v in (ph.ct,
                                                                                  drifted))
    assert abs(nominal_drifted - nominal) > 20


def test_contrast_is_recorded_with_the_calibration(phantom_calibration: PhantomCalibration
                                                   ) -> None:
    found = calibrate(np.zeros((2, 2, 2), np.int16), _geometry(), None,
                      scan(contrast_agent="Iomeprol"),
                      CalibrationSettings(phantoms=(phantom_calibration,)))
    assert found.contrast_agent == "Iomeprol"
    assert any("contrast" in note for note in found.notes)


def test_air_is_found_inside_a_round_field_of_view_padded_outside(wide_phantom: Any) -> None:
    """Scanners pad the corners outside the reconstruction circle with -3024: the air ring
    inside the circle is still outside the body."""
    ph = wide_phantom.phantom
    ct = ph.ct.array.copy()
    rows, columns = ct.shape[1:]
    r, c = np.mgrid[0:rows, 0:columns]
    corner = (r - rows / 2) ** 2 + (c - columns / 2) ** 2 > (0.48 * rows) ** 2
    ct[:, corner] = -3024
    found = calibrate(ct, ph.ct.geometry, None, scan(kvp=90.0), CalibrationSettings())
    air = {r.tissue: r for r in found.references}["air"]
    assert air.hu == pytest.approx(-1000.0, abs=4.0)
