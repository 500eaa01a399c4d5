"""The study history: every processed study per patient, and the choice of its prior study.

Studies are ordered by Study Date and Study Time (DICOM DA and TM, the time padded to
``HHMMSS.FFFFFF`` so that ``"1015"`` and ``"101500"`` compare equal). A study without a date
cannot be placed in time: it is recorded, but neither gets a prior nor serves as one. Among the
patient's earlier studies, the prior is chosen by the baseline rule shared with the listener's
search in the PACS (``common.baseline``, :mod:`spinemets.baseline`); of the chosen study, its
first recorded series (of a planning study, its first planning series).
SQLite with a WAL journal and ``synchronous=FULL``: a recorded study survives a crash. The
schema is versioned (``PRAGMA user_version``); an older database is migrated when opened.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from spinemets import baseline
from spinemets.config import BaselineRule
from spinemets.errors import InputError
from spinemets.sqlite import migrate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, patient_key TEXT NOT NULL,
    study_date TEXT NOT NULL, study_time TEXT NOT NULL,
    taken_at TEXT,  -- sortable date and time; NULL when the study has no date
    recorded_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_key, taken_at);
"""
#: Script n upgrades schema version n to n + 1 (a new database runs them all after _SCHEMA).
_MIGRATIONS = (
    # 1: the descriptions the planning rule of the baseline looks at.
    """
    ALTER TABLE studies ADD COLUMN study_description TEXT NOT NULL DEFAULT '';
    ALTER TABLE studies ADD COLUMN series_description TEXT NOT NULL DEFAULT '';
    """,
)
_COLUMNS = "study_uid, series_uid, study_date, study_time, study_description, series_description"


@dataclass(frozen=True)
class Study:
    """One recorded series of a study."""

    study_uid: str
    series_uid: str
    study_date: str
    study_time: str
    study_description: str = ""
    series_description: str = ""


def taken_at(study_date: str, study_time: str) -> str | None:
    """Sortable ``YYYYMMDDHHMMSS.FFFFFF`` of a DICOM date and time; None without a date.

    A missing time counts as midnight; malformed values are an :class:`InputError`.
    """
    if not study_date.strip():
        return None
    when = baseline.moment(study_date, study_time)
    if when is None:
        raise InputError(f"study date/time {study_date.strip()!r} {study_time.strip()!r} is not "
                         "DICOM DA/TM", reason="bad-study-date")
    return when


def choose_prior(earlier: list[Study], rule: BaselineRule) -> Study | None:
    """The prior among the recorded series of earlier studies (oldest first, each study's
    series in recorded order) per ``rule``."""
    studies: dict[str, list[Study]] = {}
    for row in earlier:
        studies.setdefault(row.study_uid, []).append(row)

    def descriptions(uid: str) -> list[str]:
        return [text for s in studies[uid] for text in (s.study_description,
                                                         s.series_description)]

    def resolve(uid: str, prefer: re.Pattern[str] | None) -> Study:
        series = studies[uid]
        return next((s for s in series if prefer and prefer.search(s.series_description)),
                    series[0])

    chosen = baseline.choose(list(studies), rule, descriptions, resolve)
    return None if chosen is None else chosen.found


class History:
    """The study table in a SQLite file, choosing priors by ``rule``; safe for concurrent use by
    threads."""

    def __init__(self, path: Path, rule: BaselineRule) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        migrate(self._db, _MIGRATIONS)
        self.rule = rule
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def pair(self, patient_key: str, study: Study) -> Study | None:
        """Record ``study`` of the patient and return its prior among the patient's earlier
        studies (:func:`choose_prior`), if any.

        Recording the same series again updates its row (idempotent). Series of the same
        study are never each other's prior.
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
                    "INSERT INTO studies (series_uid, study_uid, patient_key, study_date, "
                    "study_time, taken_at, recorded_at, study_description, series_description) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(series_uid) "
                    "DO UPDATE SET study_uid=excluded.study_uid, "
                    "patient_key=excluded.patient_key, study_date=excluded.study_date, "
                    "study_time=excluded.study_time, taken_at=excluded.taken_at, "
                    "study_description=excluded.study_description, "
                    "series_description=excluded.series_description",
                    (study.series_uid, study.study_uid, patient_key, study.study_date,
                     study.study_time, when, now, study.study_description,
                     study.series_description))
                rows = [] if when is None else self._db.execute(
                    f"SELECT {_COLUMNS} FROM studies "
                    "WHERE patient_key = ? AND study_uid != ? AND taken_at < ? "
                    "ORDER BY taken_at ASC, recorded_at ASC, series_uid ASC",
                    (patient_key, study.study_uid, when)).fetchall()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return choose_prior([Study(*row) for row in rows], self.rule)
