"""The listener's SQLite database: received series, their instances, and the job state machine.

Every state change happens here, in one transaction each, with compare-and-set on the expected
current state, so concurrent threads (SCP, completion timer, job runner) never overwrite each
other's decisions. WAL journal with ``synchronous=FULL``: a committed change survives a crash.
The schema is versioned (``PRAGMA user_version``); an older database is migrated when opened.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from spinemets.sqlite import migrate


class SeriesState(StrEnum):
    RECEIVING = "receiving"
    COMPLETE = "complete"  # idle; being checked and routed
    SKIPPED = "skipped"  # matched no routing rule; files kept
    QUARANTINED = "quarantined"  # bad input; files moved to quarantine/
    PROCESSED = "processed"  # a job was created


class JobState(StrEnum):
    RECEIVED = "received"
    SEGMENTED = "segmented"
    PRIOR_SEARCH = "prior_search"  # no prior in the registrar's history: search the PACS
    PRIOR_RETRIEVAL = "prior_retrieval"  # a prior chosen in the PACS: retrieve it
    PRIOR_WAIT = "prior_wait"  # wait until the retrieved prior is segmented and recorded
    PAIRED = "paired"
    ASSESSED = "assessed"
    DELIVERED = "delivered"
    RECORDED = "recorded"  # a retrieved prior: segmented, recorded at the registrar; finished
    FAILED = "failed"


class JobPurpose(StrEnum):
    STUDY = "study"  # a study received for processing: assessed and delivered
    PRIOR = "prior"  # a prior retrieved from the PACS: segmented and recorded, never reported


#: The job state machine's usual path: each completed step moves a job to the next state.
#: The pairing step may instead go to ``prior_search`` (and on to ``paired``) or, for a
#: retrieved prior, to ``recorded``.
NEXT_STATE = {
    JobState.RECEIVED: JobState.SEGMENTED,
    JobState.SEGMENTED: JobState.PAIRED,
    JobState.PRIOR_SEARCH: JobState.PRIOR_RETRIEVAL,
    JobState.PRIOR_RETRIEVAL: JobState.PRIOR_WAIT,
    JobState.PRIOR_WAIT: JobState.PAIRED,
    JobState.PAIRED: JobState.ASSESSED,
    JobState.ASSESSED: JobState.DELIVERED,
}
UNFINISHED = tuple(NEXT_STATE)
#: Reason code of jobs failed because late instances re-opened their series.
SUPERSEDED = "superseded"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, patient_key TEXT NOT NULL,
    modality TEXT NOT NULL, description TEXT NOT NULL, sop_class_uid TEXT NOT NULL,
    study_date TEXT NOT NULL, study_time TEXT NOT NULL, calling_ae TEXT NOT NULL,
    first_received REAL NOT NULL, last_received REAL NOT NULL,
    state TEXT NOT NULL, reason TEXT);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL REFERENCES series(series_uid),
    transfer_syntax TEXT NOT NULL, received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL REFERENCES series(series_uid),
    rule TEXT NOT NULL, roles TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL,
    has_prior INTEGER, prior_study_uid TEXT, prior_series_uid TEXT, prior_study_date TEXT);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, next_attempt_at);
"""
#: Script n upgrades schema version n to n + 1 (a new database runs them all after _SCHEMA).
_MIGRATIONS = (
    # 1: job purpose, how the prior was found (or why none), and the priors asked of the PACS.
    """
    ALTER TABLE jobs ADD COLUMN purpose TEXT NOT NULL DEFAULT 'study';
    ALTER TABLE jobs ADD COLUMN pairing_note TEXT;
    CREATE TABLE prior_requests (
        job_id INTEGER PRIMARY KEY REFERENCES jobs(id), study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL, study_date TEXT NOT NULL, note TEXT NOT NULL,
        requested REAL NOT NULL, retrieved REAL, deadline REAL);
    CREATE INDEX prior_requests_series ON prior_requests(series_uid);
    """,
    # 2: the Study Description, which the baseline rule "planning" looks at.
    """
    ALTER TABLE series ADD COLUMN study_description TEXT NOT NULL DEFAULT '';
    """,
)


