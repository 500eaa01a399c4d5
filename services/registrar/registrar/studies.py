"""The two studies of a pair, fetched from the listener's data service: CT and label maps."""

from __future__ import annotations

from registrar.longitudinal import Scan
from spinemets import grpcutil, labelmaps, labels, volumes
from spinemets.errors import InputError
from spinemets.v1 import listener_pb2_grpc, volume_pb2


def fetch(address: str, series: volume_pb2.SeriesRef, timeout: float | None) -> Scan:
    """The series' CT volume and its vertebra and lesion label maps (``StreamVolume``,
    ``StreamLabelMaps``); :class:`InputError` if it has no vertebra map."""
    with grpcutil.channel(address) as channel:
        stub = listener_pb2_grpc.DataServiceStub(channel)  # type: ignore[no-untyped-call]
        ct = volumes.from_chunks(stub.StreamVolume(series, timeout=timeout))
        maps = labelmaps.from_chunks(stub.StreamLabelMaps(series, timeout=timeout))
    vertebrae = labelmaps.of_group(maps, labels.Group.VERTEBRA)
    if vertebrae is None:
        raise InputError("no vertebra label map", reason="no-vertebra-map")
    return Scan(ct, vertebrae, labelmaps.of_group(maps, labels.Group.LESION))
