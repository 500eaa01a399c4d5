"""Choice of the baseline among a patient's earlier studies in the PACS and of the series to
retrieve: pure functions, no I/O; and the settings that configure the search."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from listener.baseline import (
    SeriesMatch,
    StudyMatch,
    best_series,
    choose,
    date_range,
    earlier,
)
from listener.settings import Rule, Settings
from spinemets.config import BaselineRule

RULES = (Rule(name="ct-spine", min_slices=20),)


def study(uid: str, date: str, time: str = "", description: str = "", patient: str = "P1",
          issuer: str = "") -> StudyMatch:
    return StudyMatch(uid, date, time, description, patient, issuer)


def series(uid: str, instances: int = 100, description: str = "CT spine",
           modality: str = "CT") -> SeriesMatch:
    return SeriesMatch(uid, modality, description, instances)


def pick(studies: Sequence[StudyMatch], catalogue: dict[str, list[SeriesMatch]], policy: str,
         fallback: str = "most_recent") -> tuple[str, str] | None:
    rule = BaselineRule.model_validate({"policy": policy, "planning_fallback": fallback})
    choice = choose(studies, lambda s: catalogue.get(s.study_uid, []), RULES, rule)
    return None if choice is None else (choice.study.study_uid, choice.series.series_uid)


def test_date_range_ends_on_the_study_date() -> None:
    assert date_range("20240301", 0) == "-20240301"
    assert date_range("20240301", 30) == "20240131-20240301"


def test_earlier_keeps_the_patients_earlier_studies_oldest_first() -> None:
    found = [
        study("1.1", "20230101", "0900"),
        study("1.2", "20240102", "0800"),           # same day, earlier time
        study("1.3", "20240102", "1015"),           # same moment: not earlier
        study("1.4", "20250101"),                   # later
        study("1.5", "", "0900"),                   # undated
        study("1.6", "20220101", patient="P1X"),    # a wildcard-like match of another patient
        study("1.7", "20220101", issuer="OTHER"),   # another issuer's P1
        study("1.8", "20220101", issuer="HOSP"),    # same issuer
        study("9.9", "20200101"),                   # the current study itself
    ]
    kept = earlier(found, "P1", "HOSP", "9.9", "20240102", "101500")
    assert [s.study_uid for s in kept] == ["1.8", "1.1", "1.2"]
    assert earlier(found, "P1", "HOSP", "9.9", "", "") == []


def test_earliest_and_most_recent() -> None:
    studies = [study("1.1", "20200101"), study("1.2", "20210101"), study("1.3", "20220101")]
    catalogue = {uid: [series(f"{uid}.1")] for uid in ("1.1", "1.2", "1.3")}
    assert pick(studies, catalogue, "earliest") == ("1.1", "1.1.1")
    assert pick(studies, catalogue, "most_recent") == ("1.3", "1.3.1")


def test_a_study_without_a_usable_series_is_passed_over() -> None:
    studies = [study("1.1", "20200101"), study("1.2", "20210101"), study("1.3", "20220101")]
    catalogue = {"1.1": [series("1.1.1")],
                 "1.2": [series("1.2.1", instances=10)],          # too few slices
                 "1.3": [series("1.3.1", modality="MR")]}         # not CT
    assert pick(studies, catalogue, "most_recent") == ("1.1", "1.1.1")
    assert pick(studies, {}, "earliest") is None


def test_planning_study_by_study_or_series_description() -> None:
    studies = [study("1.1", "20200101", description="RT planning CT"),
               study("1.2", "20210101"),
               study("1.3", "20220101", description="CT chest abdomen")]
    catalogue = {"1.1": [series("1.1.1")],
                 "1.2": [series("1.2.1", 300, "CT spine 1mm"),
                         series("1.2.2", 120, "Radiotherapy simulation")],
                 "1.3": [series("1.3.1")]}
    # 1.2 is the most recent planning study (by a series); its planning series is preferred
    # over the larger one
    assert pick(studies, catalogue, "planning") == ("1.2", "1.2.2")
    del catalogue["1.2"]
    assert pick(studies, catalogue, "planning") == ("1.1", "1.1.1")


def test_planning_falls_back_when_no_study_is_one() -> None:
    studies = [study("1.1", "20200101"), study("1.2", "20210101")]
    catalogue = {"1.1": [series("1.1.1")], "1.2": [series("1.2.1")]}
    assert pick(studies, catalogue, "planning", "most_recent") == ("1.2", "1.2.1")
    assert pick(studies, catalogue, "planning", "earliest") == ("1.1", "1.1.1")
    assert pick(studies, catalogue, "planning", "none") is None


def test_word_matches_only_for_planning() -> None:
    studies = [study("1.1", "20200101", description="CT heart"),
               study("1.2", "20210101", description="Short CT")]
    catalogue = {"1.1": [series("1.1.1")], "1.2": [series("1.2.1")]}
    assert pick(studies, catalogue, "planning", "none") is None


def test_best_series_routes_like_the_listener_and_prefers_more_slices() -> None:
    candidates = [series("1", 80), series("2", 240), series("3", 500, modality="SR"),
                  series("4", 12)]
    best = best_series(candidates, RULES)
    assert best is not None and best.series_uid == "2"
    described = (Rule(name="bone", series_description="bone", min_slices=20),)
    picked = best_series([series("1", 300, "soft"), series("2", 100, "Bone 1mm")], described)
    assert picked is not None and picked.series_uid == "2"
    assert best_series([series("1", 5)], RULES) is None


@pytest.mark.parametrize(("priors", "message"), [
    ({"pacs": {"ae_title": "PACS", "host": "pacs", "port": 104}}, "not in allowed_callers"),
    ({"baseline": "earliest"}, "priors.baseline"),  # the rule is common.baseline
    ({"wait_s": 0}, "priors.wait_s"),
])
def test_prior_settings_are_checked(priors: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Settings.model_validate({"allowed_callers": [{"ae_title": "STORESCU"}],
                                 "priors": priors})


def test_a_pacs_sending_from_an_allowed_caller_is_accepted() -> None:
    settings = Settings.model_validate({
        "allowed_callers": [{"ae_title": "STORESCU"}, {"ae_title": "PACS"}],
        "priors": {"pacs": {"ae_title": "PACS", "host": "pacs", "port": 104}}})
    assert settings.move_destination == "SPINEMETS"
    settings = Settings.model_validate({
        "allowed_callers": [{"ae_title": "STORESCU"}],
        "priors": {"pacs": {"ae_title": "PACS", "host": "pacs", "port": 104},
                   "retrieve": "get"}})
    assert settings.priors.retrieve == "get"
