"""Client of the listener's data service: the CT volume, the instance headers and the label maps
of a series."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import TypeVar

import grpc
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from spinemets import labelmaps, volumes
from spinemets.errors import InputError, SpineMetsError
from spinemets.geometry import Volume
from spinemets.grpcutil import channel, error_reason, is_permanent
from spinemets.labelmaps import LabelMap
from spinemets.v1 import listener_pb2, listener_pb2_grpc, volume_pb2

T = TypeVar("T")


def headers_from_chunks(chunks: Iterable[listener_pb2.InstanceChunk]) -> list[Dataset]:
    """Read streamed Part 10 files, without their pixel data (the writers need headers only)."""
    datasets: list[Dataset] = []
    current: list[bytes] = []
    uid = ""
    for chunk in chunks:
        if chunk.sop_instance_uid:
            uid, current = chunk.sop_instance_uid, []
        current.append(chunk.data)
        if chunk.last:
            try:
                datasets.append(dcmread(io.BytesIO(b"".join(current)), stop_before_pixels=True))
            except (InvalidDicomError, ValueError, EOFError) as exc:
                raise InputError(f"instance {uid} is not a readable DICOM file: {exc}",
                                 reason="bad-instance") from None
            current = []
    if current:
        raise InputError(f"instance stream ended inside instance {uid}",
                         reason="truncated-stream")
    return datasets


class DataClient:
    """Calls to one listener data service, each with a deadline."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    def volume(self, series: volume_pb2.SeriesRef) -> Volume:
        with channel(self.address) as ch:
            stub = listener_pb2_grpc.DataServiceStub(ch)  # type: ignore[no-untyped-call]
            return _call(lambda: volumes.from_chunks(
                stub.StreamVolume(series, timeout=self.timeout)))

    def headers(self, series: volume_pb2.SeriesRef) -> list[Dataset]:
        with channel(self.address) as ch:
            stub = listener_pb2_grpc.DataServiceStub(ch)  # type: ignore[no-untyped-call]
            return _call(lambda: headers_from_chunks(
                stub.StreamInstances(series, timeout=self.timeout)))

    def label_maps(self, series: volume_pb2.SeriesRef) -> list[LabelMap]:
        with channel(self.address) as ch:
            stub = listener_pb2_grpc.DataServiceStub(ch)  # type: ignore[no-untyped-call]
            return _call(lambda: labelmaps.from_chunks(
                stub.StreamLabelMaps(series, timeout=self.timeout)))


def _call(fetch: Callable[[], T]) -> T:
    """Run a streaming call; failures become project errors (permanent ones: InputError)."""
    try:
        return fetch()
    except grpc.RpcError as exc:
        if is_permanent(exc):
            raise InputError(f"data service: {exc.details()}",
                             reason=error_reason(exc)) from None
        raise SpineMetsError(f"data service unavailable: {exc.code().name} {exc.details()}",
                             reason="data-service") from None
