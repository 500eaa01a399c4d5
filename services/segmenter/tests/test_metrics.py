"""The segmenter's metrics without a Triton server: the client's inference call is faked
(numpy), everything above it is real (sliding window, the gRPC service, the volume stream)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from tritonclient.utils import InferenceServerException

from segmenter.metrics import SegmenterMetrics
from segmenter.server import SegmenterService
from segmenter.settings import Settings
from segmenter.spec import ModelSpec
from segmenter.triton_client import TritonModel
from spinemets import grpcutil, labelmaps, logs, volumes
from spinemets.errors import ModelError
from spinemets.geometry import Volume
from spinemets.v1 import listener_pb2_grpc, segmenter_pb2, segmenter_pb2_grpc, volume_pb2

SERIES = volume_pb2.SeriesRef(study_instance_uid="1.2.3", series_instance_uid="1.2.3.4")


class Result:
    def __init__(self, logits: npt.NDArray[np.float32] | None) -> None:
        self.logits = logits

    def as_numpy(self, name: str) -> npt.NDArray[np.float32] | None:
        return self.logits


class FakeClient:
    """Answers like Triton with the tiny test network's idea: channel 1 where the input is
    bright; can fail, answer without output, or take ``delay_s`` per request."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.failures: list[InferenceServerException] = []
        self.no_output = False
        self.delay_s = 0.0
        self.requests = 0

    def infer(self, model_name: str, inputs: list[Any], **kwargs: Any) -> Result:
        self.requests += 1
        time.sleep(self.delay_s)
        if self.failures:
            raise self.failures.pop(0)
        shape = [int(n) for n in inputs[0].shape()]
        batch = np.frombuffer(inputs[0]._get_content(), dtype=np.float32).reshape(shape)
        logits = np.full((shape[0], self.channels, *shape[2:]), -6.0, dtype=np.float32)
        logits[:, 0] = 0.0
        logits[:, 1] = batch[:, 0] - 1.0
        return Result(None if self.no_output else logits)

    def close(self) -> None:
        pass


def fake_model(spec: ModelSpec, metrics: SegmenterMetrics, max_batch: int = 2
               ) -> tuple[TritonModel, FakeClient]:
    model = TritonModel("127.0.0.1:1", spec, timeout=5, metrics=metrics)
    client = FakeClient(spec.num_channels)
    model._client = client  # type: ignore[assignment]
    model.max_batch_size = max_batch
    return model, client


def test_triton_requests_patches_and_errors_are_counted(
        make_spec: Callable[..., ModelSpec]) -> None:
    metrics = SegmenterMetrics()
    model, client = fake_model(make_spec(), metrics)
    assert metrics.value("triton_request_seconds_count", model="vertebrae") == 0  # exported
    batch = np.zeros((5, 1, 16, 16, 16), dtype=np.float32)
    assert model.predict(batch).shape == (5, 3, 16, 16, 16)  # max batch 2: three requests
    assert metrics.value("triton_request_seconds_count", model="vertebrae") == 3
    assert metrics.value("patches_total", model="vertebrae") == 5
    client.failures.append(InferenceServerException("down", status="StatusCode.UNAVAILABLE"))
    with pytest.raises(ModelError):
        model.predict(batch[:1])
    client.no_output = True
    with pytest.raises(ModelError):
        model.predict(batch[:1])
    assert metrics.value("triton_request_seconds_count", model="vertebrae") == 5
    assert metrics.value("triton_errors_total", model="vertebrae",
                         reason="triton-unavailable") == 1
    assert metrics.value("triton_errors_total", model="vertebrae", reason="bad-model-output") == 1
    assert metrics.value("patches_total", model="vertebrae") == 5


class VolumeService(listener_pb2_grpc.DataServiceServicer):
    def __init__(self, ct: Volume) -> None:
        self.ct = ct

    def StreamVolume(self, request: volume_pb2.SeriesRef,  # noqa: N802
                     context: grpc.ServicerContext) -> Iterator[volume_pb2.VolumeChunk]:
        return volumes.to_chunks(self.ct)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    with logs.capture("segmenter") as stream:
        yield stream


