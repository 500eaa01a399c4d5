"""Priors from the PACS: a follow-up whose patient the registrar does not know makes the listener
find the baseline in a real Orthanc (C-FIND), retrieve it (C-MOVE to itself, or C-GET), have it
segmented and recorded (never reported), and pair with it; every way this can fail ends with the
follow-up processed as a baseline, with the reason. Downstream services are the test kit's fakes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from listener_testkit import (
    PSEUDONYM_KEY,
    SENDER,
    Downstream,
    ct_series,
    send,
    wait_for,
    write_files,
)
from pydicom.dataset import Dataset

from listener.app import DATABASE_FILE, Listener
from listener.db import Database, Job, JobPurpose, JobState
from peers import Orthanc, free_port
from spinemets import grpcutil, labelmaps, logs
from spinemets.phi import patient_key
from spinemets.v1 import listener_pb2_grpc, volume_pb2

pytestmark = pytest.mark.integration

StartListener = Callable[..., Listener]
ENDED = (JobState.DELIVERED, JobState.FAILED, JobState.RECORDED)
PATIENT_RETRY = {"max_attempts": 1000, "base_delay_s": 0.1, "max_delay_s": 0.3, "factor": 2.0}


def start(start_listener: StartListener, pacs: Orthanc, port: int | None = None,
          priors: dict[str, Any] | None = None, **overrides: Any) -> Listener:
    """A listener that searches ``pacs`` (at ``port``) for priors, known to it as SPINEMETS."""
    node = {"ae_title": pacs.aet, "host": "127.0.0.1", "port": port or pacs.dicom_port}
    app = start_listener(allowed_callers=[{"ae_title": SENDER}, {"ae_title": pacs.aet}],
                         priors={"pacs": node, **(priors or {})}, **overrides)
    pacs.add_modality("spinemets", "SPINEMETS", app.dicom_port)
    return app


def patient_series(tmp_path: Path, pacs: Orthanc | None) -> tuple[list[Dataset], list[Dataset]]:
    """A new patient's baseline (2023-01-01, only in ``pacs``) and follow-up (2024-01-02)."""
    patient_id = f"PRIOR-{uuid.uuid4().hex[:8]}"
    baseline = ct_series(slices=6, patient_id=patient_id, patient_name="Prior^Patient")
    for ds in baseline:
        ds.StudyDate = "20230101"
    if pacs is not None:
        pacs.upload(write_files(baseline, tmp_path / "baseline"))
    return baseline, ct_series(slices=6, patient_id=patient_id, patient_name="Prior^Patient")


def ended(app: Listener, series: list[Dataset], timeout: float = 20.0) -> Job:
    """The series' latest job once it is delivered, recorded or failed."""
    def done() -> Job | None:
        jobs = app.db.jobs(series[0].SeriesInstanceUID)
        return jobs[-1] if jobs and jobs[-1].state in ENDED else None
    job: Job = wait_for(done, timeout=timeout, what="job ended")
    return job


def in_state(app: Listener, series: list[Dataset], state: JobState) -> Job:
    job: Job = wait_for(lambda: next((j for j in app.db.jobs(series[0].SeriesInstanceUID)
                                      if j.state == state), None), what=f"job {state}")
    return job


def uids(series: list[Dataset]) -> tuple[str, str]:
    return series[0].StudyInstanceUID, series[0].SeriesInstanceUID


