"""Lesion change per vertebra on phantom follow-ups, against the phantom's truth."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from phantom.followup import FollowUp
from registrar.change import LesionChange, VertebraChange, lesion_changes
from registrar.longitudinal import Comparison, Scan, compare
from registrar.settings import ChangeSettings, RegistrationSettings


def group_of(changes: tuple[VertebraChange, ...], entry: dict[str, Any]) -> LesionChange:
    """The measured group holding the lesion nearest to the truth lesion ``entry`` in its
    vertebra and study (its centroid within 5 mm of the lesion's centre)."""
    vertebra = next(c for c in changes if c.level == entry["level"])
    study, side = ("follow_up", "current") if entry["follow_up"] else ("baseline", "prior")
    centre = np.asarray(entry[study]["centre_lps"])
    distance, group = min(((float(np.linalg.norm(np.asarray(lesion.centroid_lps) - centre)), g)
                           for g in vertebra.lesions for lesion in getattr(g, side)),
                          key=lambda item: item[0])
    assert distance < 5.0, (entry, group)
    return group


@pytest.mark.parametrize("region", ["lumbar", "thoracic"])
def test_new_resolved_and_changed_lesions_are_found_with_their_volume_change(
        region: str, request: pytest.FixtureRequest) -> None:
    truth, comparison = request.getfixturevalue(region)
    growth = ChangeSettings().growth_percent
    registered = {v.level for v in comparison.registration.vertebrae}
    entries = [e for e in truth.truth["lesions"] if e["level"] in registered]
    assert {e["change"] for e in entries} >= {"new", "resolved"}
    for entry in entries:
        group = group_of(comparison.changes, entry)
        assert len(group.prior) <= 1 and len(group.current) <= 1, group
        expected = entry["volume_change_ml"]
        assert abs(group.change_ml - expected) <= 0.1 * abs(expected), (entry, group)
        if entry["change"] in ("new", "resolved"):
            assert group.status == entry["change"], (entry, group)
        else:
            percent = entry["volume_change_percent"]
            status = ("growing" if percent > growth else "shrinking" if percent < -growth
                      else "stable")
            assert group.status == status, (entry, group)
    measured = sum(len(c.lesions) for c in comparison.changes)
    assert measured == len(entries)


def test_vertebra_lesion_burden_changes_as_the_truth_says(
        lumbar: tuple[FollowUp, Comparison]) -> None:
    truth, comparison = lumbar
    for change in comparison.changes:
        entries = [e for e in truth.truth["lesions"] if e["level"] == change.level]
        before = sum(e["baseline"]["volume_ml"] for e in entries if e["baseline"])
        after = sum(e["follow_up"]["volume_ml"] for e in entries if e["follow_up"])
        assert change.prior_ml == pytest.approx(before, abs=1e-4)
        assert change.current_ml == pytest.approx(after, abs=1e-4)
        if before:
            assert change.change_percent == pytest.approx(100 * (after - before) / before,
                                                          abs=0.1)
        else:
            assert change.change_percent is None
        assert not change.registration_failed


def test_lesions_are_matched_through_their_vertebra_transform(
        lumbar: tuple[FollowUp, Comparison]) -> None:
    """Without the registration (identity transforms) lesions that changed no longer match:
    more of them look new or resolved."""
    truth, comparison = lumbar
    prior, current = truth.baseline, truth.phantom
    registration = comparison.registration
    unmoved = replace(registration, vertebrae=tuple(
        replace(v, prior_to_current=np.eye(4)) for v in registration.vertebrae))
    changes = lesion_changes(prior.lesions, prior.vertebrae, current.lesions,
                             current.vertebrae, unmoved, ChangeSettings())
    def count(found: tuple[VertebraChange, ...], status: str) -> int:
        return sum(g.status == status for c in found for g in c.lesions)

    assert count(changes, "new") > count(comparison.changes, "new")
    assert count(changes, "resolved") > count(comparison.changes, "resolved")


def test_a_study_without_prior_is_a_baseline(lumbar: tuple[FollowUp, Comparison]) -> None:
    truth, _ = lumbar
    current = Scan(truth.phantom.ct, truth.phantom.vertebrae, truth.phantom.lesions)
    assert compare(None, current, RegistrationSettings(), ChangeSettings()) is None
