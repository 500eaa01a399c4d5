"""Pairing a study with its prior among the patient's earlier studies, by the baseline rule."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from registrar.history import History, Study, taken_at
from spinemets.config import BaselineRule
from spinemets.errors import InputError

PATIENT = "a1b2c3d4e5f60718"


def study(n: int, date: str, time: str = "120000", series: int = 1, described: str = "",
          series_described: str = "") -> Study:
    return Study(f"1.2.826.0.1.{n}", f"1.2.826.0.1.{n}.{series}", date, time, described,
                 series_described)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    h = History(tmp_path / "history.db", BaselineRule())
    yield h
    h.close()


def test_the_first_study_of_a_patient_has_no_prior(history: History) -> None:
    assert history.pair(PATIENT, study(1, "20230101")) is None


def test_the_most_recent_earlier_study_is_the_prior(history: History) -> None:
    history.pair(PATIENT, study(1, "20220101"))
    history.pair(PATIENT, study(2, "20230601"))
    assert history.pair(PATIENT, study(3, "20240101")) == study(2, "20230601")


def test_a_study_dated_before_all_others_has_no_prior(history: History) -> None:
    history.pair(PATIENT, study(1, "20220101"))
    history.pair(PATIENT, study(2, "20230601"))
    assert history.pair(PATIENT, study(3, "20210101")) is None
    # arriving late, it still becomes the prior of a study dated after it
    assert history.pair(PATIENT, study(4, "20211231")) == study(3, "20210101")


def test_the_same_series_twice_is_idempotent(history: History, tmp_path: Path) -> None:
    history.pair(PATIENT, study(1, "20220101"))
    first = history.pair(PATIENT, study(2, "20230101"))
    assert history.pair(PATIENT, study(2, "20230101")) == first == study(1, "20220101")
    with sqlite3.connect(tmp_path / "history.db") as db:
        assert db.execute("SELECT COUNT(*) FROM studies").fetchone() == (2,)


def test_series_of_the_same_study_are_not_each_others_prior(history: History) -> None:
    history.pair(PATIENT, study(1, "20220101", series=1))
    history.pair(PATIENT, study(1, "20220101", series=2))
    history.pair(PATIENT, study(2, "20230101", series=1))
    assert history.pair(PATIENT, study(2, "20230101", series=2)) == study(1, "20220101")


def test_time_orders_studies_of_one_day(history: History) -> None:
    history.pair(PATIENT, study(1, "20230101", "0800"))
    history.pair(PATIENT, study(2, "20230101", "093000.5"))
    assert history.pair(PATIENT, study(3, "20230101", "0930")) == study(1, "20230101", "0800")
    assert history.pair(PATIENT, study(4, "20230101", "1000")) == study(
        2, "20230101", "093000.5")


def test_patients_are_kept_apart(history: History) -> None:
    history.pair("another-patient", study(1, "20220101"))
    assert history.pair(PATIENT, study(2, "20230101")) is None


def test_a_study_without_date_is_never_paired(history: History) -> None:
    history.pair(PATIENT, study(1, ""))
    assert history.pair(PATIENT, study(2, "20230101")) is None
    assert history.pair(PATIENT, study(3, "", "")) is None


def test_history_survives_a_restart(tmp_path: Path) -> None:
    first = History(tmp_path / "h.db", BaselineRule())
    first.pair(PATIENT, study(1, "20220101"))
    first.close()
    reopened = History(tmp_path / "h.db", BaselineRule())
    assert reopened.pair(PATIENT, study(2, "20230101")) == study(1, "20220101")
    reopened.close()


@pytest.mark.parametrize(("date", "time", "expected"), [
    ("20230101", "1015", "20230101101500.000000"),
    ("20230101", "101500", "20230101101500.000000"),
    ("20230101", "10", "20230101100000.000000"),
    ("20230101", "", "20230101000000.000000"),
    ("20230101", "101500.25", "20230101101500.250000"),
    ("", "101500", None),
])
def test_dicom_dates_and_times_become_sortable(date: str, time: str,
                                               expected: str | None) -> None:
    assert taken_at(date, time) == expected


@pytest.mark.parametrize(("date", "time"), [("2023-01-01", ""), ("20230101", "10:15")])
def test_malformed_dates_are_input_errors(history: History, date: str, time: str) -> None:
    with pytest.raises(InputError, match="not DICOM DA/TM"):
        history.pair(PATIENT, study(1, date, time))


def test_the_earliest_rule_pairs_every_follow_up_with_the_first_study(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db", BaselineRule(policy="earliest"))
    history.pair(PATIENT, study(1, ""))  # undated: never a prior
    history.pair(PATIENT, study(2, "20220101"))
    history.pair(PATIENT, study(3, "20220601"))
    assert history.pair(PATIENT, study(4, "20230101")) == study(2, "20220101")
    assert history.pair(PATIENT, study(5, "20211231")) is None
    assert history.pair(PATIENT, study(6, "20240101")) == study(5, "20211231")
    history.close()


def test_the_planning_rule_finds_the_planning_study_by_either_description(
        tmp_path: Path) -> None:
    history = History(tmp_path / "h.db", BaselineRule(policy="planning",
                                                      planning_fallback="none"))
    plan = study(1, "20220101", described="RT planning CT thorax")
    history.pair(PATIENT, plan)
    history.pair(PATIENT, study(2, "20220301", described="CT spine"))
    assert history.pair(PATIENT, study(3, "20220601")) == plan
    # a later planning study by its series: its planning series, not its first one
    history.pair(PATIENT, study(4, "20230101", series=1, series_described="Thorax 1mm"))
    simulation = study(4, "20230101", series=2, series_described="Radiotherapy simulation")
    history.pair(PATIENT, simulation)
    assert history.pair(PATIENT, study(5, "20230601")) == simulation
    # without any planning study and no fallback: no prior
    assert history.pair("another-patient", study(6, "20220101")) is None
    assert history.pair("another-patient", study(7, "20230101")) is None
    history.close()


def test_a_history_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript("""
            CREATE TABLE studies (
                series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, patient_key TEXT NOT NULL,
                study_date TEXT NOT NULL, study_time TEXT NOT NULL, taken_at TEXT,
                recorded_at TEXT NOT NULL);
            CREATE INDEX studies_patient ON studies(patient_key, taken_at);""")
        old.execute("INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ("1.2.826.0.1.1.1", "1.2.826.0.1.1", PATIENT, "20220101", "120000",
                     "20220101120000.000000", "2024-01-01T00:00:00+00:00"))
    old.close()
    history = History(path, BaselineRule())
    assert history.pair(PATIENT, study(2, "20230101")) == study(1, "20220101")
    history.close()
    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA user_version").fetchone() == (1,)
    reopened.close()
