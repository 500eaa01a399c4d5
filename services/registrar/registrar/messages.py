"""A :class:`~registrar.longitudinal.Comparison` as the ``Longitudinal`` message of Pair."""

from __future__ import annotations

from collections import Counter

from registrar.change import VertebraChange
from registrar.longitudinal import Comparison
from registrar.registration import VertebraRegistration
from spinemets.v1 import longitudinal_pb2, volume_pb2


def _registration(v: VertebraRegistration) -> longitudinal_pb2.VertebraRegistration:
    return longitudinal_pb2.VertebraRegistration(
        level=v.level, prior_to_current=[float(x) for x in v.prior_to_current.ravel()],
        dice=v.dice, hd95_mm=v.hd95_mm, failed=v.failed, problem=v.problem or "",
        refined=v.refined)


def _change(c: VertebraChange) -> longitudinal_pb2.VertebraChange:
    count = Counter(lesion.status for lesion in c.lesions)
    return longitudinal_pb2.VertebraChange(
        level=c.level, prior_ml=c.prior_ml, current_ml=c.current_ml, change_ml=c.change_ml,
        change_percent=c.change_percent, registration_failed=c.registration_failed,
        new_lesions=count["new"], resolved_lesions=count["resolved"],
        growing_lesions=count["growing"], shrinking_lesions=count["shrinking"],
        stable_lesions=count["stable"])


def longitudinal(prior: volume_pb2.SeriesRef, prior_study_date: str, comparison: Comparison,
                 changes_omitted: str) -> longitudinal_pb2.Longitudinal:
    """The message of ``comparison`` with ``prior`` (of ``prior_study_date``);
    ``changes_omitted``: why it has no lesion change ("" when it has)."""
    registration = comparison.registration
    return longitudinal_pb2.Longitudinal(
        prior=prior, registrations=[_registration(v) for v in registration.vertebrae],
        skipped=[longitudinal_pb2.SkippedVertebra(level=s.level, reason=s.reason)
                 for s in registration.skipped],
        changes=[_change(c) for c in comparison.changes], changes_omitted=changes_omitted,
        prior_study_date=prior_study_date)
