"""Metrics: naming, stage timing, the HTTP exporter; job and series identifiers of gRPC calls."""

from __future__ import annotations

import io
import logging
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from spinemets import grpcutil, logs, metrics
from spinemets.errors import InputError, SpineMetsError
from spinemets.v1 import volume_pb2


class Example(metrics.ServiceMetrics):
    def __init__(self) -> None:
        super().__init__("example", ("first", "second"))
        self.things = self.counter("things_total", "Things", ("kind",))
        metrics.init_labels(self.things, "kind", ("a", "b"))


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_names_stages_and_initial_series() -> None:
    example = Example()
    assert example.name("stage_seconds") == "spinemets_example_stage_seconds"
    # every stage and label value is exported at 0 before anything happened
    assert example.registry.get_sample_value("spinemets_example_stage_seconds_count",
                                             {"stage": "second"}) == 0.0
    assert example.value("things_total", kind="b") == 0.0
    assert example.value("absent_total") == 0.0


def test_a_stage_is_recorded_only_when_it_succeeds() -> None:
    example = Example()
    with example.stage("first"):
        pass
    with pytest.raises(RuntimeError), example.stage("first"):
        raise RuntimeError("failed run")
    example.observe_stage("second", 2.5)
    example.observe_stage("second", -1.0)  # clock steps never give negative durations
    assert example.value("stage_seconds_count", stage="first") == 1
    assert example.value("stage_seconds_count", stage="second") == 2
    assert example.value("stage_seconds_sum", stage="second") == 2.5
    assert example.value("stage_seconds_bucket", stage="second", le="2.5") == 2
    with pytest.raises(ValueError, match=r"unknown stage '1\.2\.3\.4'"):
        example.observe_stage("1.2.3.4", 1.0)  # label values are a fixed set, never data


def test_exporter_serves_the_registry_over_http() -> None:
    example = Example()
    example.things.labels(kind="a").inc(3)
    example.observe_stage("first", 0.2)
    exporter = metrics.Exporter(example.registry, "127.0.0.1", 0)
    port = exporter.start()
    try:
        assert exporter.url == f"http://127.0.0.1:{port}/metrics"
        text = scrape(exporter.url)
    finally:
        exporter.stop()
    assert 'spinemets_example_things_total{kind="a"} 3.0' in text
    assert 'spinemets_example_stage_seconds_count{stage="first"} 1.0' in text
    assert 'spinemets_example_stage_seconds_count{stage="second"} 0.0' in text
    assert "process_cpu_seconds_total" in text or "python_info" in text
    with pytest.raises(OSError):
        scrape(exporter.url)  # stopped


def test_port_zero_disables_and_a_busy_port_is_an_error() -> None:
    example = Example()
    assert metrics.serve(example, "127.0.0.1", 0) is None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SpineMetsError, match=f"cannot export metrics on 127.0.0.1:{port}"):
            metrics.serve(example, "127.0.0.1", port)


def test_url_of_a_wildcard_address_is_loopback() -> None:
    assert metrics.url("0.0.0.0", 9101) == "http://127.0.0.1:9101/metrics"
    assert metrics.url("::", 9101) == "http://127.0.0.1:9101/metrics"
    assert metrics.url("::1", 9101) == "http://[::1]:9101/metrics"
    assert metrics.url("10.1.2.3", 9101) == "http://10.1.2.3:9101/metrics"


# --- identifiers of gRPC calls in the logs ---------------------------------------------------

class FakeContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError("aborted")


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged, as the services' JSON lines."""
    with logs.capture() as stream:
        yield stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return logs.records(stream)


class Servicer:
    @grpcutil.guarded
    def Call(self, request: Any, context: Any) -> str:  # noqa: N802
        logging.getLogger("servicer").info("working")
        if request.series.series_instance_uid == "9.9":
            raise InputError("no such series", reason="unknown-series")
        return "ok"


def test_guarded_calls_log_the_job_from_metadata_and_the_series(
        json_logs: io.StringIO) -> None:
    request = type("Request", (), {"series": volume_pb2.SeriesRef(
        study_instance_uid="1.2", series_instance_uid="1.2.3")})()
    assert Servicer().Call(request, FakeContext(grpcutil.job_metadata(42))) == "ok"
    request.series = volume_pb2.SeriesRef(study_instance_uid="1.2", series_instance_uid="9.9")
    context = FakeContext((("spinemets-job", "7; rm -rf"), ("other", "x")))
    with pytest.raises(RuntimeError, match="aborted"):
        Servicer().Call(request, context)
    assert context.aborted is not None
    working, other, failed = records(json_logs)
    assert (working["message"], working["job"], working["series"]) == ("working", "42", "1.2.3")
    assert other["series"] == "9.9" and "job" not in other  # a malformed job id is dropped
    assert failed["message"].startswith("Call failed") and failed["series"] == "9.9"


def test_call_identifiers_of_a_series_ref_and_of_a_stream() -> None:
    ref = volume_pb2.SeriesRef(study_instance_uid="1.2", series_instance_uid="1.2.3")
    assert grpcutil.call_identifiers(ref, FakeContext(grpcutil.job_metadata(5))) == {
        "job": "5", "series": "1.2.3"}
    assert grpcutil.call_identifiers(iter(()), FakeContext()) == {}
