"""Strength: modulus laws, CT rigidity analysis on analytic cylinders, confidence flags."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from risk.method_settings import (
    CalibrationMethod,
    CalibrationSettings,
    DensityAreaLaw,
    Material,
    MethodSettings,
    ModulusLaw,
    StrengthSettings,
)
from risk.spine import SpineAssessment, VertebraAssessment, assess_spine
from risk.strength import modulus_mpa
from risk.values import Missing
from spinemets import labels
from spinemets.geometry import CT_IMAGE_STORAGE, Geometry, Volume
from spinemets.labelmaps import LabelMap

RHO = 200.0  # mg/cm3 K2HPO4 (the test calibration: HU = -5 + 1.25 rho)
RADIUS, HEIGHT = 15.0, 20.0  # mm


def cylinder(tilt_deg: float = 0.0, lytic_slab: bool = False, rho: float = RHO,
             radius: float = RADIUS) -> tuple[Volume, LabelMap]:
    """A vertebra that is a cylinder of uniform density ``rho`` (mg/cm3), axis tilted in the
    sagittal plane.

    1 mm voxels; the CT is uniform (the label alone bounds the bone). ``lytic_slab``: within
    2 mm of the middle, the left half of each section is lytic (0 HU, no stiffness).
    """
    shape = (48, 64, 64)
    geometry = Geometry((shape[2], shape[1], shape[0]), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                        np.eye(3))
    z, y, x = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(np.float64)
    t = math.radians(tilt_deg)
    axis = np.array([0.0, math.sin(t), math.cos(t)])
    rel = np.stack([x - 31.5, y - 31.5, z - 23.5], axis=-1)
    along = rel @ axis
    radial = np.linalg.norm(rel - along[..., None] * axis, axis=-1)
    inside = (radial <= radius) & (np.abs(along) <= HEIGHT / 2)
    ct = np.full(shape, -5.0 + 1.25 * rho)
    if lytic_slab:
        ct[inside & (np.abs(along) <= 2.0) & (rel[..., 0] > 0)] = 0.0
    value = labels.vertebra("L3").value
    label_map = LabelMap(np.where(inside, value, 0).astype(np.uint8), geometry,
                         {value: "vertebra_L3"}, "test", "1")
    return Volume(np.rint(ct).astype(np.int16), geometry, (), CT_IMAGE_STORAGE), label_map


def assess_cylinder(make_headers: Callable[..., Any], settings: MethodSettings,
                    **case: Any) -> VertebraAssessment:
    volume, label_map = cylinder(**case)
    result = assess_spine(volume, label_map, None, None, make_headers(), settings)
    assert result.calibration.method is CalibrationMethod.PHANTOM
    (vertebra,) = result.vertebrae
    return vertebra


@pytest.mark.parametrize("tilt_deg", [0.0, 20.0])
def test_a_uniform_cylinder_has_the_rigidity_of_the_formula(
        tilt_deg: float, make_headers: Callable[..., Any],
        make_settings: Callable[..., MethodSettings]) -> None:
    """EA = E(rho) * pi R^2 on sections perpendicular to the axis, whatever the tilt;
    F = yield strain * EA; EI = E * pi R^4 / 4."""
    settings = make_settings()
    v = assess_cylinder(make_headers, settings, tilt_deg=tilt_deg)
    s = v.strength
    e = 3230.0 * RHO / 1000 - 34.7  # Crawford 2003, K2HPO4-equivalent density in g/cm3
    area = math.pi * RADIUS ** 2
    assert s.modulus_law == "crawford2003"
    assert s.min_section_area_mm2 == pytest.approx(area, rel=0.02)
    assert s.axial_rigidity_n == pytest.approx(e * area, rel=0.02)
    assert s.ctra_failure_load_n == pytest.approx(0.008 * e * area, rel=0.02)
    assert s.bending_rigidity_ap_n_mm2 == pytest.approx(e * math.pi * RADIUS ** 4 / 4, rel=0.05)
    assert s.bending_rigidity_lateral_n_mm2 == pytest.approx(e * math.pi * RADIUS ** 4 / 4,
                                                             rel=0.05)
    # Density x area with the yield-strain failure stress equals the rigidity estimate here.
    assert s.density_area_failure_load_n == pytest.approx(s.ctra_failure_load_n, rel=0.02)
    assert v.density.vbmd_mg_cm3 == pytest.approx(RHO, abs=0.5)
    assert v.geometry.heights.middle_mm == pytest.approx(HEIGHT, abs=1.0)


def test_strength_grows_with_density_and_with_area(
        make_headers: Callable[..., Any], make_settings: Callable[..., MethodSettings]) -> None:
    """Both estimates increase strictly with the density at a given size and with the cross
    section at a given density (CTRA as E(rho) * A, so in proportion to the area)."""
    settings = make_settings()

    def loads(**case: Any) -> tuple[float, float]:
        s = assess_cylinder(make_headers, settings, **case).strength
        assert isinstance(s.ctra_failure_load_n, float)
        assert isinstance(s.density_area_failure_load_n, float)
        return s.ctra_failure_load_n, s.density_area_failure_load_n

    by_density = [loads(rho=rho) for rho in (100.0, 150.0, 200.0, 300.0)]
    by_radius = [loads(radius=r) for r in (9.0, 12.0, 15.0, 18.0)]
    for series in (by_density, by_radius):
        for estimate in (0, 1):
            values = [case[estimate] for case in series]
            assert all(a < b for a, b in itertools.pairwise(values)), values
    areas = [r ** 2 for r in (9.0, 12.0, 15.0, 18.0)]
    ctra = [case[0] for case in by_radius]
    assert ctra[-1] / ctra[0] == pytest.approx(areas[-1] / areas[0], rel=0.05)


def test_the_weakest_section_governs(make_headers: Callable[..., Any],
                                     make_settings: Callable[..., MethodSettings]) -> None:
    intact = assess_cylinder(make_headers, make_settings()).strength
    lytic = assess_cylinder(make_headers, make_settings(), lytic_slab=True).strength
    assert lytic.ctra_failure_load_n == pytest.approx(0.5 * intact.ctra_failure_load_n,
                                                      rel=0.06)
    assert abs(lytic.weakest_section_mm) <= 2.5
    # The mean density dilutes a focal defect: density x area drops far less than rigidity.
    assert lytic.density_area_failure_load_n > 0.75 * intact.density_area_failure_load_n


def test_modulus_laws_and_density_kinds() -> None:
    rho = np.array([-20.0, 0.0, 150.0])  # mg/cm3
    k2hpo4 = StrengthSettings()
    e = modulus_mpa(rho, Material.K2HPO4, k2hpo4)
    assert list(e[:2]) == [0.0, 0.0]  # fat and water have no stiffness
    assert e[2] == pytest.approx(-34.7 + 3230 * 0.150)
    morgan = StrengthSettings(modulus_law=ModulusLaw.MORGAN_2003)
    rho_app = (0.0523 + 1.22 * 0.150) / 0.6
    assert modulus_mpa(rho, Material.K2HPO4, morgan)[2] == pytest.approx(4730 * rho_app ** 1.56)
    kopperdahl = StrengthSettings(modulus_law=ModulusLaw.KOPPERDAHL_2002)
    assert modulus_mpa(rho, Material.K2HPO4, kopperdahl)[2] == pytest.approx(
        2980 * rho_app ** 1.05)
    # The same number in HA is a different amount of mineral: not interchangeable.
    ha = modulus_mpa(rho, Material.HA, k2hpo4)[2]
    ash = 0.079 + 0.877 * 0.150
    assert ha == pytest.approx(-34.7 + 3230 * (ash - 0.0523) / 1.22)
    assert ha != pytest.approx(e[2], rel=0.05)


def test_density_area_with_the_yield_stress_of_trabecular_bone(
        make_headers: Callable[..., Any], make_settings: Callable[..., MethodSettings]) -> None:
    settings = make_settings(strength=StrengthSettings(
        density_area_law=DensityAreaLaw.KOPPERDAHL_2002))
    s = assess_cylinder(make_headers, settings).strength
    rho_app = (0.0523 + 1.22 * RHO / 1000) / 0.6
    assert s.trabecular_apparent_density_g_cm3 == pytest.approx(rho_app, rel=0.01)
    assert s.density_area_failure_load_n == pytest.approx(
        37.4 * rho_app ** 1.39 * math.pi * RADIUS ** 2, rel=0.03)


def test_confidence_is_lower_for_blastic_and_mixed_vertebrae(
        lesion_assessment: SpineAssessment, wedge_assessment: SpineAssessment) -> None:
    for v in lesion_assessment.vertebrae:
        if isinstance(v.lesions, Missing) or not v.lesions.types_present:
            continue
        if set(v.lesions.types_present) & {"blastic", "mixed"}:
            assert v.strength.confidence == "lower", v.level
            assert any("non-metastatic bone" in r for r in v.strength.confidence_reasons)
        else:
            assert v.strength.confidence == "normal", v.level
    assert {v.strength.confidence for v in wedge_assessment.vertebrae} == {"unknown"}


def test_an_uncalibrated_series_lowers_confidence(make_headers: Callable[..., Any]) -> None:
    settings = MethodSettings(calibration=CalibrationSettings(
        method=CalibrationMethod.UNCALIBRATED))
    volume, label_map = cylinder()
    (v,) = assess_spine(volume, label_map, None, None, make_headers(), settings).vertebrae
    assert "uncalibrated density" in v.strength.confidence_reasons
