"""Paraspinal muscles in the plane perpendicular to the spine axis, against the phantom."""

from __future__ import annotations

from typing import Any

import pytest

from risk.muscles import extensors
from risk.spine import SpineAssessment
from risk.values import Missing


def test_deep_back_muscle_area_and_moment_arm_match_the_phantom(
        wedge_phantom: Any, wedge_assessment: SpineAssessment) -> None:
    muscles = wedge_assessment.muscles
    assert not isinstance(muscles, Missing)
    measured = {(m.level, m.muscle, m.side): m for m in muscles}
    for level in ("T12", "L1", "L2", "L3", "L4"):
        for side, sign in (("left", 1), ("right", -1)):
            m = measured[(level, "deep_back_muscle", side)]
            area, posterior = wedge_phantom.extensor_section(level, sign)
            assert m.csa_mm2 == pytest.approx(area, rel=0.05), (level, side)
            assert m.posterior_mm == pytest.approx(posterior, abs=2.0), (level, side)
            assert sign * m.left_mm > 20  # on its own side
            assert m.centroid_distance_mm > m.posterior_mm
            # The phantom's muscles are 40-60 HU with noise: their mean is in that range.
            assert 38 < m.mean_hu < 62


def test_extensor_moment_arms_feed_the_load_model(wedge_assessment: SpineAssessment) -> None:
    muscles = wedge_assessment.muscles
    assert not isinstance(muscles, Missing)
    arms = extensors(muscles)
    for v in wedge_assessment.vertebrae:
        if v.geometry.truncated:
            assert v.level not in arms
            continue
        e = arms[v.level]
        for load in v.loads:
            assert load.moment_arm_m == pytest.approx(e.moment_arm_mm / 1000)
            assert load.moment_arm_source.startswith("CT")
            assert load.muscle_capacity_n == pytest.approx(100.0 * e.csa_mm2 / 100.0)
