"""A job database written by the previous version is migrated when opened: its jobs keep their
state and become studies (purpose ``study``); the priors table appears."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from listener.db import _SCHEMA, Database, JobPurpose, JobState


def test_a_database_of_the_previous_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "listener.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(_SCHEMA)  # version 0: the schema before priors from the PACS
        old.execute("INSERT INTO series VALUES ('1.2.3.4', '1.2.3', 'key', 'CT', 'CT spine', "
                    "'1.2.840.10008.5.1.4.1.1.2', '20240102', '101500', 'STORESCU', 1, 2, "
                    "'processed', 'rule ct-spine')")
        old.execute("INSERT INTO jobs (series_uid, rule, roles, state, next_attempt_at, "
                    "created, updated, has_prior) VALUES ('1.2.3.4', 'ct-spine', "
                    "'[\"vertebrae\"]', 'paired', 3, 3, 3, 0)")
    db = Database(path)
    try:
        [job] = db.jobs()
        assert (job.state, job.purpose, job.pairing_note, job.has_prior) == (
            JobState.PAIRED, JobPurpose.STUDY, None, False)
        assert db.prior_request(job.id) is None
        series = db.series("1.2.3.4")
        assert series is not None and series.study_description == ""
    finally:
        db.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    Database(path).close()  # opening a migrated database again changes nothing
