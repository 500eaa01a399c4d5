"""DataService: serves spooled series to the other services (no shared file system needed).

Instances are streamed as the Part 10 files received, byte for byte; the volume comes from the
cache beside the spool, assembled on demand (and cached) if missing; label maps are those the
segmentation of the series' latest job saved (a superseded job's are out of date). Series
information carries the patient only as the keyed pseudonym.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from listener import volume_cache
from listener.db import SUPERSEDED, Database, JobState, Series, SeriesState
from listener.spool import Spool, check_uid, publish
from spinemets import labelmaps, volumes
from spinemets.geometry import Volume, assemble_ct
from spinemets.grpcutil import CHUNK_BYTES, guarded
from spinemets.v1 import listener_pb2, listener_pb2_grpc, volume_pb2


def instance_chunks(paths: list[Path]) -> Iterator[listener_pb2.InstanceChunk]:
    """Each file in chunks; the first names the instance, the last has ``last`` set."""
    for path in paths:
        data = path.read_bytes()
        for start in range(0, max(len(data), 1), CHUNK_BYTES):
            yield listener_pb2.InstanceChunk(
                sop_instance_uid=path.stem if start == 0 else "",
                data=data[start:start + CHUNK_BYTES], last=start + CHUNK_BYTES >= len(data))


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
            return volume_cache.load(path)
        paths = self.spool.instance_paths(series.study_uid, series.series_uid)
        volume = assemble_ct(volume_cache.read_datasets(paths))
        staged = volume_cache.stage(volume, path)
        try:
            with self.spool.lock:
                current = self.db.series(series.series_uid)
                if (current is not None and current.last_received == series.last_received
                        and current.state != SeriesState.RECEIVING):
                    publish(staged, path)
        finally:
            staged.unlink(missing_ok=True)
        return volume

    def label_map_paths(self, series: Series) -> list[Path]:
        """The label maps saved by the series' latest job that has them, unless superseded."""
        for job in reversed(self.db.jobs(series.series_uid)):
            if job.state == JobState.FAILED and (job.reason or "").startswith(SUPERSEDED):
                continue
            paths = self.spool.label_map_paths(job.id)
            if paths:
                return paths
        return []

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
        return volumes.to_chunks(self.volume(self._series(request)))

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

    @guarded
    def StreamLabelMaps(self, request: volume_pb2.SeriesRef,  # noqa: N802
                        context: grpc.ServicerContext) -> Iterator[volume_pb2.LabelMapChunk]:
        series = self._series(request)
        paths = self.label_map_paths(series)
        if not paths:
            raise FileNotFoundError(f"series {series.series_uid} has no saved label maps")
        return (chunk for path in paths for chunk in labelmaps.to_chunks(labelmaps.load(path)))