def test_follow_up_retrieves_its_baseline_by_c_move_and_pairs_with_it(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    baseline, follow_up = patient_series(tmp_path, pacs)
    with logs.capture() as captured:
        app = start(start_listener, pacs)
        send(follow_up, app.dicom_port)
        job = ended(app, follow_up)
        prior_job = ended(app, baseline)
    assert job.state == JobState.DELIVERED and job.reason is None and job.has_prior
    assert job.prior is not None and (job.prior.study_uid, job.prior.series_uid) == uids(baseline)
    assert job.pairing_note is not None and job.pairing_note.startswith(
        f"pacs: most recent earlier study retrieved from {pacs.aet}@")
    # the baseline came in through the SCP from the PACS, was segmented and recorded, not reported
    prior_series = app.db.series(baseline[0].SeriesInstanceUID)
    assert prior_series is not None and prior_series.calling_ae == pacs.aet
    assert (prior_job.purpose, prior_job.state) == (JobPurpose.PRIOR, JobState.RECORDED)
    assert [r.series.series_instance_uid for r in downstream.segmenter.requests] == [
        follow_up[0].SeriesInstanceUID, baseline[0].SeriesInstanceUID]
    assert [h.series.series_instance_uid for h in downstream.risk.headers] == [
        follow_up[0].SeriesInstanceUID]
    assert [d.series_instance_uid for d in downstream.risk.delivered] == [
        follow_up[0].SeriesInstanceUID]
    header = downstream.risk.headers[0]
    assert header.has_prior and header.prior.series_instance_uid == baseline[0].SeriesInstanceUID
    # the follow-up's Pair named the data service, so the registrar fetches both studies to
    # register them; the retrieved prior's did not (it is recorded, not compared with anything)
    key = patient_key(follow_up[0].PatientID, "TEST", PSEUDONYM_KEY)
    services = {r.series.series_instance_uid: r.data_service
                for r in downstream.registrar.history[key]}
    assert services == {follow_up[0].SeriesInstanceUID: app.data_service_address,
                        baseline[0].SeriesInstanceUID: ""}
    for stage in ("prior_search", "prior_retrieval", "prior_wait"):
        assert app.metrics.value("stage_seconds_count", stage=stage) == 1, stage
    assert app.metrics.value("prior_outcomes_total", outcome="pacs") == 1
    text = captured.getvalue()
    assert follow_up[0].PatientID not in text and "Prior^Patient" not in text

    ref = volume_pb2.SeriesRef(study_instance_uid=baseline[0].StudyInstanceUID,
                               series_instance_uid=baseline[0].SeriesInstanceUID)
    with grpcutil.channel(app.data_service_address) as channel:
        stub = listener_pb2_grpc.DataServiceStub(channel)  # type: ignore[no-untyped-call]
        [streamed] = labelmaps.from_chunks(stub.StreamLabelMaps(ref, timeout=10))
        [saved] = [labelmaps.load(p) for p in app.spool.label_map_paths(prior_job.id)]
        assert (streamed.array == saved.array).all() and streamed.labels == saved.labels
        missing = volume_pb2.SeriesRef(study_instance_uid="1.2.3", series_instance_uid="1.2.3.4")
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.StreamLabelMaps(missing, timeout=10))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_c_get_retrieves_the_baseline_on_the_query_association(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    baseline, follow_up = patient_series(tmp_path, pacs)
    app = start(start_listener, pacs, priors={"retrieve": "get"})
    send(follow_up, app.dicom_port)
    job = ended(app, follow_up)
    assert job.state == JobState.DELIVERED and job.prior is not None
    assert job.prior.series_uid == baseline[0].SeriesInstanceUID
    assert ended(app, baseline).purpose == JobPurpose.PRIOR
    assert len(downstream.risk.delivered) == 1


def test_patient_without_a_prior_anywhere_is_a_baseline(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    _, follow_up = patient_series(tmp_path, None)
    app = start(start_listener, pacs)
    send(follow_up, app.dicom_port)
    job = ended(app, follow_up)
    assert (job.state, job.reason, job.has_prior, job.attempts) == (
        JobState.DELIVERED, None, False, 0)
    assert job.pairing_note is not None and job.pairing_note.startswith(
        "not-in-pacs: no earlier CT study of the patient")
    assert app.metrics.value("prior_outcomes_total", outcome="not_in_pacs") == 1
    assert app.metrics.value("stage_seconds_count", stage="prior_retrieval") == 0


def test_pacs_down_is_retried_then_the_follow_up_is_a_baseline(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    _, follow_up = patient_series(tmp_path, pacs)
    app = start(start_listener, pacs, port=free_port(), priors={"timeout_s": 2.0})
    send(follow_up, app.dicom_port)
    job = ended(app, follow_up)
    assert (job.state, job.reason, job.has_prior) == (JobState.DELIVERED, None, False)
    assert job.pairing_note is not None and job.pairing_note.startswith(
        "search-failed: pacs-unreachable: PACS ORTHANC@127.0.0.1:")
    assert job.pairing_note.endswith("(gave up after 4 attempts)")
    m = app.metrics
    assert m.value("step_failures_total", stage="prior_search", outcome="retried") == 3
    assert m.value("step_failures_total", stage="prior_search", outcome="failed") == 1
    assert m.value("prior_outcomes_total", outcome="search_failed") == 1
    assert len(downstream.risk.delivered) == 1


def test_c_move_failure_is_retried_then_the_follow_up_is_a_baseline(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    baseline, follow_up = patient_series(tmp_path, pacs)
    app = start(start_listener, pacs, priors={"move_destination": "NOWHERE"})  # unknown to the PACS
    send(follow_up, app.dicom_port)
    job = ended(app, follow_up)
    assert (job.state, job.reason, job.has_prior) == (JobState.DELIVERED, None, False)
    assert job.pairing_note is not None and job.pairing_note.startswith(
        "retrieval-failed: retrieve-failed: C-MOVE from ORTHANC@")
    assert "(gave up after 4 attempts)" in job.pairing_note
    assert app.db.series(baseline[0].SeriesInstanceUID) is None
    assert len(downstream.risk.delivered) == 1


def test_c_move_that_fails_once_is_retried(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    baseline, follow_up = patient_series(tmp_path, pacs)
    app = start(start_listener, pacs, retry=PATIENT_RETRY)
    pacs.add_modality("spinemets", "SPINEMETS", free_port())  # the PACS has a wrong port
    send(follow_up, app.dicom_port)
    wait_for(lambda: app.metrics.value("step_failures_total", stage="prior_retrieval",
                                       outcome="retried") >= 1, what="a failed C-MOVE")
    pacs.add_modality("spinemets", "SPINEMETS", app.dicom_port)  # the PACS admin fixes it
    job = ended(app, follow_up)
    assert job.state == JobState.DELIVERED and job.prior is not None
    assert job.prior.series_uid == baseline[0].SeriesInstanceUID
    assert job.pairing_note is not None and job.pairing_note.startswith("pacs:")


def test_waiting_for_the_prior_survives_a_restart(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    baseline, follow_up = patient_series(tmp_path, pacs)
    first = start(start_listener, pacs, retry=PATIENT_RETRY)
    send(follow_up, first.dicom_port)
    in_state(first, follow_up, JobState.PRIOR_SEARCH)
    downstream.faults.fail("Segment", grpc.StatusCode.UNAVAILABLE, times=1000)  # the prior's
    in_state(first, follow_up, JobState.PRIOR_WAIT)
    first.stop()
    db = Database(first.spool.root / DATABASE_FILE)  # what a restarted listener finds
    [waiting] = db.jobs(follow_up[0].SeriesInstanceUID)
    request = db.prior_request(waiting.id)
    db.close()
    assert waiting.state == JobState.PRIOR_WAIT
    assert request is not None and request.prior.series_uid == baseline[0].SeriesInstanceUID

    downstream.faults.clear()
    second = start(start_listener, pacs)
    job = ended(second, follow_up)
    assert job.state == JobState.DELIVERED and job.prior is not None
    assert job.prior.series_uid == baseline[0].SeriesInstanceUID
    assert ended(second, baseline).state == JobState.RECORDED
    assert len(downstream.risk.delivered) == 1


def test_a_prior_not_recorded_in_time_leaves_the_follow_up_a_baseline(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    baseline, follow_up = patient_series(tmp_path, pacs)
    app = start(start_listener, pacs, priors={"wait_s": 1.0})
    send(follow_up, app.dicom_port)
    in_state(app, follow_up, JobState.PRIOR_SEARCH)
    downstream.faults.delay_s["Segment"] = 3.0  # the prior's segmentation is slow
    job = ended(app, follow_up)
    assert (job.state, job.has_prior) == (JobState.DELIVERED, False)
    assert job.pairing_note == "wait-timeout: the retrieved prior was not recorded within 1 s"
    prior_job = ended(app, baseline)  # it is still recorded for the next follow-up
    assert (prior_job.purpose, prior_job.state) == (JobPurpose.PRIOR, JobState.RECORDED)
    assert len(downstream.risk.delivered) == 1


def test_a_prior_that_cannot_be_processed_leaves_the_follow_up_a_baseline(
        start_listener: StartListener, downstream: Downstream, pacs: Orthanc,
        tmp_path: Path) -> None:
    baseline, follow_up = patient_series(tmp_path, pacs)
    app = start(start_listener, pacs)
    send(follow_up, app.dicom_port)
    in_state(app, follow_up, JobState.PRIOR_SEARCH)
    downstream.faults.fail("Segment", grpc.StatusCode.INVALID_ARGUMENT,
                           details="bad-geometry: not a regular grid")
    job = ended(app, follow_up)
    assert (job.state, job.has_prior) == (JobState.DELIVERED, False)
    assert job.pairing_note == ("prior-failed: the retrieved prior series was quarantined: "
                                "bad-geometry: not a regular grid")
    assert ended(app, baseline).state == JobState.FAILED
