"""The gRPC service end to end: a data service, the risk server, a storage SCP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import highdicom as hd
import numpy as np
import pytest
import yaml
from pydicom import dcmread
from pydicom.dataset import Dataset

from listener.data_service import instance_chunks
from risk.measure import measure_vertebrae
from risk.metrics import RiskMetrics
from risk.server import build
from risk.settings import Destination, Settings
from spinemets import grpcutil, labelmaps, logs, volumes
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap
from spinemets.ports import free_port
from spinemets.v1 import (
    listener_pb2,
    listener_pb2_grpc,
    longitudinal_pb2,
    risk_pb2,
    risk_pb2_grpc,
    volume_pb2,
)
from stack.mock_pacs import MockPacs


class SpoolData(listener_pb2_grpc.DataServiceServicer):
    """A data service over files in a folder, with the listener's instance encoder."""

    def __init__(self, folder: Path, volume: Volume, series_uid: str) -> None:
        self.folder, self.volume, self.series_uid = folder, volume, series_uid

    def _check(self, request: volume_pb2.SeriesRef, context: grpc.ServicerContext) -> None:
        if request.series_instance_uid != self.series_uid:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown-series: not in the spool")

    def StreamInstances(self, request: volume_pb2.SeriesRef,  # noqa: N802
                        context: grpc.ServicerContext) -> Iterator[listener_pb2.InstanceChunk]:
        self._check(request, context)
        return instance_chunks(sorted(self.folder.glob("*.dcm")))

    def StreamVolume(self, request: volume_pb2.SeriesRef,  # noqa: N802
                     context: grpc.ServicerContext) -> Iterator[volume_pb2.VolumeChunk]:
        self._check(request, context)
        return volumes.to_chunks(self.volume)


@dataclass(frozen=True)
class Stack:
    risk: risk_pb2_grpc.RiskServiceStub
    data_address: str
    series: volume_pb2.SeriesRef
    pacs: MockPacs
    metrics: RiskMetrics