@dataclass(frozen=True)
class InstanceHeader:
    """What the listener records of a received instance (no patient name or ID)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    patient_key: str
    modality: str
    description: str
    study_date: str
    study_time: str
    calling_ae: str
    study_description: str = ""


@dataclass(frozen=True)
class Series:
    series_uid: str
    study_uid: str
    patient_key: str
    modality: str
    description: str
    sop_class_uid: str
    study_date: str
    study_time: str
    calling_ae: str
    first_received: float
    last_received: float
    state: SeriesState
    reason: str | None
    instance_count: int
    study_description: str = ""


@dataclass(frozen=True)
class Prior:
    """The earlier study (and its series) a study is compared with."""

    study_uid: str
    series_uid: str
    study_date: str


@dataclass(frozen=True)
class Pairing:
    """The outcome of pairing: the prior, if any, and ``"<code>: <message>"`` saying where it
    came from or why there is none (``None`` for a retrieved prior's own job)."""

    prior: Prior | None
    note: str | None = None


@dataclass(frozen=True)
class PriorRequest:
    """A prior a job chose in the PACS (``note``: why), retrieved at ``retrieved``, awaited
    until ``deadline``."""

    job_id: int
    prior: Prior
    note: str
    requested: float
    retrieved: float | None
    deadline: float | None


@dataclass(frozen=True)
class Job:
    id: int
    series_uid: str
    study_uid: str
    rule: str
    roles: tuple[str, ...]
    state: JobState
    reason: str | None
    attempts: int
    next_attempt_at: float
    created: float
    updated: float
    has_prior: bool | None  # None until paired
    prior: Prior | None
    purpose: JobPurpose = JobPurpose.STUDY
    pairing_note: str | None = None


_SERIES_COLUMNS = ("series_uid, study_uid, patient_key, modality, description, sop_class_uid, "
                   "study_date, study_time, calling_ae, first_received, last_received, state, "
                   "reason, (SELECT count(*) FROM instances i WHERE i.series_uid = s.series_uid), "
                   "study_description")
_JOB_COLUMNS = ("j.id, j.series_uid, s.study_uid, j.rule, j.roles, j.state, j.reason, j.attempts, "
                "j.next_attempt_at, j.created, j.updated, j.has_prior, j.prior_study_uid, "
                "j.prior_series_uid, j.prior_study_date, j.purpose, j.pairing_note")


def _series(row: tuple[Any, ...]) -> Series:
    return Series(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                  row[9], row[10], SeriesState(row[11]), row[12], row[13], row[14])


def _job(row: tuple[Any, ...]) -> Job:
    prior = Prior(row[12], row[13], row[14]) if row[11] else None
    has_prior = None if row[11] is None else bool(row[11])
    return Job(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), JobState(row[5]),
               row[6], row[7], row[8], row[9], row[10], has_prior, prior, JobPurpose(row[15]),
               row[16])


