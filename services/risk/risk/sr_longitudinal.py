"""The longitudinal section of the SR: each vertebra compared with the prior study.

One TID 1501 measurement group per vertebra the registrar registered (the ``Longitudinal``
message of the Assess request): tracking identifier and UID, the vertebra as finding type and
site, the Study Instance UID of the prior (UIDREF, concept "Prior study compared", 99SPMETS
C-001), the registration quality (Dice, no units; HD95, mm) with a "Registration failed"
Yes / No evaluation, and, when the lesion change was measured, the lesion volume in the prior
and its change (mL), the change in per cent of the prior (omitted when the prior had no lesion
volume) and the numbers of new, resolved and growing lesions. Concepts without a standard
code are the private scheme's (:data:`spinemets.codes.PRIVATE_SCHEME`).
"""

from __future__ import annotations

import highdicom as hd

from risk.objects import concept
from risk.provenance import Provenance
from spinemets import codes, labels
from spinemets.v1 import longitudinal_pb2

_P = codes.PRIVATE_SCHEME


def _measurement(key: str, value: float, unit: codes.Code) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=concept(_P[key]), value=value, unit=concept(unit))


def _change_measurements(change: longitudinal_pb2.VertebraChange) -> list[hd.sr.Measurement]:
    found = [_measurement("lesion_volume_prior", change.prior_ml, codes.MILLILITER),
             _measurement("lesion_volume_change", change.change_ml, codes.MILLILITER)]
    if change.HasField("change_percent"):
        found.append(_measurement("lesion_volume_change_percent", change.change_percent,
                                  codes.PERCENT))
    found += [_measurement("new_lesions", change.new_lesions, codes.LESIONS),
              _measurement("resolved_lesions", change.resolved_lesions, codes.LESIONS),
              _measurement("growing_lesions", change.growing_lesions, codes.LESIONS)]
    return found


def _group(registration: longitudinal_pb2.VertebraRegistration,
           change: longitudinal_pb2.VertebraChange | None, prior_study_uid: str,
           provenance: Provenance) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    label = labels.vertebra(registration.level)
    measurements = [
        _measurement("registration_dice", registration.dice, codes.NO_UNITS),
        _measurement("registration_hd95", registration.hd95_mm, codes.MILLIMETER),
        *(_change_measurements(change) if change is not None else ())]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=provenance.uid("longitudinal", label.name),
            identifier=f"{label.display} since prior study"),
        finding_category=concept(label.category),
        finding_type=concept(label.type),
        finding_sites=[hd.sr.FindingSite(concept(label.type))],
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            concept(_P["registration_failed"]),
            concept(codes.YES if registration.failed else codes.NO))])
    group[0].ContentSequence.append(hd.sr.UIDRefContentItem(
        name=concept(_P["prior_study"]), value=prior_study_uid,
        relationship_type=hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT))
    return group


def longitudinal_groups(longitudinal: longitudinal_pb2.Longitudinal | None,
                        provenance: Provenance
                        ) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """The groups of every registered vertebra, cranial to caudal; none without a comparison."""
    if longitudinal is None:
        return []
    changes = {c.level: c for c in longitudinal.changes}
    prior_study = longitudinal.prior.study_instance_uid
    return [_group(v, changes.get(v.level), prior_study, provenance)
            for v in longitudinal.registrations]
