"""Change since the prior study of each vertebra's density, body heights, strength and factor of
risk: the current study's :class:`~risk.spine.SpineAssessment` against the prior's.

Vertebrae correspond by level name. The registrar registered each level present in both studies
(``Longitudinal``); its verdict travels with the level (:class:`Correspondence`): a failed,
skipped or missing registration marks the level's change as unreliable. Per level assessed in
both studies: trabecular vBMD (mg/cm3 and per cent), anterior, middle and posterior body
heights (mm) and height losses (per cent of the neighbours' heights; their change in percentage
points), strength (the failure load the factor of risk uses; N and per cent) and the factor of
risk per activity (absolute change), each with its prior and current value. A value missing in
either study leaves its change missing with that study's reason; a vBMD change between studies
calibrated to different reference materials, or with lesions excluded in one study only, is not
computed. A level assessed in one study only is listed with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from risk.method_settings import Activity, StrengthMethod
from risk.spine import SpineAssessment, VertebraAssessment
from risk.values import Measured, Missing
from spinemets import labels
from spinemets.v1 import longitudinal_pb2


@dataclass(frozen=True)
class Change:
    """A value in the prior and the current study and its change; ``percent`` is the change in
    per cent of the prior value, ``None`` for quantities where it is not reported."""

    prior: Measured
    current: Measured
    change: Measured
    percent: Measured | None


def compare(prior: Measured, current: Measured, *, relative: bool = False,
            incomparable: Missing | None = None) -> Change:
    """The change from ``prior`` to ``current`` (and in per cent when ``relative``);
    ``incomparable``: why the two values must not be subtracted."""
    change: Measured
    if incomparable is not None:
        change = incomparable
    elif isinstance(prior, Missing):
        change = Missing(prior.reason, f"prior study: {prior.detail}")
    elif isinstance(current, Missing):
        change = Missing(current.reason, f"current study: {current.detail}")
    else:
        change = current - prior
    if not relative:
        return Change(prior, current, change, None)
    percent: Measured = change
    if not isinstance(change, Missing):
        percent = (Missing("no-prior-value", "the prior value is not positive")
                   if isinstance(prior, Missing) or prior <= 0 else 100.0 * change / prior)
    return Change(prior, current, change, percent)


@dataclass(frozen=True)
class Correspondence:
    """Whether the level's vertebra is the same in both studies, by its registration:
    ``passed``, ``failed``, ``skipped`` (not registered, ``detail`` says why), ``not-registered``
    (the registrar did not report the level) or ``not-compared`` (no registration at all)."""

    registration: str
    detail: str
    reliable: bool


def correspondences(longitudinal: longitudinal_pb2.Longitudinal | None
                    ) -> dict[str, Correspondence]:
    """The registrar's verdict per level (levels it did not report are not in the result)."""
    if longitudinal is None:
        return {}
    found = {s.level: Correspondence("skipped", s.reason, False) for s in longitudinal.skipped}
    for r in longitudinal.registrations:
        found[r.level] = (
            Correspondence("failed", r.problem or "registration flagged as failed", False)
            if r.failed else
            Correspondence("passed", f"Dice {r.dice:.2f}, HD95 {r.hd95_mm:.1f} mm", True))
    return found


@dataclass(frozen=True)
class ActivityChange:
    """The factor of risk of one activity in both studies."""

    activity: str
    factor_of_risk: Change


@dataclass(frozen=True)
class LevelChange:
    """The change of one vertebra assessed in both studies (heights in mm, height losses in
    per cent of the neighbours' heights, vBMD in mg/cm3 of the calibration material, strength
    in N)."""

    level: str
    correspondence: Correspondence
    vbmd_mg_cm3: Change
    height_anterior_mm: Change
    height_middle_mm: Change
    height_posterior_mm: Change
    height_loss_anterior_percent: Change
    height_loss_middle_percent: Change
    height_loss_posterior_percent: Change
    strength_n: Change
    factors_of_risk: tuple[ActivityChange, ...]


@dataclass(frozen=True)
class LevelNotCompared:
    """A level assessed in one study only."""

    level: str
    reason: str  # "not-in-prior-study" or "not-in-current-study"


@dataclass(frozen=True)
class SpineChange:
    """The change of every vertebra since the prior study (cranial to caudal)."""

    prior_study_uid: str
    prior_series_uid: str
    #: The failure load the strength and factor of risk use (``ctra`` or ``density_area``).
    strength_method: str
    #: Calibration method and material of each study's densities.
    prior_calibration: str
    current_calibration: str
    #: The load model's activities (those of the current study's settings).
    activities: tuple[Activity, ...]
    levels: tuple[LevelChange, ...]
    not_compared: tuple[LevelNotCompared, ...]


def _percent(fraction: Measured) -> Measured:
    return fraction if isinstance(fraction, Missing) else 100.0 * fraction


def _strength(v: VertebraAssessment, method: StrengthMethod) -> Measured:
    s = v.strength
    return s.ctra_failure_load_n if method is StrengthMethod.CTRA else (
        s.density_area_failure_load_n)


