"""The real tritonserver (pytriton wheel) serving a tiny ONNX network, and the segmenter on top.

Triton's answers must equal onnxruntime's run of the same file, label map for label map; a
model.json that does not match the served model is refused; the service's health follows
Triton's readiness.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import tritonclient.grpc

from segmenter.inference import segment
from segmenter.server import HealthMonitor
from segmenter.spec import ModelSpec
from segmenter.triton_client import TritonModel
from spinemets import labelmaps, labels, volumes
from spinemets.errors import ConfigError, ModelError
from spinemets.geometry import Volume
from spinemets.grpcutil import Server, channel, wait_healthy
from spinemets.ports import free_port
from spinemets.v1 import listener_pb2_grpc, segmenter_pb2, segmenter_pb2_grpc, volume_pb2
from stack.triton import TritonInstall, TritonProcess, TritonSettings, write_config

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
SERIES = volume_pb2.SeriesRef(study_instance_uid="1.2.3", series_instance_uid="1.2.3.4")


def start_triton(repo: Path, log_file: Path) -> TritonProcess:
    settings = TritonSettings(model_repository=repo, http_port=free_port(),
                              grpc_port=free_port(), metrics_port=free_port())
    try:
        TritonInstall.locate(settings.venv)
    except ConfigError as exc:
        pytest.skip(f"no embedded Triton: {exc}")
    triton = TritonProcess(settings, log_file=log_file)
    triton.start()
    try:
        triton.wait_ready(60)
    except ModelError:
        triton.stop()
        raise
    return triton


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, model_dir: Callable[..., Path]) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_config(model_dir(root))
    return root


@pytest.fixture(scope="module")
def triton(repo: Path) -> Iterator[TritonProcess]:
    process = start_triton(repo, repo.parent / "triton.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def spec(repo: Path) -> ModelSpec:
    return ModelSpec.load(repo / "vertebrae" / "model.json")


@pytest.fixture(scope="module")
def ct(volume: Callable[..., Volume]) -> Volume:
    """Two bone blocks stacked along the slice axis (axial, 1 x 1 x 1.5 mm)."""
    array = np.full((40, 48, 48), 40, dtype=np.int16)
    array[4:16, 12:36, 10:38] = 700
    array[22:36, 12:36, 10:38] = 700
    return volume(array)


def onnxruntime_predict(path: Path) -> Callable[[npt.NDArray[np.float32]], Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(["logits"], {"input": batch})[0]


def executions(triton: TritonProcess) -> tuple[int, int]:
    """Requests answered and model executions run so far by the server."""
    client = tritonclient.grpc.InferenceServerClient(triton.grpc_url)
    stats = client.get_inference_statistics("vertebrae", client_timeout=10).model_stats[0]
    client.close()
    return int(stats.inference_stats.success.count), int(stats.execution_count)


def test_triton_serves_the_model_as_model_json_describes(triton: TritonProcess,
                                                         spec: ModelSpec) -> None:
    assert triton.ready()
    model = TritonModel(triton.grpc_url, spec, timeout=10)
    assert model.ready()
    model.check()
    assert model.max_batch_size == 8
    batch = np.random.default_rng(0).normal(size=(11, 1, 16, 16, 16)).astype(np.float32)
    logits = model.predict(batch)  # 11 > max_batch_size: two requests
    assert logits.shape == (11, 3, 16, 16, 16)
    model.close()


def test_segment_through_triton_equals_onnxruntime(triton: TritonProcess, spec: ModelSpec,
                                                   repo: Path, ct: Volume) -> None:
    model = TritonModel(triton.grpc_url, spec, timeout=10)
    model.check()
    before = executions(triton)
    via_triton = segment(ct, spec, model.predict, batch_size=3, workers=4, mirror=True)
    requests, runs = (a - b for a, b in zip(executions(triton), before, strict=True))
    direct = segment(ct, spec, onnxruntime_predict(repo / "vertebrae" / "1" / "model.onnx"),
                     batch_size=3, mirror=True)
    model.close()
    assert np.array_equal(via_triton.array, direct.array)
    assert runs < requests  # the dynamic batcher grouped concurrent requests
    t1, t2 = labels.vertebra("T1").value, labels.vertebra("T2").value
    assert set(np.unique(via_triton.array)) == {0, t1, t2}
    # The upper block (higher slice index: superior) is T1.
    assert np.argwhere(via_triton.array == t1)[:, 0].min() > 16
    assert via_triton.model_name == "vertebrae" and via_triton.demo


def test_a_model_json_that_does_not_match_is_refused(triton: TritonProcess,
                                                     make_spec: Callable[..., ModelSpec]) -> None:
    wrong = make_spec(["vertebra_T1", "vertebra_T2", "vertebra_T3"])  # 4 channels, served 3
    with pytest.raises(ModelError, match=r"output 'logits' has shape \[-1, 3, 16, 16, 16\], "
                                         r"model.json implies \[-1, 4, 16, 16, 16\]") as info:
        TritonModel(triton.grpc_url, wrong, timeout=10).check()
    assert info.value.reason == "model-mismatch"
    renamed = make_spec(input={"name": "image", "datatype": "FP32"}, patch=(8, 16, 16))
    with pytest.raises(ModelError, match="no input named 'image'") as info:
        TritonModel(triton.grpc_url, renamed, timeout=10).check()
    assert "output 'logits' has shape [-1, 3, 16, 16, 16]" in str(info.value)
    absent = make_spec(name="muscles")
    with pytest.raises(ModelError, match="not ready") as info:
        TritonModel(triton.grpc_url, absent, timeout=10).check()
    assert info.value.reason == "triton-unavailable"


class VolumeService(listener_pb2_grpc.DataServiceServicer):
    """The listener's volume stream for one series (the real protocol, no listener behind)."""

    def __init__(self, ct: Volume) -> None:
        self.ct = ct

    def StreamVolume(self, request: volume_pb2.SeriesRef,  # noqa: N802
                     context: grpc.ServicerContext) -> Iterator[volume_pb2.VolumeChunk]:
        if request.series_instance_uid != SERIES.series_instance_uid:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown-series: not in the spool")
        return volumes.to_chunks(self.ct)


