"""CT volumes on the wire: ``VolumeChunk`` streams, the counterpart of :mod:`spinemets.labelmaps`.

The listener's data service streams a series' assembled volume; every service that needs voxels
rebuilds it with :func:`from_chunks` instead of decoding DICOM.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from spinemets.errors import InputError
from spinemets.geometry import Volume
from spinemets.grpcutil import (
    array_chunks,
    array_from_chunks,
    geometry_from_proto,
    geometry_to_proto,
)
from spinemets.v1 import volume_pb2


def to_chunks(volume: Volume) -> Iterator[volume_pb2.VolumeChunk]:
    """Stream a volume: the header rides on the first chunk, then the int16 voxels in C order."""
    header = volume_pb2.VolumeHeader(
        geometry=geometry_to_proto(volume.geometry),
        dtype=volume.array.dtype.newbyteorder("<").str,
        slice_instance_uids=list(volume.slice_instance_uids),
        sop_class_uid=volume.sop_class_uid)
    for n, data in enumerate(array_chunks(volume.array)):
        yield volume_pb2.VolumeChunk(header=header if n == 0 else None, data=data)


def from_chunks(chunks: Iterable[volume_pb2.VolumeChunk]) -> Volume:
    """Rebuild a streamed volume; checks the header, the byte count and the dtype (int16 HU)."""
    header: volume_pb2.VolumeHeader | None = None
    parts: list[bytes] = []
    for chunk in chunks:
        if header is None:
            if not chunk.HasField("header"):
                raise InputError("volume stream does not start with a header",
                                 reason="bad-volume-stream")
            header = chunk.header
        parts.append(chunk.data)
    if header is None:
        raise InputError("volume stream is empty", reason="bad-volume-stream")
    if header.dtype != "<i2":
        raise InputError(f"volume dtype {header.dtype!r} is not int16 HU",
                         reason="bad-volume-stream")
    geometry = geometry_from_proto(header.geometry)
    array = array_from_chunks(parts, header.dtype, geometry)
    if len(header.slice_instance_uids) != geometry.size[2]:
        raise InputError("volume header names a source for "
                         f"{len(header.slice_instance_uids)} of {geometry.size[2]} slices",
                         reason="bad-volume-stream")
    return Volume(array, geometry, tuple(header.slice_instance_uids), header.sop_class_uid)