@pytest.fixture
def stack(tmp_path: Path, ct_series: list[Dataset], volume: Volume) -> Iterator[Stack]:
    spool = tmp_path / "spool"
    spool.mkdir()
    for ds in ct_series:
        ds.save_as(spool / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    first = ct_series[0]
    data = grpcutil.Server("data", "127.0.0.1:0")
    data.add(listener_pb2_grpc.add_DataServiceServicer_to_server,
             SpoolData(spool, volume, str(first.SeriesInstanceUID)))
    data.start()
    pacs = MockPacs(tmp_path / "pacs", "PACS", port=0)
    settings = Settings(grpc_host="127.0.0.1", grpc_port=0, outbox_dir=tmp_path / "outbox",
                        destinations=(Destination(ae_title="PACS", host="127.0.0.1",
                                                  port=pacs.start()),),
                        delivery_attempts=2, delivery_backoff_s=0.0, dicom_timeout_s=5.0)
    metrics = RiskMetrics()
    server = build(settings, tmp_path, metrics)
    server.start()
    server.set_serving(True)
    address = f"127.0.0.1:{server.port}"
    assert grpcutil.wait_healthy(address, timeout=10)
    with grpcutil.channel(address) as channel:
        yield Stack(risk_pb2_grpc.RiskServiceStub(channel), f"127.0.0.1:{data.port}",  # type: ignore[no-untyped-call]
                    volume_pb2.SeriesRef(study_instance_uid=str(first.StudyInstanceUID),
                                         series_instance_uid=str(first.SeriesInstanceUID)),
                    pacs, metrics)
    server.stop(grace=1)
    data.stop(grace=1)
    pacs.stop()


def request(stack: Stack, maps: list[LabelMap], announced: int | None = None
            ) -> Iterator[risk_pb2.AssessChunk]:
    header = risk_pb2.AssessHeader(series=stack.series, data_service=stack.data_address,
                                   label_map_count=len(maps) if announced is None else announced)
    yield risk_pb2.AssessChunk(header=header)
    for label_map in maps:
        for chunk in labelmaps.to_chunks(label_map):
            yield risk_pb2.AssessChunk(label_map=chunk)


def test_assess_then_deliver(stack: Stack, volume: Volume, label_map: LabelMap) -> None:
    reply = stack.risk.Assess(request(stack, [label_map]), timeout=60)
    expected = measure_vertebrae(volume.array, label_map)
    assert [(v.level, v.segment_number) for v in reply.vertebrae] == [
        ("L1", 1), ("L2", 2), ("L3", 3)]
    assert [v.volume_ml for v in reply.vertebrae] == [m.volume_ml for m in expected]
    assert [v.mean_hu for v in reply.vertebrae] == [m.mean_hu for m in expected]
    assert [o.modality for o in reply.objects] == ["SEG", "SR", "DOC", "OT"]
    again = stack.risk.Assess(request(stack, [label_map]), timeout=60)
    assert list(again.objects) == list(reply.objects)
    delivered = stack.risk.Deliver(stack.series, timeout=60)
    assert [(d.sop_instance_uid, d.status) for d in delivered.deliveries] == [
        (o.sop_instance_uid, 0) for o in reply.objects]
    assert len(stack.pacs.received) == 4
    metrics = stack.metrics
    assert metrics.value("stage_seconds_count", stage="assessment") == 2
    assert metrics.value("stage_seconds_count", stage="delivery") == 1
    assert metrics.value("objects_delivered_total", kind="SEG") == 1
    assert metrics.value("objects_delivered_total", kind="SR") == 1
    assert metrics.value("delivery_retries_total") == 0


def test_the_comparison_with_the_prior_in_the_header_reaches_the_sr(
        stack: Stack, label_map: LabelMap) -> None:
    prior = volume_pb2.SeriesRef(study_instance_uid="1.2.3.9", series_instance_uid="1.2.3.9.1")
    chunks = list(request(stack, [label_map]))
    chunks[0].header.longitudinal.CopyFrom(longitudinal_pb2.Longitudinal(
        prior=prior, registrations=[longitudinal_pb2.VertebraRegistration(
            level="L2", prior_to_current=np.eye(4).ravel().tolist(), dice=0.9, hd95_mm=1.0)]))
    reply = stack.risk.Assess(iter(chunks), timeout=60)
    stack.risk.Deliver(stack.series, timeout=60)
    [sr] = [p for p in stack.pacs.received if dcmread(p).Modality == "SR"]
    report = hd.sr.srread(sr).content
    assert isinstance(report, hd.sr.MeasurementReport)
    [group] = [g for g in report.get_volumetric_roi_measurement_groups()
               if g.tracking_identifier.endswith("since prior study")]
    assert group.tracking_identifier == "L2 vertebra since prior study"
    assert [str(item.UID) for item in group[0].ContentSequence
            if item.ValueType == "UIDREF" and item.name.value == "C-001"] == ["1.2.3.9"]
    assert [o.modality for o in reply.objects] == ["SEG", "SR", "DOC", "OT", "OT"]  # 2 pages


def test_calls_are_logged_with_job_and_series(stack: Stack, label_map: LabelMap) -> None:
    with logs.capture("risk") as captured:
        stack.risk.Assess(request(stack, [label_map]), timeout=60,
                          metadata=grpcutil.job_metadata(8))
        stack.risk.Deliver(stack.series, timeout=60, metadata=grpcutil.job_metadata(8))
    attempts = [r for r in logs.records(captured) if r["message"] == "C-STORE attempt"]
    assert attempts and all((r["job"], r["series"]) == ("8", stack.series.series_instance_uid)
                            for r in attempts)


def test_failed_delivery_is_unavailable(stack: Stack, label_map: LabelMap) -> None:
    stack.risk.Assess(request(stack, [label_map]), timeout=60)
    stack.pacs.stop()
    with pytest.raises(grpc.RpcError) as raised:
        stack.risk.Deliver(stack.series, timeout=60)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert grpcutil.error_reason(raised.value) == "delivery-failed"
    assert stack.metrics.value("stage_seconds_count", stage="delivery") == 0
    assert stack.metrics.value("delivery_retries_total") == 1  # two attempts
    assert stack.metrics.value("delivery_failures_total") == 1


@pytest.mark.parametrize(("case", "code", "reason"), [
    ("wrong-count", grpc.StatusCode.INVALID_ARGUMENT, "bad-request"),
    ("unknown-series", grpc.StatusCode.INVALID_ARGUMENT, "unknown-series"),
    ("deliver-unassessed", grpc.StatusCode.NOT_FOUND, "FileNotFoundError"),
])
def test_bad_requests_are_permanent_errors(stack: Stack, label_map: LabelMap, case: str,
                                           code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        if case == "wrong-count":
            stack.risk.Assess(request(stack, [label_map], announced=2), timeout=60)
        elif case == "unknown-series":
            unknown = Stack(stack.risk, stack.data_address,
                            volume_pb2.SeriesRef(study_instance_uid="1.2.3",
                                                 series_instance_uid="1.2.4"), stack.pacs,
                            stack.metrics)
            stack.risk.Assess(request(unknown, [label_map]), timeout=60)
        else:
            stack.risk.Deliver(stack.series, timeout=60)
    assert raised.value.code() == code
    assert grpcutil.error_reason(raised.value) == reason
    assert grpcutil.is_permanent(raised.value)


@pytest.mark.integration
def test_python_m_risk_serves_and_drains_on_sigterm(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "spinemets.yaml"
    config.write_text(yaml.safe_dump({
        "common": {"data_dir": str(tmp_path / "data")},
        "risk": {"grpc_host": "127.0.0.1", "grpc_port": port, "metrics_port": metrics_port}}))
    process = subprocess.Popen([sys.executable, "-m", "risk"],
                               env={**os.environ, "SPINEMETS_CONFIG": str(config)})
    try:
        assert grpcutil.wait_healthy(f"127.0.0.1:{port}", timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as response:
            text = response.read().decode()
        assert 'spinemets_risk_stage_seconds_count{stage="delivery"} 0.0' in text
        assert 'spinemets_risk_objects_delivered_total{kind="SR"} 0.0' in text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "data" / "risk" / "outbox").is_dir()


def test_a_bad_setting_stops_the_service_with_its_name(tmp_path: Path) -> None:
    config = tmp_path / "spinemets.yaml"
    config.write_text(yaml.safe_dump({"risk": {"delivery_attempts": 0}}))
    run = subprocess.run([sys.executable, "-m", "risk"], capture_output=True, text=True,
                         env={**os.environ, "SPINEMETS_CONFIG": str(config)}, timeout=60)
    assert run.returncode == 2
    assert "risk.delivery_attempts" in run.stderr
