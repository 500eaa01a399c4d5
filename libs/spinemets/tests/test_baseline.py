"""The baseline rule shared by the registrar's history and the listener's PACS search."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from spinemets.baseline import choose, moment
from spinemets.config import BaselineRule, CommonSettings, load_section, read_raw
from spinemets.errors import ConfigError


@dataclass(frozen=True)
class Study:
    uid: str
    description: str = ""
    series: tuple[str, ...] = ("CT spine",)  # series descriptions; empty: nothing usable


def pick(studies: list[Study], policy: str, fallback: str = "most_recent"
         ) -> tuple[str, str] | None:
    """(study, series description) of the baseline; a planning series is preferred."""
    def resolve(study: Study, prefer: re.Pattern[str] | None) -> tuple[str, str] | None:
        if not study.series:
            return None
        preferred = [s for s in study.series if prefer is not None and prefer.search(s)]
        return study.uid, (preferred or list(study.series))[0]

    rule = BaselineRule.model_validate({"policy": policy, "planning_fallback": fallback})
    chosen = choose(studies, rule, lambda s: [s.description, *s.series], resolve)
    return None if chosen is None else chosen.found


def test_moment_orders_dicom_dates_and_times() -> None:
    assert moment("20240102", "1015") == moment("20240102", "101500") == "20240102101500.000000"
    assert moment("20240102", "") == "20240102000000.000000"
    assert moment("20240102", "101500.5") == "20240102101500.500000"
    assert moment("", "1015") is None and moment("2024-01-02", "") is None
    assert moment("20240102", "10:15") is None


def test_earliest_and_most_recent_pass_over_studies_without_a_usable_series() -> None:
    studies = [Study("1", series=()), Study("2"), Study("3"), Study("4", series=())]
    assert pick(studies, "earliest") == ("2", "CT spine")
    assert pick(studies, "most_recent") == ("3", "CT spine")
    assert pick([Study("1", series=())], "earliest") is None


def test_planning_is_the_most_recent_planning_study_by_study_or_series_description() -> None:
    studies = [Study("1", "RT planning CT"),
               Study("2", series=("CT spine 1mm", "Radiotherapy simulation")),
               Study("3", "CT chest abdomen")]
    assert pick(studies, "planning") == ("2", "Radiotherapy simulation")
    assert pick(studies[:1] + studies[2:], "planning") == ("1", "CT spine")
    # a word inside another is no planning study ("short" holds "rt")
    assert pick([Study("1", "Short CT"), Study("2", "CT heart")], "planning", "none") is None


def test_planning_falls_back_when_no_study_is_one() -> None:
    studies = [Study("1"), Study("2")]
    assert pick(studies, "planning", "most_recent") == ("2", "CT spine")
    assert pick(studies, "planning", "earliest") == ("1", "CT spine")
    assert pick(studies, "planning", "none") is None


def test_the_reason_names_the_policy() -> None:
    rule = BaselineRule(policy="planning", planning_fallback="earliest")
    chosen = choose(["a"], rule, lambda s: [s], lambda s, prefer: s)
    assert chosen is not None and chosen.why == "earliest earlier study"
    chosen = choose(["RT plan"], rule, lambda s: [s], lambda s, prefer: s)
    assert chosen is not None and chosen.why == "radiotherapy-planning study"


@pytest.mark.parametrize(("baseline", "message"), [
    ({"policy": "newest"}, r"common\.baseline\.policy"),
    ({"planning_description": "(unclosed"}, "not a valid regular expression"),
    ({"planning_fallback": "planning"}, r"common\.baseline\.planning_fallback"),
])
def test_the_rule_is_checked_where_it_is_configured(baseline: dict[str, str],
                                                    message: str) -> None:
    raw = {"common": {"baseline": baseline}}
    with pytest.raises(ConfigError, match=message):
        load_section(CommonSettings, "common", raw)


def test_the_project_configuration_names_the_default_rule() -> None:
    raw = read_raw(Path(__file__).parents[3] / "config/spinemets.yaml", {})
    assert load_section(CommonSettings, "common", raw).baseline == BaselineRule()
