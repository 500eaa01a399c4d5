"""DataService: serves spooled series to the other services (no shared file system needed).

Instances are streamed as the Part 10 files received, byte for byte; the volume comes from the
cache beside the spool, assembled on demand (and cached) if missing. Series information carries
the patient only as the keyed pseudonym.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
from spinemets.geometry import Volume, assemble_ct
from spinemets.grpcutil import CHUNK_BYTES, array_chunks, geometry_to_proto, guarded
from spinemets.v1 import listener_pb2, listener_pb2_grpc, volume_pb2

from listener import volumes
from listener.db import Database, Series, SeriesState
from listener.spool import Spool, check_uid, publish


def instance_chunks(paths: list[Path]) -> Iterator[listener_pb2.InstanceChunk]:
    """Each file in chunks; the first names the instance, the last has ``last`` set."""
    for path in paths:
        data = path.read_bytes()
        for start in range(0, max(len(data), 1), CHUNK_BYTES):
            yield listener_pb2.InstanceChunk(
                sop_instance_uid=path.stem if start == 0 else "",
                data=data[start:start + CHUNK_BYTES], last=start + CHUNK_BYTES >= len(data))


def volume_chunks(volume: Volume) -> Iterator[volume_pb2.VolumeChunk]:
    """The volume header on the first chunk, then the int16 voxels in C order."""
    header = volume_pb2.VolumeHeader(
        geometry=geometry_to_proto(volume.geometry),
        dtype=volume.array.dtype.newbyteorder("<").str,
        slice_instance_uids=list(volume.slice_instance_uids),
        sop_class_uid=volume.sop_class_uid)
    for n, data in enumerate(array_chunks(volume.array)):
        yield volume_pb2.VolumeChunk(header=header if n == 0 else None, data=data)


class DataService(listener_pb2_grpc.DataServiceServicer):
    """The gRPC servicer over the spool and the series table."""

    def __init__(self, db: Database, spool: Spool) -> None:
        self.db, self.spool = db, spool

    def _series(self, ref: volume_pb2.SeriesRef) -> Series:
        check_uid(ref.study_instance_uid, "Study Instance UID")
        series = self.db.series(check_uid(ref.series_instance_uid, "Series Instance UID"))
        if (series is None or series.study_uid != ref.study_instance_uid
                or series.state == SeriesState.QUARANTINED):
            raise KeyError(f"series {ref.series_instance_uid} is not in the spool")
        return series

    def volume(self, series: Series) -> Volume:
        """The cached volume, or assemble it now and cache it if the series did not change."""
        path = self.spool.volume_path(series.study_uid, series.series_uid)
        if path.exists():
            return volumes.load(path)
        paths = self.spool.instance_paths(series.study_uid, series.series_uid)
        volume = assemble_ct(volumes.read_datasets(paths))
        staged = volumes.stage(volume, path)
        try:
            with self.spool.lock:
                current = self.db.series(series.series_uid)
                if (current is not None and current.last_received == series.last_received
                        and current.state != SeriesState.RECEIVING):
                    publish(staged, path)
        finally:
            staged.unlink(missing_ok=True)
        return volume

    @guarded
    def StreamInstances(self, request: volume_pb2.SeriesRef,  # noqa: N802
                        context: grpc.ServicerContext) -> Iterator[listener_pb2.InstanceChunk]:
        series = self._series(request)
        paths = self.spool.instance_paths(series.study_uid, series.series_uid)
        if not paths:
            raise FileNotFoundError(f"series {series.series_uid} has no instances in the spool")
        return instance_chunks(paths)

    @guarded
    def StreamVolume(self, request: volume_pb2.SeriesRef,  # noqa: N802
                     context: grpc.ServicerContext) -> Iterator[volume_pb2.VolumeChunk]:
        return volume_chunks(self.volume(self._series(request)))

    @guarded
    def GetSeriesInfo(self, request: volume_pb2.SeriesRef,  # noqa: N802
                      context: grpc.ServicerContext) -> listener_pb2.SeriesInfo:
        series = self._series(request)
        return listener_pb2.SeriesInfo(
            series=volume_pb2.SeriesRef(study_instance_uid=series.study_uid,
                                        series_instance_uid=series.series_uid),
            patient_key=series.patient_key, modality=series.modality,
            study_date=series.study_date, study_time=series.study_time,
            series_description=series.description,
            number_of_instances=series.instance_count, sop_class_uid=series.sop_class_uid)