@pytest.fixture(scope="module")
def data_service(ct: Volume) -> Iterator[str]:
    server = Server("data", "127.0.0.1:0")
    server.add(listener_pb2_grpc.add_DataServiceServicer_to_server, VolumeService(ct))
    server.start()
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


def test_segmenter_service_streams_the_label_map(triton: TritonProcess, repo: Path,
                                                 spec: ModelSpec, ct: Volume,
                                                 data_service: str, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "SPINEMETS_CONFIG": str(REPO_ROOT / "config" / "spinemets.yaml"),
           "SPINEMETS__SEGMENTER__GRPC_HOST": "127.0.0.1",
           "SPINEMETS__SEGMENTER__GRPC_PORT": str(port),
           "SPINEMETS__SEGMENTER__METRICS_PORT": str(metrics_port),
           "SPINEMETS__SEGMENTER__TRITON_URL": triton.grpc_url,
           "SPINEMETS__SEGMENTER__MODEL_REPOSITORY": str(repo),
           "SPINEMETS__SEGMENTER__ROLES": "[vertebrae]",
           "SPINEMETS__SEGMENTER__HEALTH_INTERVAL_S": "0.2"}
    with open(tmp_path / "segmenter.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "segmenter"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        assert wait_healthy(f"127.0.0.1:{port}", timeout=30), (tmp_path / "segmenter.log"
                                                                ).read_text()
        with channel(f"127.0.0.1:{port}") as ch:
            stub = segmenter_pb2_grpc.SegmenterServiceStub(ch)  # type: ignore[no-untyped-call]
            request = segmenter_pb2.SegmentRequest(series=SERIES, data_service=data_service)
            [label_map] = labelmaps.from_chunks(stub.Segment(request, timeout=60))
            expected = segment(ct, spec, onnxruntime_predict(repo / "vertebrae/1/model.onnx"))
            assert np.array_equal(label_map.array, expected.array)
            assert label_map.geometry == ct.geometry
            assert label_map.labels == spec.label_names and label_map.demo
            for bad, code in [
                (segmenter_pb2.SegmentRequest(series=SERIES, roles=["muscles"],
                                              data_service=data_service),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (segmenter_pb2.SegmentRequest(series=volume_pb2.SeriesRef(
                    study_instance_uid="1.2.3", series_instance_uid="9.9"),
                    data_service=data_service), grpc.StatusCode.INVALID_ARGUMENT),
            ]:
                with pytest.raises(grpc.RpcError) as info:
                    list(stub.Segment(bad, timeout=60))
                assert info.value.code() == code
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as response:
            metrics = response.read().decode()
        assert 'spinemets_segmenter_stage_seconds_count{stage="segmentation"} 1.0' in metrics
        assert 'spinemets_segmenter_stage_seconds_count{stage="volume_fetch"} 1.0' in metrics
        assert 'spinemets_segmenter_triton_request_seconds_count{model="vertebrae"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_health_follows_triton(repo: Path, spec: ModelSpec, tmp_path: Path) -> None:
    triton = start_triton(repo, tmp_path / "triton.log")
    server = Server("segmenter-under-test", "127.0.0.1:0")
    model = TritonModel(triton.grpc_url, spec, timeout=5)
    monitor = HealthMonitor(server, {"vertebrae": model}, interval=60)
    server.start()
    try:
        assert monitor.poll() and wait_healthy(f"127.0.0.1:{server.port}", timeout=5)
        triton.stop()
        assert not monitor.poll()
        assert not wait_healthy(f"127.0.0.1:{server.port}", timeout=5)
        with pytest.raises(ModelError) as info:
            model.predict(np.zeros((1, 1, 16, 16, 16), np.float32))
        assert info.value.reason == "triton-unavailable"
    finally:
        triton.stop()
        server.stop(0)
        model.close()
