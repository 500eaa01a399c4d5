"""The registrar's gRPC service and its entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from registrar.metrics import RegistrarMetrics
from registrar.server import build
from registrar.settings import Settings
from spinemets import grpcutil, logs
from spinemets.config import BaselineRule
from spinemets.ports import free_port
from spinemets.v1 import registrar_pb2, registrar_pb2_grpc, volume_pb2


@pytest.fixture
def metrics() -> RegistrarMetrics:
    return RegistrarMetrics()


@pytest.fixture
def stub(tmp_path: Path,
         metrics: RegistrarMetrics) -> Iterator[registrar_pb2_grpc.RegistrarServiceStub]:
    server, history = build(Settings(grpc_host="127.0.0.1", grpc_port=0), tmp_path,
                            BaselineRule(), metrics)
    server.start()
    server.set_serving(True)
    address = f"127.0.0.1:{server.port}"
    assert grpcutil.wait_healthy(address, timeout=10)
    with grpcutil.channel(address) as channel:
        yield registrar_pb2_grpc.RegistrarServiceStub(channel)  # type: ignore[no-untyped-call]
    server.stop(grace=1)
    history.close()


def request(n: int, date: str, patient: str = "k1") -> registrar_pb2.PairRequest:
    return registrar_pb2.PairRequest(
        series=volume_pb2.SeriesRef(study_instance_uid=f"1.2.{n}",
                                    series_instance_uid=f"1.2.{n}.1"),
        patient_key=patient, study_date=date, study_time="120000")


def test_pair_returns_the_baseline(stub: registrar_pb2_grpc.RegistrarServiceStub) -> None:
    assert not stub.Pair(request(1, "20220101"), timeout=10).has_prior
    reply = stub.Pair(request(2, "20230101"), timeout=10)
    assert reply.has_prior
    assert (reply.prior.study_instance_uid, reply.prior.series_instance_uid,
            reply.prior_study_date) == ("1.2.1", "1.2.1.1", "20220101")


def test_a_request_without_patient_is_invalid(
        stub: registrar_pb2_grpc.RegistrarServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Pair(request(1, "20220101", patient=""), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpcutil.error_reason(raised.value) == "bad-request"


def test_pairing_is_timed_and_counted_with_the_job_in_the_logs(
        stub: registrar_pb2_grpc.RegistrarServiceStub, metrics: RegistrarMetrics) -> None:
    with logs.capture("registrar") as captured:
        stub.Pair(request(1, "20220101"), timeout=10, metadata=grpcutil.job_metadata(12))
        stub.Pair(request(2, "20230101"), timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.Pair(request(3, "20230101", patient=""), timeout=10)
    assert metrics.value("stage_seconds_count", stage="pairing") == 2  # not the failed call
    assert metrics.value("pairings_total", prior="none") == 1
    assert metrics.value("pairings_total", prior="found") == 1
    recorded = [(r.get("job"), r["series"]) for r in logs.records(captured)
                if r["message"] == "study recorded"]
    assert recorded == [("12", "1.2.1.1"), (None, "1.2.2.1")]
    [failed] = [r for r in logs.records(captured) if r["message"].startswith("Pair failed")]
    assert failed["series"] == "1.2.3.1"
    assert "k1" not in captured.getvalue()  # not even the patient's pseudonym


@pytest.mark.integration
def test_python_m_registrar_serves_and_drains_on_sigterm(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "spinemets.yaml"
    config.write_text(yaml.safe_dump({
        "common": {"data_dir": str(tmp_path / "data")},
        "registrar": {"grpc_host": "127.0.0.1", "grpc_port": port,
                      "metrics_port": metrics_port}}))
    process = subprocess.Popen([sys.executable, "-m", "registrar"],
                               env={**os.environ, "SPINEMETS_CONFIG": str(config)})
    try:
        assert grpcutil.wait_healthy(f"127.0.0.1:{port}", timeout=30)
        with grpcutil.channel(f"127.0.0.1:{port}") as channel:
            registrar_pb2_grpc.RegistrarServiceStub(channel).Pair(  # type: ignore[no-untyped-call]
                request(1, "20220101"), timeout=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as response:
            text = response.read().decode()
        assert 'spinemets_registrar_stage_seconds_count{stage="pairing"} 1.0' in text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "data" / "registrar" / "history.db").exists()