def _density_incomparable(prior: SpineAssessment, current: SpineAssessment,
                          before: VertebraAssessment, after: VertebraAssessment
                          ) -> Missing | None:
    if prior.calibration.material is not current.calibration.material:
        return Missing("calibration-differs", "the studies are calibrated to different "
                       f"materials ({prior.calibration.material.value}, "
                       f"{current.calibration.material.value})")
    if before.density.lesions_excluded != after.density.lesions_excluded:
        return Missing("lesion-exclusion-differs", "lesions are excluded from the trabecular "
                       "region in one study only (one has no lesion segmentation)")
    return None


def _level(prior: SpineAssessment, current: SpineAssessment, before: VertebraAssessment,
           after: VertebraAssessment, correspondence: Correspondence) -> LevelChange:
    method = current.methods.factor_of_risk.strength
    hb, ha = before.geometry.heights, after.geometry.heights
    lb, la = before.height_loss, after.height_loss
    phis = {f.activity: f.phi for f in before.factors_of_risk}
    return LevelChange(
        after.level, correspondence,
        compare(before.density.vbmd_mg_cm3, after.density.vbmd_mg_cm3, relative=True,
                incomparable=_density_incomparable(prior, current, before, after)),
        compare(hb.anterior_mm, ha.anterior_mm),
        compare(hb.middle_mm, ha.middle_mm),
        compare(hb.posterior_mm, ha.posterior_mm),
        compare(_percent(lb.anterior), _percent(la.anterior)),
        compare(_percent(lb.middle), _percent(la.middle)),
        compare(_percent(lb.posterior), _percent(la.posterior)),
        compare(_strength(before, method), _strength(after, method), relative=True),
        tuple(ActivityChange(f.activity, compare(
            phis.get(f.activity, Missing("no-activity", "not an activity of the prior's "
                                         "assessment")), f.phi))
              for f in after.factors_of_risk))


def spine_change(prior: SpineAssessment, current: SpineAssessment, prior_study_uid: str,
                 prior_series_uid: str, registered: Mapping[str, Correspondence],
                 compared: bool) -> SpineChange:
    """The change of each level since the prior study; ``registered``: the registrar's verdict
    per level (:func:`correspondences`), ``compared``: whether the registrar compared the
    studies at all."""
    before = {v.level: v for v in prior.vertebrae}
    after = {v.level: v for v in current.vertebrae}
    unknown = (Correspondence("not-registered", "the registrar did not report this level",
                              False) if compared else
               Correspondence("not-compared", "no registration with the prior study", False))
    levels = [lv for lv in labels.LEVELS if lv in before or lv in after]
    return SpineChange(
        prior_study_uid, prior_series_uid, current.methods.factor_of_risk.strength.value,
        f"{prior.calibration.method.value} {prior.calibration.material.value}",
        f"{current.calibration.method.value} {current.calibration.material.value}",
        current.methods.loads.activities,
        tuple(_level(prior, current, before[lv], after[lv], registered.get(lv, unknown))
              for lv in levels if lv in before and lv in after),
        tuple(LevelNotCompared(lv, "not-in-prior-study" if lv not in before
                               else "not-in-current-study")
              for lv in levels if lv not in before or lv not in after))


def _signed(value: Measured, digits: int) -> str | Missing:
    return value if isinstance(value, Missing) else f"{value:+.{digits}f}"


def _with_percent(c: Change, digits: int) -> str | Missing:
    text = _signed(c.change, digits)
    if isinstance(text, Missing) or c.percent is None or isinstance(c.percent, Missing):
        return text
    return f"{text} ({c.percent:+.1f}%)"


def _triple(changes: tuple[Change, Change, Change], digits: int) -> str | Missing:
    values = [c.change for c in changes]
    first = values[0]
    if isinstance(first, Missing) and all(isinstance(v, Missing) for v in values):
        return first
    return "/".join("–" if isinstance(v, Missing) else f"{v:+.{digits}f}" for v in values)


def change_columns(change: SpineChange, activity: str | None = None
                   ) -> dict[str, dict[str, str | Missing]]:
    """Per level, the change page's further columns (title: formatted change, or why it is
    missing): vBMD, anterior / middle / posterior body height and height loss (percentage
    points), strength and the factor of risk of ``activity`` (titled ``ΔΦ``), or of every
    activity (``ΔΦ <activity>``) when ``None``."""
    out: dict[str, dict[str, str | Missing]] = {}
    for c in change.levels:
        columns: dict[str, str | Missing] = {
            "ΔvBMD mg/cm³": _with_percent(c.vbmd_mg_cm3, 1),
            "ΔH a/m/p mm": _triple((c.height_anterior_mm, c.height_middle_mm,
                                    c.height_posterior_mm), 1),
            "Δ loss a/m/p pp": _triple((c.height_loss_anterior_percent,
                                        c.height_loss_middle_percent,
                                        c.height_loss_posterior_percent), 0),
            "Δ strength N": _with_percent(c.strength_n, 0)}
        for f in c.factors_of_risk:
            if activity is None or f.activity == activity:
                title = "ΔΦ" if activity is not None else f"ΔΦ {f.activity}"
                columns[title] = _signed(f.factor_of_risk.change, 3)
        out[c.level] = columns
    return out
