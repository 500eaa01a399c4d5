"""The registrar's gRPC service and its entry point."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from registrar.server import build
from registrar.settings import Settings
from spinemets import grpcutil
from spinemets.v1 import registrar_pb2, registrar_pb2_grpc, volume_pb2


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[registrar_pb2_grpc.RegistrarServiceStub]:
    server, history = build(Settings(grpc_host="127.0.0.1", grpc_port=0), tmp_path)
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


@pytest.mark.integration
def test_python_m_registrar_serves_and_drains_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = tmp_path / "spinemets.yaml"
    config.write_text(yaml.safe_dump({
        "common": {"data_dir": str(tmp_path / "data")},
        "registrar": {"grpc_host": "127.0.0.1", "grpc_port": port}}))
    process = subprocess.Popen([sys.executable, "-m", "registrar"],
                               env={**os.environ, "SPINEMETS_CONFIG": str(config)})
    try:
        assert grpcutil.wait_healthy(f"127.0.0.1:{port}", timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "data" / "registrar" / "history.db").exists()
