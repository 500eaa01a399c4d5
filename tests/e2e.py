"""Helpers of the end-to-end tests: phantoms as DICOM, sending, waiting for results, validation."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest

from peers import Orthanc
from phantom import PhantomOptions, generate, write_dicom_series
from spinemets import labels
from spinemets.geometry import Volume, assemble_ct
from stack.sender import push
from stack.stack import RunningStack, StackConfig

#: Calling AE title of the test sender (allowed by the test stack's listener).
SENDER_AE = "STORESCU"
#: Series Description that the end-to-end stack routes to the vertebra and the lesion model.
LESION_SERIES = "spine with lesion model"


def requires(*binaries: str) -> pytest.MarkDecorator:
    """Skip unless every binary is installed."""
    missing = [b for b in binaries if shutil.which(b) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


Stack = tuple[StackConfig, RunningStack]


# The vertebra model's cost on CPU grows with the number of its 384 x 128 x 128 mm windows, so
# the phantoms have the small field of view of a spine reconstruction (the vertebrae span
# 90-100 mm across): up to 192 mm the model's 2 mm grid takes 2 x 2 windows per slab (200 mm:
# 3 x 3, a whole abdomen 4 x 4).

def full_spine(seed: int) -> PhantomOptions:
    """T1 to the sacrum on a clinical grid, 190 mm across (the model's Dice is measured on it)."""
    return PhantomOptions(seed=seed, full_spine=True, spacing=(1.0, 1.0, 2.5), matrix=190)


def short_run(seed: int) -> PhantomOptions:
    """T12-L2 with a lesion, 3 mm slices, 187.5 mm across: every role and service, cheaply."""
    return PhantomOptions(seed=seed, levels=("T12", "L2"), spacing=(1.25, 1.25, 3.0), matrix=150,
                          lesions=1)


def phantom_series(tmp_path: Path, options: PhantomOptions
                   ) -> tuple[list[Path], Volume, dict[str, Any]]:
    """A phantom written as DICOM; returns files, its volume (read back) and truth."""
    phantom = generate(options)
    seed = options.seed
    files = write_dicom_series(phantom, tmp_path / f"phantom-{seed}", patient_id=f"P-{seed}",
                               patient_name=f"Test^Patient{seed}")
    volume = assemble_ct([pydicom.dcmread(f) for f in files])
    truth = {"levels_in_view": phantom.truth["levels_in_view"],
             "masks": {label.name.split("_", 1)[1]: phantom.vertebrae.mask(label.name)
                       for label in labels.in_group(labels.Group.VERTEBRA)}}
    return files, volume, truth


def send(config: StackConfig, files: list[Path]) -> str:
    push(files[0].parent, "127.0.0.1", config.listener.port, config.listener.ae_title, SENDER_AE)
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


RESULT_MODALITIES = ("SEG", "SR", "DOC", "OT")


def wait_for_results(orthanc: Orthanc, study_uid: str, timeout: float = 600.0,
                     modalities: tuple[str, ...] = RESULT_MODALITIES
                     ) -> dict[str, list[dict[str, Any]]]:
    """Block until the study holds an instance of every result modality (SEG, SR, and the
    report's PDF and secondary capture); return the study's instances by modality."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        by_modality: dict[str, list[dict[str, Any]]] = {}
        for instance in orthanc.instances_of_study(study_uid):
            by_modality.setdefault(instance["Modality"], []).append(instance)
        if all(m in by_modality for m in modalities):
            return by_modality
        time.sleep(1.0)
    raise AssertionError(f"not every one of {', '.join(modalities)} in Orthanc for the study "
                         f"after {timeout:.0f} s")


def dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("Error")]


def query(config: StackConfig, service: str, sql: str, *args: str) -> list[tuple[Any, ...]]:
    """Rows of the listener's job database or the registrar's study history (read-only); none
    while the database does not exist yet."""
    work = config.stack.root / "work"
    database = (config.listener.state_path(work) / "listener.sqlite" if service == "listener"
                else config.registrar.database_path(work))
    if not database.exists():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute(sql, args).fetchall()


JOB_COLUMNS = ("id", "state", "reason", "purpose", "has_prior", "prior_study_uid",
               "prior_series_uid", "pairing_note", "created", "updated")


def job_row(config: StackConfig, series_uid: str) -> dict[str, Any] | None:
    """The series' latest job (:data:`JOB_COLUMNS`), or ``None``."""
    rows = query(config, "listener", f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs "
                 "WHERE series_uid = ? ORDER BY id DESC LIMIT 1", series_uid)
    return dict(zip(JOB_COLUMNS, rows[0], strict=True)) if rows else None


def job_state(config: StackConfig, series_uid: str) -> str | None:
    job = job_row(config, series_uid)
    return None if job is None else str(job["state"])


def delivered_job(config: StackConfig, series_uid: str, timeout: float = 120.0
                  ) -> dict[str, Any]:
    """The series' job once delivered. Results reach the PACS just before the listener
    commits the state, so a test that saw them waits here for the commit."""
    deadline = time.monotonic() + timeout
    while (job := job_row(config, series_uid)) is None or job["state"] != "delivered":
        assert time.monotonic() < deadline, f"job not delivered in {timeout:.0f} s: {job}"
        time.sleep(0.5)
    return job
