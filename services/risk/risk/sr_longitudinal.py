"""The longitudinal section of the SR: each vertebra compared with the prior study.

One TID 1411 measurement group per vertebra that the registrar registered (the ``Longitudinal``
message of the Assess request) or whose change the risk service measured
(:class:`~risk.change_over_time.SpineChange`) and that has a segment in the current SEG,
cranial to caudal: tracking identifier and UID, the vertebra's SEG segment (TID 1411 rather
than 1501, so that validators read every group of the report as one template), the vertebra as
finding type and site, and the Study Instance UID of the prior (UIDREF, concept
"Prior study compared", 99SPMETS C-001). Then, as far as they are known:

- registration quality: Dice (no units) and HD95 (mm), with a "Registration failed" Yes / No
  evaluation;
- lesion change: the lesion volume in the prior and its change (mL), the change in per cent of
  the prior (omitted when the prior had no lesion volume), the numbers of new, resolved and
  growing lesions;
- measured change: trabecular vBMD in the prior (mg/cm3), its change (mg/cm3, per cent); the
  change of the anterior, middle and posterior body height (mm) and height loss (percentage
  points, UCUM ``%``), each with its topographical modifier; the failure load in the prior
  and its change (N, per cent) and the factor of risk in the prior and its change for every
  activity, with the failure-load estimate and the activity as concept modifiers (as in the
  vertebra groups, :mod:`risk.sr_vertebra`); a change that is missing is a TEXT item with its
  reason (:mod:`risk.sr_items`); and a "Change since prior study reliable" Yes / No evaluation
  (No unless the vertebra's registration passed).

Concepts without a standard code are the private scheme's (:data:`spinemets.codes.PRIVATE_SCHEME`).
"""

from __future__ import annotations

from collections.abc import Mapping

import highdicom as hd
from pydicom.dataset import Dataset

from risk.change_over_time import Change, LevelChange, SpineChange
from risk.objects import concept, referenced_segment
from risk.provenance import Provenance
from risk.sr_items import Content, Modifier
from risk.sr_vertebra import POSITIONS, STRENGTH_METHODS, activity_code
from spinemets import codes, labels
from spinemets.v1 import longitudinal_pb2

_P = codes.PRIVATE_SCHEME


def _registration(registration: longitudinal_pb2.VertebraRegistration, out: Content) -> None:
    out.number(_P["registration_dice"], registration.dice, codes.NO_UNITS)
    out.number(_P["registration_hd95"], registration.hd95_mm, codes.MILLIMETER)
    out.code(_P["registration_failed"], codes.YES if registration.failed else codes.NO)


def _lesions(change: longitudinal_pb2.VertebraChange, out: Content) -> None:
    out.number(_P["lesion_volume_prior"], change.prior_ml, codes.MILLILITER)
    out.number(_P["lesion_volume_change"], change.change_ml, codes.MILLILITER)
    if change.HasField("change_percent"):
        out.number(_P["lesion_volume_change_percent"], change.change_percent, codes.PERCENT)
    out.number(_P["new_lesions"], change.new_lesions, codes.LESIONS)
    out.number(_P["resolved_lesions"], change.resolved_lesions, codes.LESIONS)
    out.number(_P["growing_lesions"], change.growing_lesions, codes.LESIONS)


def _quantity(out: Content, c: Change, unit: codes.Code, prior: str | None, change: str,
              percent: str | None = None, modifiers: list[Modifier] | None = None) -> None:
    """The prior value (if ``prior`` names its concept), the change and the per cent."""
    if prior is not None:
        out.number(_P[prior], c.prior, unit, modifiers=modifiers or ())
    out.number(_P[change], c.change, unit, modifiers=modifiers or ())
    if percent is not None and c.percent is not None:
        out.number(_P[percent], c.percent, codes.PERCENT, modifiers=modifiers or ())


def _measured(level: LevelChange, spine: SpineChange, out: Content) -> None:
    _quantity(out, level.vbmd_mg_cm3, codes.MG_PER_CM3, "vbmd_prior", "vbmd_change",
              "vbmd_change_percent")
    heights = (level.height_anterior_mm, level.height_middle_mm, level.height_posterior_mm)
    losses = (level.height_loss_anterior_percent, level.height_loss_middle_percent,
              level.height_loss_posterior_percent)
    for (_, position), height in zip(POSITIONS, heights, strict=True):
        _quantity(out, height, codes.MILLIMETER, None, "height_change", modifiers=[position])
    for (_, position), loss in zip(POSITIONS, losses, strict=True):
        _quantity(out, loss, codes.PERCENT, None, "height_loss_change", modifiers=[position])
    estimate = (_P["failure_load_estimate"], STRENGTH_METHODS[spine.strength_method])
    _quantity(out, level.strength_n, codes.NEWTON, "failure_load_prior", "failure_load_change",
              "failure_load_change_percent", modifiers=[estimate])
    activities = {a.name: a for a in spine.activities}
    for f in level.factors_of_risk:
        activity = (_P["activity"], activity_code(activities[f.activity]))
        _quantity(out, f.factor_of_risk, codes.NO_UNITS, "factor_of_risk_prior",
                  "factor_of_risk_change", modifiers=[activity, estimate])
    out.code(_P["change_reliable"], codes.YES if level.correspondence.reliable else codes.NO)


def _group(level: str, content: Content, prior_study_uid: str, provenance: Provenance,
           seg: Dataset, segment_number: int
           ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    label = labels.vertebra(level)
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=provenance.uid("longitudinal", label.name),
            identifier=f"{label.display} since prior study"),
        referenced_segment=referenced_segment(seg, segment_number, provenance),
        finding_category=concept(label.category),
        finding_type=concept(label.type),
        finding_sites=[hd.sr.FindingSite(concept(label.type))],
        measurements=content.measurements or None,
        qualitative_evaluations=content.evaluations or None)
    content.append_texts(group)
    group[0].ContentSequence.append(hd.sr.UIDRefContentItem(
        name=concept(_P["prior_study"]), value=prior_study_uid,
        relationship_type=hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT))
    return group


def longitudinal_groups(longitudinal: longitudinal_pb2.Longitudinal | None,
                        provenance: Provenance, seg: Dataset, segments: Mapping[str, int],
                        change: SpineChange | None = None
                        ) -> list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    """The groups of every vertebra registered or measured in both studies, cranial to
    caudal, each referencing the vertebra's segment of ``seg`` (``segments``: level ->
    segment number); none without a comparison."""
    registrations = {} if longitudinal is None else {
        r.level: r for r in longitudinal.registrations}
    lesions = {} if longitudinal is None else {c.level: c for c in longitudinal.changes}
    measured = {} if change is None else {c.level: c for c in change.levels}
    if longitudinal is not None:
        prior_study = longitudinal.prior.study_instance_uid
    elif change is not None:
        prior_study = change.prior_study_uid
    else:
        return []
    groups = []
    for level in labels.LEVELS:
        if level not in segments or (level not in registrations and level not in measured):
            continue
        content = Content()
        if level in registrations:
            _registration(registrations[level], content)
        if level in lesions:
            _lesions(lesions[level], content)
        if change is not None and level in measured:
            _measured(measured[level], change, content)
        groups.append(_group(level, content, prior_study, provenance, seg, segments[level]))
    return groups
