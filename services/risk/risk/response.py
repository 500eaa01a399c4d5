"""The Assess response: the measurements, the key fracture-risk numbers and the objects.

Per vertebra the response repeats what the SR holds in full (:mod:`risk.sr_vertebra`): vBMD,
the failure load that divides the loads, per activity the compressive load and factor of risk
with its category, the SINS partial total and its missing components, and the lesion type.
Every value that is missing carries its reason; when the whole assessment failed each vertebra
says so (``risk-failed``).
"""

from __future__ import annotations

from risk.assess import Assessment, RiskFailure
from risk.calibration import Calibration
from risk.spine import SpineAssessment, VertebraAssessment
from risk.values import Measured, Missing
from spinemets.v1 import risk_pb2

NOT_ASSESSED = Missing("not-assessed", "the risk assessment did not reach this vertebra")


def missing(value: Missing) -> risk_pb2.MissingValue:
    """A missing value with its reason."""
    return risk_pb2.MissingValue(reason=value.reason, detail=value.detail)


def measured(value: Measured) -> risk_pb2.MeasuredValue:
    """A number, or why there is none."""
    if isinstance(value, Missing):
        return risk_pb2.MeasuredValue(missing=missing(value))
    return risk_pb2.MeasuredValue(value=value)


def vertebra_risk(v: VertebraAssessment) -> risk_pb2.VertebraRisk:
    """The key numbers of one vertebra."""
    loads = {load.activity: load.compression_n for load in v.loads}
    activities = []
    for f in v.factors_of_risk:
        activity = risk_pb2.ActivityRisk(activity=f.activity,
                                         compressive_load_n=measured(loads[f.activity]),
                                         factor_of_risk=measured(f.phi))
        if isinstance(f.category, Missing):
            activity.category_missing.CopyFrom(missing(f.category))
        else:
            activity.category = f.category
        activities.append(activity)
    used = v.factors_of_risk[0]  # the configured activities are at least one
    out = risk_pb2.VertebraRisk(
        vbmd_mg_cm3=measured(v.density.vbmd_mg_cm3), failure_load_n=measured(used.strength_n),
        failure_load_method=used.strength_method, strength_confidence=v.strength.confidence,
        activities=activities, sins_partial_total=v.sins.partial_total, sins_missing=v.sins.missing)
    if isinstance(v.lesions, Missing):
        out.lesion_type_missing.CopyFrom(missing(v.lesions))
    else:
        out.lesion_type = v.lesions.vertebra_type or "none"
    return out


def calibration(c: Calibration) -> risk_pb2.DensityCalibration:
    """Method, material, tube voltage and kernel of the density calibration."""
    out = risk_pb2.DensityCalibration(method=c.method.value, material=c.material.value,
                                      kernel=c.kernel)
    if c.kvp is not None:
        out.kvp = c.kvp
    return out


def assess_response(result: Assessment) -> risk_pb2.AssessResponse:
    """The response of one Assess call."""
    spine = result.spine
    assessed = ({v.level: v for v in spine.vertebrae}
                if isinstance(spine, SpineAssessment) else {})
    failed = (Missing("risk-failed", spine.detail) if isinstance(spine, RiskFailure)
              else NOT_ASSESSED)
    vertebrae = []
    for number, m in enumerate(result.vertebrae, start=1):
        item = risk_pb2.VertebraMeasurement(level=m.level, volume_ml=m.volume_ml,
                                            mean_hu=m.mean_hu, segment_number=number)
        if m.level in assessed:
            item.risk.CopyFrom(vertebra_risk(assessed[m.level]))
        else:
            item.risk_missing.CopyFrom(missing(failed))
        vertebrae.append(item)
    response = risk_pb2.AssessResponse(
        vertebrae=vertebrae,
        objects=[risk_pb2.ResultObject(sop_class_uid=o.sop_class_uid,
                                       sop_instance_uid=o.sop_instance_uid,
                                       series_instance_uid=o.series_instance_uid,
                                       modality=o.modality)
                 for o in result.objects])
    if isinstance(spine, SpineAssessment):
        response.calibration.CopyFrom(calibration(spine.calibration))
    return response
