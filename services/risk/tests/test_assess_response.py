"""The Assess response carries each vertebra's key risk numbers, or why they are missing."""

from __future__ import annotations

from typing import Any

import pytest

from risk.assess import Assessment, RiskFailure
from risk.measure import measure_vertebrae
from risk.response import assess_response
from risk.spine import SpineAssessment
from risk.values import Missing
from spinemets.v1 import risk_pb2


def value_of(field: risk_pb2.MeasuredValue) -> float | tuple[str, str]:
    """The number, or (reason, detail) when it is missing."""
    if field.WhichOneof("result") == "value":
        return field.value
    return field.missing.reason, field.missing.detail


def expected(value: float | Missing) -> Any:
    return (value.reason, value.detail) if isinstance(value, Missing) else pytest.approx(value)


def test_every_vertebra_has_its_risk_numbers(lesion_phantom: Any,
                                             lesion_assessment: SpineAssessment) -> None:
    ph = lesion_phantom.phantom
    measurements = measure_vertebrae(ph.ct.array, ph.vertebrae)
    reply = risk_pb2.AssessResponse.FromString(assess_response(
        Assessment(measurements, (), lesion_assessment)).SerializeToString())
    assert reply.calibration.method == lesion_assessment.calibration.method.value
    assert reply.calibration.material == "K2HPO4" and reply.calibration.kvp == 120.0
    assessed = {v.level: v for v in lesion_assessment.vertebrae}
    assert [v.level for v in reply.vertebrae] == [m.level for m in measurements]
    for number, item in enumerate(reply.vertebrae, start=1):
        assert item.segment_number == number
        model = assessed[item.level]
        risk = item.risk
        assert item.WhichOneof("risk_result") == "risk"
        assert value_of(risk.vbmd_mg_cm3) == expected(model.density.vbmd_mg_cm3)
        assert value_of(risk.failure_load_n) == expected(model.strength.ctra_failure_load_n)
        assert risk.failure_load_method == "ctra"
        assert risk.strength_confidence == model.strength.confidence
        assert [a.activity for a in risk.activities] == [
            "standing", "standing_5kg", "flexion_30_5kg"]
        for activity, phi, load in zip(risk.activities, model.factors_of_risk, model.loads,
                                       strict=True):
            assert value_of(activity.factor_of_risk) == expected(phi.phi)
            assert value_of(activity.compressive_load_n) == expected(load.compression_n)
            if isinstance(phi.category, Missing):
                assert activity.category_missing.reason == phi.category.reason
            else:
                assert activity.category == phi.category
        assert risk.sins_partial_total == model.sins.partial_total
        assert "pain" in risk.sins_missing
        lesions = model.lesions
        assert not isinstance(lesions, Missing)
        assert risk.lesion_type == (lesions.vertebra_type or "none")
    phis = [a.factor_of_risk for v in reply.vertebrae for a in v.risk.activities]
    assert any(p.WhichOneof("result") == "value" and p.value > 0 for p in phis)


def test_without_a_lesion_map_the_lesion_type_says_why(
        wedge_phantom: Any, wedge_assessment: SpineAssessment) -> None:
    ph = wedge_phantom.phantom
    reply = assess_response(Assessment(measure_vertebrae(ph.ct.array, ph.vertebrae), (),
                                       wedge_assessment))
    for item in reply.vertebrae:
        assert item.risk.lesion_type_missing.reason == "no-lesion-segmentation"
        assert item.risk.strength_confidence == "unknown"


def test_a_failed_assessment_is_named_on_every_vertebra(lesion_phantom: Any) -> None:
    ph = lesion_phantom.phantom
    reply = assess_response(Assessment(measure_vertebrae(ph.ct.array, ph.vertebrae), (),
                                       RiskFailure("ValueError: no body")))
    assert reply.vertebrae and not reply.HasField("calibration")
    for item in reply.vertebrae:
        assert item.volume_ml > 0
        assert (item.risk_missing.reason, item.risk_missing.detail) == (
            "risk-failed", "ValueError: no body")
