"""The study history: every processed study per patient, and the choice of its prior study.

Studies are ordered by Study Date and Study Time (DICOM DA and TM, the time padded to
``HHMMSS.FFFFFF`` so that ``"1015"`` and ``"101500"`` compare equal). A study without a date
cannot be placed in time: it is recorded, but neither gets a prior nor serves as one.
SQLite with a WAL journal and ``synchronous=FULL``: a recorded study survives a crash.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from spinemets.errors import InputError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, patient_key TEXT NOT NULL,
    study_date TEXT NOT NULL, study_time TEXT NOT NULL,
    taken_at TEXT,  -- sortable date and time; NULL when the study has no date
    recorded_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_key, taken_at);
"""
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")


@dataclass(frozen=True)
class Study:
    """One recorded series of a study."""

    study_uid: str
    series_uid: str
    study_date: str
    study_time: str


def taken_at(study_date: str, study_time: str) -> str | None:
    """Sortable ``YYYYMMDDHHMMSS.FFFFFF`` of a DICOM date and time; None without a date.

    A missing time counts as midnight; malformed values are an :class:`InputError`.
    """
    date, time = study_date.strip(), study_time.strip()
    if not date:
        return None
    match = _TIME.match(time or "00")
    if not _DATE.match(date) or match is None:
        raise InputError(f"study date/time {date!r} {time!r} is not DICOM DA/TM",
                         reason="bad-study-date")
    hours, minutes, seconds, fraction = match.groups()
    fraction = (fraction or ".").ljust(7, "0")
    return f"{date}{hours}{minutes or '00'}{seconds or '00'}{fraction}"


class History:
    """The study table in a SQLite file; safe for concurrent use by threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def pair(self, patient_key: str, study: Study) -> Study | None:
        """Record ``study`` of the patient and return the patient's most recent earlier study.

        Recording the same series again updates its row (idempotent). Series of the same
        study are never each other's prior; of the prior study, its first recorded series is
        returned.
        """
        if not patient_key or not study.study_uid or not study.series_uid:
            raise InputError("pairing needs a patient key, a study and a series UID",
                             reason="bad-request")
        when = taken_at(study.study_date, study.study_time)
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(series_uid) "
                    "DO UPDATE SET study_uid=excluded.study_uid, "
                    "patient_key=excluded.patient_key, study_date=excluded.study_date, "
                    "study_time=excluded.study_time, taken_at=excluded.taken_at",
                    (study.series_uid, study.study_uid, patient_key, study.study_date,
                     study.study_time, when, now))
                row = None if when is None else self._db.execute(
                    "SELECT study_uid, series_uid, study_date, study_time FROM studies "
                    "WHERE patient_key = ? AND study_uid != ? AND taken_at < ? "
                    "ORDER BY taken_at DESC, recorded_at ASC, series_uid ASC LIMIT 1",
                    (patient_key, study.study_uid, when)).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return None if row is None else Study(*row)
