"""The listener's metrics and logs: per-stage latencies, job gauges from the database, DICOM
associations and instances, failed steps; logs with job and series, without patient data."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest
from listener_testkit import SENDER, Downstream, ct_series, reject_reason, send, wait_for
from pydicom.dataset import Dataset

from listener.app import Listener
from listener.db import JobState
from listener.metrics import PRIOR_STAGES, STAGES
from spinemets import logs
from spinemets.ports import free_port

pytestmark = pytest.mark.integration

StartListener = Callable[..., Listener]


def delivered(app: Listener, series: list[Dataset], count: int = 1) -> None:
    """Wait until the series' jobs are delivered and the delivery step is timed (the runner
    observes a step just after committing it)."""
    def done() -> bool:
        jobs = app.db.jobs(series[0].SeriesInstanceUID)
        return (len(jobs) == count and all(j.state == JobState.DELIVERED for j in jobs)
                and app.metrics.value("stage_seconds_count", stage="delivery") >= count)
    wait_for(done, what="delivered and timed")


def test_a_delivered_series_is_counted_in_every_stage(start_listener: StartListener) -> None:
    app = start_listener(metrics_port=free_port())
    series = ct_series(slices=6)
    send(series, app.dicom_port)
    delivered(app, series)
    m = app.metrics
    for stage in STAGES:
        assert m.value("stage_seconds_count", stage=stage) == (stage not in PRIOR_STAGES), stage
    assert m.value("prior_outcomes_total", outcome="no_prior") == 1
    # receive: first to last instance; completion_wait: at least the idle time (0.4 s)
    assert 0 <= m.value("stage_seconds_sum", stage="receive") < 5
    assert m.value("stage_seconds_sum", stage="completion_wait") >= 0.4
    assert m.value("instances_received_total", outcome="stored") == 6
    assert m.value("associations_accepted_total") == 1
    assert reject_reason(app.dicom_port, "INTRUDER") is not None
    assert m.value("associations_rejected_total", reason="unknown_calling_ae") == 1
    assert m.value("associations_rejected_total", reason="address_not_allowed") == 0
    assert m.value("jobs", state="delivered") == 1
    assert m.value("jobs", state="failed") == 0 and m.value("queue_depth") == 0
    assert m.value("series", state="processed") == 1

    assert app.exporter is not None
    with urllib.request.urlopen(app.exporter.url, timeout=5) as response:
        text = response.read().decode()
    for stage in set(STAGES) - set(PRIOR_STAGES):
        assert f'spinemets_listener_stage_seconds_count{{stage="{stage}"}} 1.0' in text
    assert 'spinemets_listener_jobs{state="delivered"} 1.0' in text
    assert "spinemets_listener_queue_depth 0.0" in text
    assert 'spinemets_listener_associations_rejected_total{reason="unknown_calling_ae"} 1.0' in text
    assert series[0].SeriesInstanceUID not in text and series[0].PatientID not in text


def test_failed_steps_are_counted_and_queue_depth_follows_the_table(
        start_listener: StartListener, downstream: Downstream) -> None:
    downstream.faults.fail("Pair", grpc.StatusCode.UNAVAILABLE, times=1)
    downstream.faults.fail("Assess", grpc.StatusCode.INVALID_ARGUMENT,
                           details="bad-request: refused")
    downstream.faults.delay_s["Segment"] = 0.5
    app = start_listener()
    series = ct_series(slices=6)
    send(series, app.dicom_port)
    wait_for(lambda: app.metrics.value("queue_depth") == 1, what="a queued job")
    assert app.metrics.value("jobs", state="received") == 1
    wait_for(lambda: app.db.jobs(series[0].SeriesInstanceUID)[0].state == JobState.FAILED,
             what="failed job")
    m = app.metrics
    assert m.value("step_failures_total", stage="pairing", outcome="retried") == 1
    assert m.value("step_failures_total", stage="assessment", outcome="failed") == 1
    assert m.value("step_failures_total", stage="segmentation", outcome="retried") == 0
    assert m.value("stage_seconds_count", stage="pairing") == 1  # the successful attempt only
    assert m.value("stage_seconds_count", stage="assessment") == 0
    assert m.value("stage_seconds_sum", stage="segmentation") >= 0.5
    assert m.value("jobs", state="failed") == 1 and m.value("queue_depth") == 0


def test_job_gauges_are_right_after_a_restart(start_listener: StartListener) -> None:
    first = start_listener()
    series = ct_series(slices=6)
    send(series, first.dicom_port)
    delivered(first, series)
    first.stop()
    second = start_listener()
    assert second.metrics.value("stage_seconds_count", stage="delivery") == 0  # a new process
    assert second.metrics.value("jobs", state="delivered") == 1  # counted in the database
    assert second.metrics.value("series", state="processed") == 1


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above, as the service's JSON lines."""
    with logs.capture("listener") as stream:
        yield stream


def test_logs_carry_job_and_series_never_the_patient(
        start_listener: StartListener, downstream: Downstream, json_logs: io.StringIO) -> None:
    app = start_listener()
    series = ct_series(slices=6, patient_name="Secret^Person", patient_id="PID-SECRET-77")
    uid = series[0].SeriesInstanceUID
    send(series, app.dicom_port)
    delivered(app, series)
    [job] = app.db.jobs(uid)
    text = json_logs.getvalue()
    for secret in ("PID-SECRET-77", "Secret", "Person"):
        assert secret not in text
    records = logs.records(json_logs)
    by_message = {r["message"]: r for r in records}
    for message in ("new series", "series routed: matched rule 'ct-spine'", "segment done",
                    "pair done", "assess done", "deliver done"):
        record = by_message[message]
        assert record["series"] == uid, message
        if message != "new series":
            assert record["job"] == str(job.id), message
    # the job id travels to the downstream services with every call (their logs carry it)
    for method in ("Segment", "Pair", "Assess", "Deliver"):
        assert [m.get("spinemets-job") for m in downstream.faults.metadata[method]] == [
            str(job.id)], method
    assert SENDER in by_message["new series"]["calling_ae"]
