"""The fracture-risk numbers of one vertebra, for its TID 1411 group in the SR.

:func:`vertebra_content` turns a :class:`~risk.spine.VertebraAssessment` into measurements and
evaluations (:class:`~risk.sr_items.Content`); concepts are standard where one exists and the
private scheme's (:data:`spinemets.codes.PRIVATE_SCHEME`) otherwise; every missing value is a
TEXT item naming its reason. ``docs/dicom-conformance.md`` lists every item.
"""

from __future__ import annotations

from collections.abc import Mapping

from risk.density import LESION_TYPES, LesionBurden, VertebraDensity
from risk.loads import BodyParameters, LevelLoad
from risk.method_settings import Activity
from risk.sins import Sins
from risk.spine import SpineAssessment, VertebraAssessment
from risk.sr_context import MATERIALS, METHODS
from risk.sr_items import Content, Modifier, Parameter, missing_text
from risk.strength import VertebraStrength
from risk.values import Measured, Missing
from risk.vertebral_body import HeightLoss, VertebraGeometry
from spinemets import codes, labels

_P = codes.PRIVATE_SCHEME

#: ACR classes of trabecular vBMD (risk.density.acr_class).
BMD_CATEGORIES = {"normal": codes.NORMAL, "low": codes.OSTEOPENIA,
                  "osteoporotic": codes.OSTEOPOROSIS}
CONFIDENCE = {"normal": _P["confidence_normal"], "lower": _P["confidence_lower"],
              "unknown": _P["confidence_unknown"]}
STRENGTH_METHODS = {"ctra": _P["failure_load_ctra"],
                    "density_area": _P["failure_load_density_area"]}


#: Where a body height is taken, as a topographical modifier (CID 212 values).
POSITIONS: tuple[tuple[str, Modifier], ...] = tuple(
    (name, (codes.TOPOGRAPHICAL_MODIFIER, value))
    for name, value in (("anterior", codes.ANTERIOR), ("middle", codes.MIDDLE),
                        ("posterior", codes.POSTERIOR)))


def activity_code(activity: Activity) -> codes.Code:
    """The coded value of an activity: its configured name, meaning its posture and load."""
    posture = (f"trunk flexed {activity.trunk_flexion_deg:g} deg"
               if activity.trunk_flexion_deg else "upright")
    load = (f"{activity.hand_load_kg:g} kg in the hands" if activity.hand_load_kg
            else "no load in the hands")
    return codes.activity(activity.name, f"{posture}, {load}")


def _percent(fraction: Measured) -> Measured:
    """A fraction in per cent (the UCUM ``%`` of the SR)."""
    return fraction if isinstance(fraction, Missing) else 100.0 * fraction


def geometry_content(g: VertebraGeometry, loss: HeightLoss) -> Content:
    """Body volume, body heights and their loss against the neighbours."""
    out = Content()
    out.number(_P["body_volume"], g.body_volume_ml, codes.MILLILITER)
    heights = {"anterior": g.heights.anterior_mm, "middle": g.heights.middle_mm,
               "posterior": g.heights.posterior_mm}
    losses = {"anterior": loss.anterior, "middle": loss.middle, "posterior": loss.posterior}
    for name, position in POSITIONS:
        out.number(codes.HEIGHT, heights[name], codes.MILLIMETER, modifiers=[position])
    for name, position in POSITIONS:
        out.number(_P["height_loss"], _percent(losses[name]), codes.PERCENT,
                   modifiers=[position])
    out.number(_P["height_loss"], _percent(loss.maximum), codes.PERCENT,
               derivation=codes.MAXIMUM)
    return out


def density_content(d: VertebraDensity, spine: SpineAssessment) -> Content:
    """Trabecular vBMD with its calibration method and material, and its ACR category."""
    c = spine.calibration
    parameters = [Parameter(_P["calibration_slope"], c.slope_hu_per_mg_cm3,
                            codes.HU_PER_MG_CM3),
                  Parameter(_P["calibration_intercept"], c.intercept_hu, codes.HOUNSFIELD_UNIT)]
    if not isinstance(d.trabecular_mean_hu, Missing):
        parameters.insert(0, Parameter(codes.ATTENUATION_COEFFICIENT, d.trabecular_mean_hu,
                                       codes.HOUNSFIELD_UNIT, codes.MEAN))
    out = Content()
    out.number(_P["vbmd"], d.vbmd_mg_cm3, codes.MG_PER_CM3, modifiers=[
        (_P["density_material"], MATERIALS[c.material]),
        (codes.CALIBRATION_METHOD, METHODS[c.method])], parameters=parameters)
    out.code(_P["bmd_category"], d.bmd_class if isinstance(d.bmd_class, Missing)
             else BMD_CATEGORIES[d.bmd_class])
    return out


