"""Routing: which pipeline a complete series gets, by declarative rules on its attributes.

A pure function of the configured rules and the series' attributes. The first matching rule
wins; a series that matches none is skipped with a reason naming, for every rule, what failed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from listener.settings import Rule


@dataclass(frozen=True)
class SeriesAttributes:
    """What rules look at."""

    modality: str
    description: str
    slices: int  # slices of a single-frame series, frames of a multi-frame instance


@dataclass(frozen=True)
class Decision:
    """The matched rule, or ``None`` and why nothing matched."""

    rule: Rule | None
    reason: str


def mismatch(rule: Rule, series: SeriesAttributes) -> str | None:
    """Why ``rule`` does not match ``series``; ``None`` if it does."""
    if series.modality != rule.modality:
        return f"modality {series.modality!r}, rule {rule.name!r} needs {rule.modality!r}"
    if rule.series_description is not None and not re.search(
            rule.series_description, series.description, re.IGNORECASE):
        return (f"series description {series.description!r} does not match "
                f"{rule.series_description!r} of rule {rule.name!r}")
    if series.slices < rule.min_slices:
        return f"series has {series.slices} slices, rule {rule.name!r} needs >= {rule.min_slices}"
    return None


def route(rules: Sequence[Rule], series: SeriesAttributes) -> Decision:
    """The first rule that matches, or the reasons none does."""
    if not rules:
        return Decision(None, "no routing rules configured")
    reasons = []
    for rule in rules:
        why = mismatch(rule, series)
        if why is None:
            return Decision(rule, f"matched rule {rule.name!r}")
        reasons.append(why)
    return Decision(None, "no rule matched: " + "; ".join(reasons))
