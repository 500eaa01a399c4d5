"""The two studies of a pair, fetched from the listener's data service: CT and label maps."""

from __future__ import annotations

from collections.abc import Sequence

from registrar.longitudinal import Scan
from spinemets import grpcutil, labelmaps, labels, volumes
from spinemets.errors import InputError
from spinemets.labelmaps import LabelMap
from spinemets.v1 import listener_pb2_grpc, volume_pb2


def _of_group(maps: Sequence[LabelMap], group: labels.Group) -> LabelMap | None:
    """The one label map naming structures of ``group``, or None."""
    found = [m for m in maps
             if any(labels.by_name(name).group is group for name in m.labels.values())]
    if len(found) > 1:
        raise InputError(f"{len(found)} label maps hold {group.value} labels; expected one",
                         reason="ambiguous-label-maps")
    return found[0] if found else None


def fetch(address: str, series: volume_pb2.SeriesRef, timeout: float | None) -> Scan:
    """The series' CT volume and its vertebra and lesion label maps (``StreamVolume``,
    ``StreamLabelMaps``); :class:`InputError` if it has no vertebra map."""
    with grpcutil.channel(address) as channel:
        stub = listener_pb2_grpc.DataServiceStub(channel)  # type: ignore[no-untyped-call]
        ct = volumes.from_chunks(stub.StreamVolume(series, timeout=timeout))
        maps = labelmaps.from_chunks(stub.StreamLabelMaps(series, timeout=timeout))
    vertebrae = _of_group(maps, labels.Group.VERTEBRA)
    if vertebrae is None:
        raise InputError("no vertebra label map", reason="no-vertebra-map")
    return Scan(ct, vertebrae, _of_group(maps, labels.Group.LESION))
