"""The job runner against real gRPC servers standing in for segmenter, registrar and risk."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from listener_testkit import PSEUDONYM_KEY, Downstream, ct_series, expected_hu, send, wait_for
from pydicom.dataset import Dataset

from listener.app import DATABASE_FILE, Listener
from listener.db import Database, Job, JobState, SeriesState
from spinemets.phi import patient_key

pytestmark = pytest.mark.integration

StartListener = Callable[..., Listener]


def jobs_of(app: Listener, series: list[Dataset]) -> list[Job]:
    return app.db.jobs(series[0].SeriesInstanceUID)


def finished(app: Listener, series: list[Dataset], count: int = 1,
             timeout: float = 15.0) -> list[Job]:
    """Wait until the series has ``count`` jobs, all delivered or failed."""
    def done() -> list[Job] | None:
        jobs = jobs_of(app, series)
        ended = len(jobs) == count and all(
            j.state in (JobState.DELIVERED, JobState.FAILED) for j in jobs)
        return jobs if ended else None
    result: list[Job] = wait_for(done, timeout=timeout, what="jobs finished")
    return result


def in_state(app: Listener, series: list[Dataset], state: JobState) -> Job:
    job: Job = wait_for(lambda: next((j for j in jobs_of(app, series) if j.state == state), None),
                        what=f"job {state}")
    return job


def test_pipeline_runs_every_step_with_pseudonymous_patient(
        start_listener: StartListener, downstream: Downstream) -> None:
    app = start_listener()
    series = ct_series(slices=6, patient_id="PID-0042")
    for ds in series:
        ds.StudyDescription = "RT planning thorax"
    send(series, app.dicom_port)
    [job] = finished(app, series)
    assert job.state == JobState.DELIVERED and job.has_prior is False and job.reason is None

    [request] = downstream.segmenter.requests
    assert request.series.series_instance_uid == series[0].SeriesInstanceUID
    assert list(request.roles) == ["vertebrae"]
    assert request.data_service == app.data_service_address
    [pairing] = downstream.registrar.history[patient_key("PID-0042", "TEST", PSEUDONYM_KEY)]
    assert pairing.study_date == "20240102" and "PID-0042" not in str(pairing)
    # the descriptions the registrar's baseline rule "planning" looks at
    assert (pairing.study_description, pairing.series_description) == (
        "RT planning thorax", "CT spine")
    [maps] = downstream.risk.label_maps
    # the label map made from the streamed volume is the one that reached risk
    np.testing.assert_array_equal(maps[0].array != 0, expected_hu(series) > -900)
    assert downstream.risk.delivered[0].series_instance_uid == series[0].SeriesInstanceUID
    job_dir = app.spool.job_dir(job.id)
    assert (job_dir / "assessment.json").exists() and (job_dir / "deliveries.json").exists()


def test_follow_up_study_is_paired_with_the_baseline(
        start_listener: StartListener, downstream: Downstream) -> None:
    app = start_listener()
    baseline, follow_up = ct_series(slices=6), ct_series(slices=6)
    send(baseline, app.dicom_port)
    finished(app, baseline)
    send(follow_up, app.dicom_port)
    [job] = finished(app, follow_up)
    assert job.has_prior is True and job.prior is not None
    assert job.prior.series_uid == baseline[0].SeriesInstanceUID
    assert (job.prior.study_uid, job.prior.study_date) == (baseline[0].StudyInstanceUID,
                                                           "20240102")
    header = downstream.risk.headers[-1]
    assert header.has_prior and header.prior.series_instance_uid == baseline[0].SeriesInstanceUID
    # the registrar compared the studies over our data service; the comparison went to risk
    pairing = [r for rs in downstream.registrar.history.values() for r in rs][-1]
    assert pairing.data_service == app.data_service_address
    assert (app.spool.job_dir(job.id) / "longitudinal.json").exists()
    assert header.longitudinal.prior.series_instance_uid == baseline[0].SeriesInstanceUID
    assert [v.level for v in header.longitudinal.registrations] == ["L1"]


def test_transient_failures_are_retried_with_backoff(
        start_listener: StartListener, downstream: Downstream,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="listener")
    downstream.faults.fail("Segment", grpc.StatusCode.UNAVAILABLE, times=2)
    downstream.faults.fail("Assess", grpc.StatusCode.DEADLINE_EXCEEDED, times=1)
    downstream.risk.delivery_statuses = [0xA700]  # the PACS refused once
    app = start_listener(retry={"max_attempts": 4, "base_delay_s": 0.2, "max_delay_s": 1.0,
                                "factor": 2.0})
    series = ct_series(slices=6)
    send(series, app.dicom_port)
    [job] = finished(app, series)
    assert job.state == JobState.DELIVERED and job.attempts == 0
    calls = downstream.faults.calls
    assert len(calls["Segment"]) == 3 and len(calls["Assess"]) == 2
    assert len(calls["Deliver"]) == 2 and len(downstream.risk.delivered) == 1
    gaps = np.diff(calls["Segment"])
    assert gaps[0] >= 0.2 * 0.5 and gaps[1] >= 0.4 * 0.5  # exponential: 0.2 then 0.4, jittered
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 4 and any("delivery-failed: PACS: status 0xA700" in m for m in retried)


def test_gives_up_after_max_attempts(start_listener: StartListener,
                                     downstream: Downstream) -> None:
    downstream.faults.fail("Pair", grpc.StatusCode.UNAVAILABLE, times=10)
    app = start_listener()
    series = ct_series(slices=6)
    send(series, app.dicom_port)
    [job] = finished(app, series)
    assert job.state == JobState.FAILED and job.attempts == 4
    assert job.reason == "unavailable: test-fault: injected (gave up after 4 attempts)"
    assert downstream.faults.count("Pair") == 4 and downstream.faults.count("Assess") == 0
    record = app.db.series(series[0].SeriesInstanceUID)
    assert record is not None and record.state == SeriesState.PROCESSED  # not an input problem


def test_input_error_fails_at_once_and_quarantines(start_listener: StartListener,
                                                   downstream: Downstream) -> None:
    downstream.faults.fail("Segment", grpc.StatusCode.INVALID_ARGUMENT,
                           details="bad-geometry: slices do not form a regular grid")
    app = start_listener()
    series = ct_series(slices=6)
    send(series, app.dicom_port)
    [job] = finished(app, series)
    assert job.state == JobState.FAILED
    assert job.reason == "bad-geometry: slices do not form a regular grid"
    assert downstream.faults.count("Segment") == 1  # no retry
    uid = series[0].SeriesInstanceUID
    wait_for(lambda: (s := app.db.series(uid)) is not None
             and s.state == SeriesState.QUARANTINED, what="quarantined")
    assert len(list(app.spool.quarantine_dir(uid).glob("*.dcm"))) == 6
    good = ct_series(slices=6)
    send(good, app.dicom_port)
    assert finished(app, good)[0].state == JobState.DELIVERED


def test_not_found_fails_without_retry_or_quarantine(start_listener: StartListener,
                                                     downstream: Downstream) -> None:
    downstream.faults.fail("Deliver", grpc.StatusCode.NOT_FOUND,
                           details="no-results: outbox has nothing for this series")
    app = start_listener()
    series = ct_series(slices=6)
    send(series, app.dicom_port)
    [job] = finished(app, series)
    assert (job.state, job.reason) == (JobState.FAILED,
                                       "no-results: outbox has nothing for this series")
    assert downstream.faults.count("Deliver") == 1
    record = app.db.series(series[0].SeriesInstanceUID)
    assert record is not None and record.state == SeriesState.PROCESSED


def test_restart_resumes_after_the_last_completed_step(
        start_listener: StartListener, downstream: Downstream) -> None:
    downstream.faults.fail("Pair", grpc.StatusCode.UNAVAILABLE, times=1000)
    first = start_listener(retry={"max_attempts": 1000, "base_delay_s": 0.05,
                                  "max_delay_s": 0.1, "factor": 2.0})
    series = ct_series(slices=6)
    send(series, first.dicom_port)
    in_state(first, series, JobState.SEGMENTED)
    wait_for(lambda: downstream.faults.count("Pair") >= 1, what="a Pair attempt")
    first.stop()

    downstream.faults.clear()
    second = start_listener()
    [job] = finished(second, series)
    assert job.state == JobState.DELIVERED
    assert downstream.faults.count("Segment") == 1  # not segmented again
    assert len(downstream.risk.label_maps) == 1  # the label maps saved before the restart


def test_stop_finishes_the_current_step(start_listener: StartListener,
                                        downstream: Downstream) -> None:
    downstream.faults.delay_s["Segment"] = 1.0
    app = start_listener()
    series = ct_series(slices=6)
    send(series, app.dicom_port)
    wait_for(lambda: downstream.faults.count("Segment") == 1, what="Segment called")
    app.stop()
    db = Database(app.spool.root / DATABASE_FILE)  # what a restarted listener finds
    [job] = db.jobs(series[0].SeriesInstanceUID)
    db.close()
    assert job.state == JobState.SEGMENTED  # the running step completed and was committed
    assert downstream.faults.count("Pair") == 0


def test_late_instance_starts_a_rerun(start_listener: StartListener,
                                      downstream: Downstream) -> None:
    app = start_listener()
    series = ct_series(slices=7)
    send(series[:6], app.dicom_port)
    finished(app, series)
    send(series[6:], app.dicom_port)
    first, second = finished(app, series, count=2)
    assert first.state == second.state == JobState.DELIVERED
    assert downstream.faults.count("Segment") == 2
    assert [m[0].geometry.size[2] for m in downstream.risk.label_maps] == [6, 7]


def test_late_instance_supersedes_an_unfinished_job(start_listener: StartListener,
                                                    downstream: Downstream) -> None:
    downstream.faults.fail("Pair", grpc.StatusCode.UNAVAILABLE, times=1000)
    app = start_listener(retry={"max_attempts": 1000, "base_delay_s": 0.05,
                                "max_delay_s": 0.1, "factor": 2.0})
    series = ct_series(slices=7)
    send(series[:6], app.dicom_port)
    in_state(app, series, JobState.SEGMENTED)
    send(series[6:], app.dicom_port)
    [old] = jobs_of(app, series)
    assert old.state == JobState.FAILED and old.reason is not None
    assert old.reason.startswith("superseded")
    downstream.faults.clear()
    assert finished(app, series, count=2)[1].state == JobState.DELIVERED
    assert [m[0].geometry.size[2] for m in downstream.risk.label_maps] == [7]
