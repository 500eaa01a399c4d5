"""Vertebral body against ground truth: axis, body vs posterior elements, heights, height loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from phantom import Phantom, PhantomOptions, generate
from risk.method_settings import (
    CalibrationMethod,
    CalibrationSettings,
    MeasurementSettings,
    MethodSettings,
)
from risk.spine import SpineAssessment, assess_spine
from risk.values import Missing
from risk.vertebral_body import locate_bodies, measure_geometry, vertebra_voxels
from spinemets import labels
from spinemets.geometry import Geometry
from spinemets.labelmaps import LabelMap

IN_VIEW = ("L1", "L2", "L3")  # with a measurable neighbour on each side in the wedge phantom


def by_level(assessment: SpineAssessment) -> dict[str, Any]:
    return {v.level: v for v in assessment.vertebrae}


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_axis_follows_the_spine(wedge_phantom: Any, wedge_assessment: SpineAssessment) -> None:
    for level in ("T12", *IN_VIEW, "L4"):
        v = by_level(wedge_assessment)[level]
        angle = np.degrees(np.arccos(min(1.0, abs(float(v.geometry.frame.axis
                                                        @ wedge_phantom.axis(level))))))
        assert angle < 3.0, level


def test_body_is_separated_from_the_posterior_elements(wedge_phantom: Any) -> None:
    ph = wedge_phantom.phantom
    geometry = ph.ct.geometry
    voxels = vertebra_voxels(ph.vertebrae, geometry)
    located = locate_bodies(voxels, geometry)
    for level in ("T12", *IN_VIEW, "L4"):
        split = located[level][1]
        assert split.body is not None
        body = np.zeros(ph.vertebrae.array.shape, dtype=bool)
        body[voxels[level].crop] = split.body
        truth = wedge_phantom.body(level)
        assert dice(body, truth) > 0.97, level
        assert body.sum() == pytest.approx(truth.sum(), rel=0.03), level


def test_heights_and_height_loss_of_a_wedge_fracture(wedge_phantom: Any,
                                                     wedge_assessment: SpineAssessment) -> None:
    """L2 lost 40 % of its anterior height, none posteriorly; its neighbours are intact."""
    fraction = wedge_phantom.phantom.truth["compression"]["fraction"]
    vertebrae = by_level(wedge_assessment)
    l2 = vertebrae["L2"]
    assert l2.height_loss.reference_levels == ("L1", "L3")
    assert l2.height_loss.anterior == pytest.approx(fraction, abs=0.05)
    assert l2.height_loss.posterior == pytest.approx(0.0, abs=0.06)
    assert 0.1 < l2.height_loss.middle < fraction
    assert l2.height_loss.anterior_posterior_ratio == pytest.approx(1 - fraction, abs=0.06)
    assert l2.geometry.wedge_sagittal_deg > 15
    for level in ("L1", "L3"):
        intact = vertebrae[level]
        # Neighbours of a deformed vertebra keep only the other neighbour as reference.
        assert "L2" not in intact.height_loss.reference_levels
        assert abs(intact.height_loss.maximum) < 0.1, level
        # Posterior height against the true rim height (7 % endplate concavity, 1 mm voxels).
        height = wedge_phantom.level(level)["height_mm"]
        assert intact.geometry.heights.posterior_mm == pytest.approx(0.96 * height, abs=1.2)
        assert abs(intact.geometry.wedge_sagittal_deg) < 5


@pytest.fixture(scope="module")
def crush_phantom() -> Phantom:
    return generate(PhantomOptions(seed=22, levels=("L1", "L3"), spacing=(1.0, 1.0, 1.0),
                                   matrix=130, compression="L2", compression_fraction=0.3,
                                   compression_wedge=False))


def test_height_loss_of_a_crush_fracture_is_even(crush_phantom: Phantom) -> None:
    result = assess_spine(crush_phantom.ct, crush_phantom.vertebrae, None, None, [],
                          _uncalibrated())
    l2 = by_level(result)["L2"]
    for loss in (l2.height_loss.anterior, l2.height_loss.middle, l2.height_loss.posterior):
        assert loss == pytest.approx(0.3, abs=0.06)
    assert abs(l2.geometry.wedge_sagittal_deg) < 5


def test_truncated_vertebrae_are_reported_missing_with_the_reason(
        wedge_assessment: SpineAssessment) -> None:
    cut = [v for v in wedge_assessment.vertebrae if v.geometry.truncated]
    assert cut  # the field of view cuts the levels beyond T12-L4
    for v in cut:
        assert v.geometry.body_volume_ml == Missing(
            "truncated", "vertebra cut by the border of the volume")
        assert isinstance(v.height_loss.maximum, Missing)
        assert isinstance(v.strength.ctra_failure_load_n, Missing)
        assert all(isinstance(f.phi, Missing) for f in v.factors_of_risk)


def test_real_ct_body_matches_the_hand_made_sub_regions(tptbox: Any) -> None:
    volume, label_map, subregions = tptbox
    voxels = vertebra_voxels(label_map, volume.geometry)
    assert [lv for lv, v in voxels.items() if v.truncated] == ["L2", "L4"]
    frame, split = locate_bodies(voxels, volume.geometry)["L3"]
    assert split.body is not None
    body = np.zeros(label_map.array.shape, dtype=bool)
    body[voxels["L3"].crop] = split.body
    # Sub-regions 49 (body cortex) and 50 (corpus) of the vertebra L3 (value 22).
    truth = (label_map.array == 22) & np.isin(subregions, [49, 50])
    assert dice(body, truth) > 0.95
    g = measure_geometry("L3", voxels["L3"], frame, split, volume.geometry,
                         MeasurementSettings())
    assert g.body_volume_ml == pytest.approx(truth.sum() * 1.5 ** 3 / 1000, rel=0.08)
    # Adult L3: body 25-35 mm tall at its rim, lower in the middle (concave endplates),
    # 30-40 mm deep, 40-50 mm wide.
    assert 25 < g.heights.posterior_mm < 35
    assert 0.75 * g.heights.posterior_mm < g.heights.middle_mm < g.heights.posterior_mm
    assert 30 < g.depth_mm < 40
    assert 40 < g.width_mm < 50


def test_a_label_without_posterior_elements_is_all_body() -> None:
    geometry = Geometry((40, 40, 30), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    z, y, x = np.mgrid[0:30, 0:40, 0:40]
    cylinder = ((x - 20) ** 2 + (y - 20) ** 2 <= 12 ** 2) & (z >= 5) & (z < 25)
    label_map = LabelMap(np.where(cylinder, labels.vertebra("L3").value, 0).astype(np.uint8),
                         geometry, {22: "vertebra_L3"}, "test", "1")
    voxels = vertebra_voxels(label_map, geometry)
    frame, split = locate_bodies(voxels, geometry)["L3"]
    assert split.body is not None and split.body.sum() == cylinder.sum()
    assert "all body" in split.method
    g = measure_geometry("L3", voxels["L3"], frame, split, geometry, MeasurementSettings())
    assert g.heights.middle_mm == pytest.approx(20.0, abs=0.5)
    assert g.width_mm == pytest.approx(25.0, abs=1.0)


def _uncalibrated() -> MethodSettings:
    return MethodSettings(calibration=CalibrationSettings(method=CalibrationMethod.UNCALIBRATED))