def lesion_content(lesions: LesionBurden | Missing) -> Content:
    """Lesion volume in the vertebra (total and by type), share of the body, posterior
    elements left and right."""
    out = Content()
    if isinstance(lesions, Missing):
        for key in ("lesion_volume", "lesion_body_fraction", "lesion_volume_posterior"):
            out.text(_P[key], missing_text(lesions))
        return out
    kind: Mapping[str, Modifier] = {k: (_P["lesion_type"], _P[f"lesion_{k}"])
                                    for k in LESION_TYPES}
    out.number(_P["lesion_volume"], lesions.total_ml, codes.MILLILITER, derivation=codes.TOTAL)
    for k in LESION_TYPES:
        out.number(_P["lesion_volume"], lesions.volume_ml.get(k, 0.0), codes.MILLILITER,
                   modifiers=[kind[k]])
    out.number(_P["lesion_body_fraction"], _percent(lesions.body_fraction), codes.PERCENT,
               derivation=codes.TOTAL)
    for k in LESION_TYPES:
        out.number(_P["lesion_body_fraction"],
                   _percent(lesions.body_fraction_by_type.get(k, 0.0)), codes.PERCENT,
                   modifiers=[kind[k]])
    for side, value in ((labels.LEFT, lesions.posterior_left_ml),
                        (labels.RIGHT, lesions.posterior_right_ml)):
        out.number(_P["lesion_volume_posterior"], value, codes.MILLILITER,
                   modifiers=[(codes.LATERALITY, side)])
    return out


def strength_content(s: VertebraStrength) -> Content:
    """Both failure loads, the minimal axial rigidity and the confidence with its reasons."""
    out = Content()
    out.number(_P["failure_load_ctra"], s.ctra_failure_load_n, codes.NEWTON)
    out.number(_P["failure_load_density_area"], s.density_area_failure_load_n, codes.NEWTON)
    out.number(_P["axial_rigidity"], s.axial_rigidity_n, codes.NEWTON)
    out.code(_P["strength_confidence"], CONFIDENCE[s.confidence])
    for reason in s.confidence_reasons:
        out.text(_P["confidence_reason"], reason)
    return out


def load_parameters(load: LevelLoad, body: BodyParameters) -> list[Parameter]:
    """What a compressive load was computed from: body weight and height, the extensor moment
    arm (measured on the CT or the configured population value)."""
    found = [Parameter(codes.BODY_WEIGHT, body.mass_kg, codes.KILOGRAM),
             Parameter(codes.BODY_HEIGHT, body.height_m, codes.METER)]
    if not isinstance(load.moment_arm_m, Missing):
        found.append(Parameter(_P["extensor_moment_arm"], 1000.0 * load.moment_arm_m,
                               codes.MILLIMETER))
    return found


def risk_content(v: VertebraAssessment, spine: SpineAssessment) -> Content:
    """Compressive load and factor of risk (with its category) per activity."""
    activities = {a.name: a for a in spine.methods.loads.activities}
    out = Content()
    loads = {load.activity: load for load in v.loads}
    for phi in v.factors_of_risk:
        activity = (_P["activity"], activity_code(activities[phi.activity]))
        load = loads[phi.activity]
        out.number(_P["compressive_load"], load.compression_n, codes.NEWTON,
                   modifiers=[activity], parameters=load_parameters(load, spine.body))
        out.number(_P["factor_of_risk"], phi.phi, codes.NO_UNITS, modifiers=[
            activity, (_P["failure_load_estimate"], STRENGTH_METHODS[phi.strength_method])])
        category = phi.category
        out.text(_P["factor_of_risk_category"],
                 missing_text(category) if isinstance(category, Missing) else category,
                 modifiers=[activity])
    return out


def sins_content(sins: Sins) -> Content:
    """Every SINS component (score or why it is missing), the partial and the highest possible
    total, the category of that range and whether SINS applies (a lesion is present)."""
    out = Content()
    for component in sins.components:
        score = component.score
        out.number(_P[f"sins_{component.name}"],
                   score if isinstance(score, Missing) else float(score), codes.SCORE)
    out.number(_P["sins_partial_total"], float(sins.partial_total), codes.SCORE)
    out.number(_P["sins_upper_total"], float(sins.possible_total[1]), codes.SCORE)
    out.text(_P["sins_category"], sins.category)
    out.code(_P["sins_applicable"], codes.YES if sins.applicable else codes.NO)
    return out


def vertebra_content(v: VertebraAssessment, spine: SpineAssessment) -> Content:
    """Everything the assessment has for one vertebra, in the order of the conformance
    statement."""
    out = geometry_content(v.geometry, v.height_loss)
    for part in (density_content(v.density, spine), lesion_content(v.lesions),
                 strength_content(v.strength), risk_content(v, spine),
                 sins_content(v.sins)):
        out.extend(part)
    return out
