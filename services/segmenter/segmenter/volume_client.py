"""Fetching a series' CT volume from the listener's data service (``DataService.StreamVolume``)."""

from __future__ import annotations

import grpc

from spinemets import volumes
from spinemets.errors import InputError, SpineMetsError
from spinemets.geometry import Volume
from spinemets.grpcutil import channel, error_reason, is_permanent
from spinemets.v1 import listener_pb2_grpc, volume_pb2


def fetch_volume(address: str, series: volume_pb2.SeriesRef, timeout: float) -> Volume:
    """The assembled HU volume of ``series``, streamed within ``timeout`` seconds.

    A series the data service refuses or does not have is an :class:`InputError` carrying the
    service's reason (permanent); any other failure is a retryable :class:`SpineMetsError`.
    """
    with channel(address) as ch:
        stub = listener_pb2_grpc.DataServiceStub(ch)  # type: ignore[no-untyped-call]
        try:
            return volumes.from_chunks(stub.StreamVolume(series, timeout=timeout))
        except grpc.RpcError as exc:
            if is_permanent(exc):
                raise InputError(f"data service at {address}: {exc.details()}",
                                 reason=error_reason(exc)) from None
            raise SpineMetsError(f"data service at {address} failed: {exc.code().name} "
                                 f"{exc.details()}", reason="data-service-unavailable") from None