@contextmanager
def serving(ct: Volume, service: SegmenterService
            ) -> Iterator[tuple[Any, segmenter_pb2.SegmentRequest]]:
    """``service`` on a real gRPC server, with a data service streaming ``ct``: its stub and
    a request for the series."""
    data = grpcutil.Server("data", "127.0.0.1:0")
    data.add(listener_pb2_grpc.add_DataServiceServicer_to_server, VolumeService(ct))
    data.start()
    server = grpcutil.Server("segmenter", "127.0.0.1:0")
    server.add(segmenter_pb2_grpc.add_SegmenterServiceServicer_to_server, service)
    server.start()
    try:
        with grpcutil.channel(f"127.0.0.1:{server.port}") as channel:
            stub = segmenter_pb2_grpc.SegmenterServiceStub(channel)  # type: ignore[no-untyped-call]
            yield stub, segmenter_pb2.SegmentRequest(series=SERIES,
                                                     data_service=f"127.0.0.1:{data.port}")
    finally:
        server.stop(0)
        data.stop(0)


def test_segment_call_is_timed_by_stage_and_logs_its_job(
        make_spec: Callable[..., ModelSpec], volume: Callable[..., Volume],
        json_logs: io.StringIO) -> None:
    array = np.full((20, 24, 24), 40, dtype=np.int16)
    array[4:16, 6:18, 6:18] = 700
    ct = volume(array)
    metrics = SegmenterMetrics()
    spec = make_spec()
    model, client = fake_model(spec, metrics)
    service = SegmenterService(Settings(roles=("vertebrae",)), {"vertebrae": model}, metrics)
    with serving(ct, service) as (stub, request):
        [label_map] = labelmaps.from_chunks(stub.Segment(
            request, timeout=60, metadata=grpcutil.job_metadata(31)))
        with pytest.raises(grpc.RpcError):
            list(stub.Segment(segmenter_pb2.SegmentRequest(series=SERIES, roles=["x"]),
                              timeout=60))
    assert label_map.geometry == ct.geometry and label_map.array.any()
    assert metrics.value("stage_seconds_count", stage="volume_fetch") == 1
    assert metrics.value("stage_seconds_count", stage="segmentation") == 1  # not the bad call
    assert metrics.value("triton_request_seconds_count", model="vertebrae") == client.requests
    assert client.requests >= 1
    assert metrics.value("patches_total", model="vertebrae") >= client.requests
    segmented = [r for r in logs.records(json_logs) if r["message"] == "segmented"]
    assert [(r["job"], r["series"], r["model"]) for r in segmented] == [
        ("31", "1.2.3.4", "vertebrae")]


def test_a_call_whose_caller_went_away_stops_segmenting(
        make_spec: Callable[..., ModelSpec], volume: Callable[..., Volume],
        json_logs: io.StringIO) -> None:
    """A caller past its deadline (or killed) gets nothing; the segmenter stops at the next
    batch instead of finishing work that would compete with the caller's retry."""
    ct = volume(np.full((80, 64, 64), 700, dtype=np.int16))
    model, client = fake_model(make_spec(), SegmenterMetrics(), max_batch=1)
    client.delay_s = 0.3
    service = SegmenterService(Settings(roles=("vertebrae",), batch_size=1), {"vertebrae": model})
    with serving(ct, service) as (stub, request):
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Segment(request, timeout=1.0))
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 30
        while not any(r["message"] == "Segment failed: the caller went away; segmentation "
                      "stopped" for r in logs.records(json_logs)):
            assert time.monotonic() < deadline, "the segmenter went on after the deadline"
            time.sleep(0.1)
    # 120 x 64 x 64 mm at 2 mm, 16^3 patches at step 8: 7 x 3 x 3 = 63 requests of 0.3 s.
    assert 0 < client.requests < 15
