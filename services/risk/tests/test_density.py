"""Density and lesion burden against phantom ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from risk.calibration import Calibration
from risk.density import acr_class
from risk.method_settings import CalibrationMethod, Material, PhantomCalibration
from risk.spine import SpineAssessment
from risk.values import Missing


def test_trabecular_density_excludes_the_cortex(wedge_phantom: Any,
                                                 wedge_assessment: SpineAssessment,
                                                 phantom_calibration: PhantomCalibration
                                                 ) -> None:
    """The peeled body reads the phantom's marrow HU, not the brighter cortex, and the
    phantom calibration turns it into the density that calibration defines."""
    calibration = wedge_assessment.calibration
    assert (calibration.method, calibration.source) == (CalibrationMethod.PHANTOM,
                                                        "test phantom")
    for v in wedge_assessment.vertebrae:
        if v.geometry.truncated:
            continue
        truth = wedge_phantom.level(v.level)
        assert v.density.trabecular_mean_hu == pytest.approx(truth["trabecular_hu"], abs=3.0)
        assert v.density.body_mean_hu > v.density.trabecular_mean_hu + 20  # cortex inside
        expected = (truth["trabecular_hu"] - phantom_calibration.intercept_hu) \
            / phantom_calibration.slope_hu_per_mg_cm3
        assert v.density.vbmd_mg_cm3 == pytest.approx(expected, rel=0.02)
        assert v.density.bmd_class == acr_class(v.density.vbmd_mg_cm3)


def test_acr_classes_and_uncalibrated_series() -> None:
    assert [acr_class(v) for v in (150.0, 120.0, 80.0, 79.9)] == [
        "normal", "low", "low", "osteoporotic"]
    nominal = Calibration(CalibrationMethod.UNCALIBRATED, Material.K2HPO4, 1.2, 0.0, None, "",
                          "", None, "nominal")
    assert not nominal.calibrated
    assert nominal.density_of(120.0) == pytest.approx(100.0)


def test_lesion_volumes_and_body_fractions_match_the_truth(
        lesion_phantom: Any, lesion_assessment: SpineAssessment) -> None:
    ph = lesion_phantom.phantom
    vertebrae = {v.level: v for v in lesion_assessment.vertebrae}
    voxel_ml = float(np.prod(ph.truth["grid"]["spacing_mm"])) / 1000
    assert ph.truth["lesions"]
    for lesion in ph.truth["lesions"]:
        v = vertebrae[lesion["level"]]
        assert v.lesions.volume_ml[lesion["type"]] == pytest.approx(lesion["voxels"] * voxel_ml)
        assert v.lesions.types_present == (lesion["type"],)
        assert v.lesions.vertebra_type == lesion["type"]
        body = lesion_phantom.body(lesion["level"])
        in_body = ((ph.lesions.array == lesion["value"]) & body).sum()
        assert v.lesions.body_fraction == pytest.approx(in_body / body.sum(), abs=0.005)
        assert v.lesions.body_fraction_by_type[lesion["type"]] == pytest.approx(
            v.lesions.body_fraction)


def test_a_pedicle_lesion_is_on_the_side_it_was_placed(lesion_phantom: Any,
                                                       lesion_assessment: SpineAssessment
                                                       ) -> None:
    (pedicle,) = [les for les in lesion_phantom.phantom.truth["lesions"]
                  if les["site"] == "pedicle"]
    level = pedicle["level"]
    axis = lesion_phantom.axis(level)
    posterior = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
    left = np.cross(posterior / np.linalg.norm(posterior), axis)
    offset = np.asarray(pedicle["centre_lps"]) - np.asarray(lesion_phantom.level(level)[
        "centre_lps"])
    side = "left" if offset @ left > 0 else "right"
    lesions = {v.level: v.lesions for v in lesion_assessment.vertebrae}[level]
    volumes = {"left": lesions.posterior_left_ml, "right": lesions.posterior_right_ml}
    assert volumes[side] == pytest.approx(lesions.total_ml, rel=0.05)
    assert volumes["left" if side == "right" else "right"] == 0.0


def test_without_a_lesion_map_lesions_are_missing_not_zero(
        wedge_assessment: SpineAssessment) -> None:
    for v in wedge_assessment.vertebrae:
        assert v.lesions == Missing("no-lesion-segmentation",
                                    "no lesion segmentation for this series")
        assert v.density.lesions_excluded is False
