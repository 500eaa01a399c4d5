"""Pairing a study with the patient's most recent earlier study."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from registrar.history import History, Study, taken_at
from spinemets.errors import InputError

PATIENT = "a1b2c3d4e5f60718"


def study(n: int, date: str, time: str = "120000", series: int = 1) -> Study:
    return Study(f"1.2.826.0.1.{n}", f"1.2.826.0.1.{n}.{series}", date, time)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    h = History(tmp_path / "history.db")
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
    first = History(tmp_path / "h.db")
    first.pair(PATIENT, study(1, "20220101"))
    first.close()
    reopened = History(tmp_path / "h.db")
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
