"""The baseline of a follow-up among the patient's earlier studies: one rule
(:class:`spinemets.config.BaselineRule`, ``common.baseline``) for the registrar's own history
and the listener's search in the PACS.

Studies are placed in time by Study Date and Time (:func:`moment`). The baseline is the
earliest earlier study, the most recent one, or the most recent radiotherapy-planning study
(its Study Description or one of its Series Descriptions matches the rule's expression,
case-insensitive), else the rule's fallback. A study with nothing usable (no series the caller
accepts) is passed over.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from spinemets.config import BaselineRule

S = TypeVar("S")
R = TypeVar("R")

_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")


def moment(study_date: str, study_time: str) -> str | None:
    """Sortable ``YYYYMMDDHHMMSS.FFFFFF`` of a DICOM date (DA) and time (TM); no time counts as
    midnight, so ``"1015"`` and ``"101500"`` compare equal. ``None`` when the date is missing
    or either value is malformed."""
    day, clock = study_date.strip(), study_time.strip()
    match = _TIME.match(clock or "00")
    if not _DATE.match(day) or match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    return f"{day}{hours}{minutes or '00'}{seconds or '00'}{(fraction or '.').ljust(7, '0')}"


@dataclass(frozen=True)
class Chosen(Generic[R]):
    """What of the baseline study is used (e.g. its series), and why that study."""

    found: R
    why: str


def choose(studies: Sequence[S], rule: BaselineRule,
           descriptions: Callable[[S], Iterable[str]],
           resolve: Callable[[S, re.Pattern[str] | None], R | None]) -> Chosen[R] | None:
    """The baseline among ``studies`` (earlier than the follow-up, oldest first) per ``rule``.

    ``descriptions(study)``: its Study and Series Descriptions; ``resolve(study, prefer)``: what
    of the study serves as the baseline (those matching ``prefer`` first, when given), or
    ``None`` when nothing of it is usable. Both are called only as far as the choice needs.
    ``None``: no study qualifies.
    """
    policy = rule.policy
    if policy == "planning":
        pattern = re.compile(rule.planning_description, re.IGNORECASE)
        for study in reversed(studies):
            if any(pattern.search(text) for text in descriptions(study)):
                found = resolve(study, pattern)
                if found is not None:
                    return Chosen(found, "radiotherapy-planning study")
        if rule.planning_fallback == "none":
            return None
        policy = rule.planning_fallback
    for study in (studies if policy == "earliest" else reversed(studies)):
        found = resolve(study, None)
        if found is not None:
            return Chosen(found, f"{policy.replace('_', ' ')} earlier study")
    return None
