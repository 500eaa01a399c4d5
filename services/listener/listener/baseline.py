"""Choosing a follow-up's baseline among the patient's earlier studies in a PACS, and the series
of it to retrieve.

Pure functions over what C-FIND returned (:mod:`listener.qr`): no network, no database. A study
is earlier when its Study Date and Time come before the current study's (a study without a
valid date cannot be placed in time and is left out). The baseline follows the rule shared with
the registrar's history (``common.baseline``, :mod:`spinemets.baseline`): the earliest, the most
recent, or the most recent radiotherapy-planning study. Of the chosen study, the series to
retrieve is a CT series that a routing rule would process, the one with the most instances (of
a planning study, a planning series first).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from listener.routing import SeriesAttributes, mismatch
from listener.settings import Rule
from spinemets import baseline
from spinemets.baseline import moment
from spinemets.config import BaselineRule


@dataclass(frozen=True)
class StudyMatch:
    """A study the PACS returned for the patient."""

    study_uid: str
    study_date: str
    study_time: str
    description: str
    patient_id: str
    issuer: str


@dataclass(frozen=True)
class SeriesMatch:
    """A series of a study, as the PACS describes it."""

    series_uid: str
    modality: str
    description: str
    instances: int


@dataclass(frozen=True)
class Choice:
    """The baseline study, the series to retrieve, and why it was chosen."""

    study: StudyMatch
    series: SeriesMatch
    why: str


def date_range(study_date: str, max_age_days: int) -> str:
    """The C-FIND Study Date range ending on ``study_date`` (``"[start]-end"``, PS3.4 C.2.2.2.5)."""
    if max_age_days == 0:
        return f"-{study_date}"
    end = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))
    return f"{(end - timedelta(days=max_age_days)).strftime('%Y%m%d')}-{study_date}"


def earlier(studies: Sequence[StudyMatch], patient_id: str, issuer: str, study_uid: str,
            study_date: str, study_time: str) -> list[StudyMatch]:
    """The patient's studies taken before the current one, oldest first.

    The PACS may match Patient ID with wildcards or ignore the issuer: only an exact ID and, where
    both studies name one, the same issuer count.
    """
    now = moment(study_date, study_time)
    if now is None:
        return []
    kept = [(when, s) for s in studies
            if s.patient_id == patient_id and s.study_uid != study_uid
            and not (issuer and s.issuer and s.issuer != issuer)
            and (when := moment(s.study_date, s.study_time)) is not None and when < now]
    return [s for _, s in sorted(kept, key=lambda pair: (pair[0], pair[1].study_uid))]


def best_series(series: Sequence[SeriesMatch], rules: Sequence[Rule],
                prefer: re.Pattern[str] | None = None) -> SeriesMatch | None:
    """The series a routing rule would process with the most instances (those matching
    ``prefer`` first); ``None`` if no rule matches any series."""
    usable = [s for s in series if any(
        mismatch(rule, SeriesAttributes(s.modality, s.description, s.instances)) is None
        for rule in rules)]
    if not usable:
        return None
    return max(usable, key=lambda s: (bool(prefer and prefer.search(s.description)),
                                      s.instances, s.series_uid))


def choose(studies: Sequence[StudyMatch], series_of: Callable[[StudyMatch], Sequence[SeriesMatch]],
           rules: Sequence[Rule], rule: BaselineRule) -> Choice | None:
    """The baseline among ``studies`` (oldest first) per ``rule``, its series looked up with
    ``series_of`` only as needed; ``None`` if no study has a series the routing rules would
    process (or, with ``planning``, none is a planning study and the fallback is ``none``)."""
    def descriptions(study: StudyMatch) -> list[str]:
        return [study.description, *(s.description for s in series_of(study))]

    def resolve(study: StudyMatch, prefer: re.Pattern[str] | None
                ) -> tuple[StudyMatch, SeriesMatch] | None:
        best = best_series(series_of(study), rules, prefer)
        return None if best is None else (study, best)

    chosen = baseline.choose(studies, rule, descriptions, resolve)
    return None if chosen is None else Choice(*chosen.found, chosen.why)