class Database:
    """Thread-safe access to the listener's database file."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)
        migrate(self._conn, _MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- series ---------------------------------------------------------------------------

    def record_instance(self, header: InstanceHeader, now: float) -> SeriesState | None:
        """Record a received instance; the series is (again) receiving.

        Returns the series' previous state (``None`` for a new series): a finished state means
        a late instance, and every unfinished job of the series is failed as superseded.
        """
        with self._transaction() as tx:
            row = tx.execute("SELECT state FROM series WHERE series_uid = ?",
                             (header.series_uid,)).fetchone()
            previous = SeriesState(row[0]) if row else None
            if previous is None:
                tx.execute(
                    "INSERT INTO series VALUES (?,?,?,?,?,?,?,?,?,?,?,?,NULL,?)",
                    (header.series_uid, header.study_uid, header.patient_key, header.modality,
                     header.description, header.sop_class_uid, header.study_date,
                     header.study_time, header.calling_ae, now, now, SeriesState.RECEIVING,
                     header.study_description))
            else:
                tx.execute("UPDATE series SET state = ?, reason = NULL, last_received = ? "
                           "WHERE series_uid = ?",
                           (SeriesState.RECEIVING, now, header.series_uid))
            tx.execute("INSERT OR REPLACE INTO instances VALUES (?,?,?,?)",
                       (header.sop_uid, header.series_uid, header.transfer_syntax, now))
            if previous not in (None, SeriesState.RECEIVING):
                self._fail_unfinished(tx, header.series_uid, f"{SUPERSEDED}: late instances "
                                      "received, the series is processed again", now)
        return previous

    def series(self, series_uid: str) -> Series | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_SERIES_COLUMNS} FROM series s "
                                     "WHERE series_uid = ?", (series_uid,)).fetchone()
        return _series(row) if row else None

    def idle_series(self, received_before: float) -> list[Series]:
        """Receiving series whose last instance arrived before ``received_before``."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_SERIES_COLUMNS} FROM series s WHERE state = ? AND last_received < ? "
                "ORDER BY last_received", (SeriesState.RECEIVING, received_before)).fetchall()
        return [_series(r) for r in rows]

    def mark_complete(self, series: Series) -> bool:
        """receiving -> complete, unless an instance arrived since ``series`` was read."""
        with self._transaction() as tx:
            cursor = tx.execute(
                "UPDATE series SET state = ? WHERE series_uid = ? AND state = ? "
                "AND last_received = ?",
                (SeriesState.COMPLETE, series.series_uid, SeriesState.RECEIVING,
                 series.last_received))
        return cursor.rowcount == 1

    def is_unchanged(self, series: Series) -> bool:
        """True while the series is still complete with no instance received since ``series``."""
        current = self.series(series.series_uid)
        return (current is not None and current.state == SeriesState.COMPLETE
                and current.last_received == series.last_received)

    def settle(self, series: Series, state: SeriesState, reason: str | None) -> None:
        """complete -> skipped or quarantined, with the reason."""
        if state not in (SeriesState.SKIPPED, SeriesState.QUARANTINED):
            raise ValueError(f"a series does not settle as {state}")
        with self._transaction() as tx:
            tx.execute("UPDATE series SET state = ?, reason = ? WHERE series_uid = ? "
                       "AND state = ?", (state, reason, series.series_uid, SeriesState.COMPLETE))

    def quarantine_series(self, series_uid: str, reason: str) -> None:
        """Any state -> quarantined (a downstream service found the input unusable)."""
        with self._transaction() as tx:
            tx.execute("UPDATE series SET state = ?, reason = ? WHERE series_uid = ?",
                       (SeriesState.QUARANTINED, reason, series_uid))

    def reopen_complete(self) -> int:
        """After a restart, series caught in the middle of their checks are checked again."""
        with self._transaction() as tx:
            cursor = tx.execute("UPDATE series SET state = ? WHERE state = ?",
                                (SeriesState.RECEIVING, SeriesState.COMPLETE))
        return cursor.rowcount

    # --- jobs -----------------------------------------------------------------------------

    def create_job(self, series: Series, rule: str, roles: tuple[str, ...],
                   now: float) -> tuple[int, JobPurpose]:
        """complete -> processed, with a new job in state ``received``: a prior's job if a job
        asked for the series as its prior. Returns the job id and purpose."""
        with self._transaction() as tx:
            cursor = tx.execute("UPDATE series SET state = ?, reason = ? WHERE series_uid = ? "
                                "AND state = ?", (SeriesState.PROCESSED, f"rule {rule}",
                                                  series.series_uid, SeriesState.COMPLETE))
            if cursor.rowcount != 1:
                raise RuntimeError(f"series {series.series_uid} is no longer complete")
            requested = tx.execute("SELECT 1 FROM prior_requests WHERE series_uid = ? LIMIT 1",
                                   (series.series_uid,)).fetchone()
            purpose = JobPurpose.PRIOR if requested else JobPurpose.STUDY
            cursor = tx.execute(
                "INSERT INTO jobs (series_uid, rule, roles, state, next_attempt_at, created, "
                "updated, purpose) VALUES (?,?,?,?,?,?,?,?)",
                (series.series_uid, rule, json.dumps(list(roles)), JobState.RECEIVED, now, now,
                 now, purpose))
        assert cursor.lastrowid is not None
        return cursor.lastrowid, purpose

    def jobs(self, series_uid: str | None = None) -> list[Job]:
        query = f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN series s USING (series_uid)"
        args: tuple[str, ...] = ()
        if series_uid is not None:
            query, args = query + " WHERE j.series_uid = ?", (series_uid,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY j.id", args).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> tuple[dict[JobState, int], dict[SeriesState, int]]:
        """How many jobs and series are in each state (for the metrics)."""
        with self._lock:
            jobs = self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
            series = self._conn.execute(
                "SELECT state, count(*) FROM series GROUP BY state").fetchall()
        return ({JobState(s): int(n) for s, n in jobs}, {SeriesState(s): int(n) for s, n in series})

    def due_jobs(self, now: float, limit: int) -> list[Job]:
        """Unfinished jobs whose next attempt is due, oldest first."""
        marks = ",".join("?" * len(UNFINISHED))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN series s USING (series_uid) "
                f"WHERE j.state IN ({marks}) AND j.next_attempt_at <= ? "
                "ORDER BY j.next_attempt_at, j.id LIMIT ?",
                (*UNFINISHED, now, limit)).fetchall()
        return [_job(r) for r in rows]

    def advance(self, job: Job, now: float, pairing: Pairing | None = None,
                to: JobState | None = None) -> bool:
        """Commit a completed step: the job moves to the next state (or ``to``), attempts start
        again; ``pairing`` records the prior (or its absence) and the note.

        False if the job is no longer in the state the step started from (e.g. superseded).
        """
        target = to or NEXT_STATE[job.state]
        with self._transaction() as tx:
            cursor = self._move(tx, job, target, now)
            if cursor.rowcount == 1 and pairing is not None:
                prior = pairing.prior
                tx.execute("UPDATE jobs SET has_prior = ?, prior_study_uid = ?, "
                           "prior_series_uid = ?, prior_study_date = ?, pairing_note = ? "
                           "WHERE id = ?",
                           (int(prior is not None), prior and prior.study_uid,
                            prior and prior.series_uid, prior and prior.study_date,
                            pairing.note, job.id))
        return cursor.rowcount == 1

    @staticmethod
    def _move(tx: sqlite3.Connection, job: Job, target: JobState, now: float) -> sqlite3.Cursor:
        return tx.execute(
            "UPDATE jobs SET state = ?, reason = NULL, attempts = 0, next_attempt_at = ?, "
            "updated = ? WHERE id = ? AND state = ?", (target, now, now, job.id, job.state))

    # --- priors asked of the PACS ---------------------------------------------------------

    def request_prior(self, job: Job, prior: Prior, note: str, now: float,
                      deadline: float | None = None) -> bool:
        """prior_search -> prior_retrieval, remembering the chosen prior (so that its series
        becomes a prior's job when it arrives); with ``deadline`` (the series is already
        here) straight on to prior_wait."""
        target = JobState.PRIOR_RETRIEVAL if deadline is None else JobState.PRIOR_WAIT
        with self._transaction() as tx:
            cursor = self._move(tx, job, target, now)
            if cursor.rowcount == 1:
                tx.execute("INSERT OR REPLACE INTO prior_requests VALUES (?,?,?,?,?,?,?,?)",
                           (job.id, prior.study_uid, prior.series_uid, prior.study_date, note,
                            now, None if deadline is None else now, deadline))
        return cursor.rowcount == 1

    def prior_retrieved(self, job: Job, now: float, deadline: float) -> bool:
        """prior_retrieval -> prior_wait: the PACS sent the prior; wait for it until
        ``deadline``."""
        with self._transaction() as tx:
            cursor = self._move(tx, job, JobState.PRIOR_WAIT, now)
            if cursor.rowcount == 1:
                tx.execute("UPDATE prior_requests SET retrieved = ?, deadline = ? "
                           "WHERE job_id = ?", (now, deadline, job.id))
        return cursor.rowcount == 1

    def prior_request(self, job_id: int) -> PriorRequest | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT job_id, study_uid, series_uid, study_date, note, requested, retrieved, "
                "deadline FROM prior_requests WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else PriorRequest(row[0], Prior(row[1], row[2], row[3]),
                                                     *row[4:])

    def postpone(self, job: Job, at: float, now: float) -> bool:
        """The job waits (not a failure: attempts unchanged); its step runs again at ``at``."""
        with self._transaction() as tx:
            cursor = tx.execute("UPDATE jobs SET next_attempt_at = ?, updated = ? "
                                "WHERE id = ? AND state = ?", (at, now, job.id, job.state))
        return cursor.rowcount == 1

    def retry_later(self, job: Job, attempts: int, at: float, reason: str, now: float) -> bool:
        """Record a failed attempt of the job's current step; it is tried again at ``at``."""
        with self._transaction() as tx:
            cursor = tx.execute(
                "UPDATE jobs SET attempts = ?, next_attempt_at = ?, reason = ?, updated = ? "
                "WHERE id = ? AND state = ?", (attempts, at, reason, now, job.id, job.state))
        return cursor.rowcount == 1

    def fail(self, job: Job, reason: str, now: float, attempts: int | None = None) -> bool:
        """The job's current step cannot succeed: failed, with the reason."""
        with self._transaction() as tx:
            cursor = tx.execute(
                "UPDATE jobs SET state = ?, reason = ?, attempts = ?, updated = ? "
                "WHERE id = ? AND state = ?",
                (JobState.FAILED, reason, job.attempts if attempts is None else attempts, now,
                 job.id, job.state))
        return cursor.rowcount == 1

    @staticmethod
    def _fail_unfinished(tx: sqlite3.Connection, series_uid: str, reason: str,
                         now: float) -> None:
        marks = ",".join("?" * len(UNFINISHED))
        tx.execute(f"UPDATE jobs SET state = ?, reason = ?, updated = ? WHERE series_uid = ? "
                   f"AND state IN ({marks})",
                   (JobState.FAILED, reason, now, series_uid, *UNFINISHED))
