"""gRPC transport of the registrar: RegistrarService (Pair) and health."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from registrar.history import History, Study
from registrar.metrics import RegistrarMetrics
from registrar.settings import Settings
from spinemets import grpcutil, logs
from spinemets.v1 import registrar_pb2, registrar_pb2_grpc, volume_pb2

log = logging.getLogger(__name__)


class RegistrarServicer(registrar_pb2_grpc.RegistrarServiceServicer):
    """Pair over one study history."""

    def __init__(self, history: History, metrics: RegistrarMetrics | None = None) -> None:
        self.history = history
        self.metrics = metrics if metrics is not None else RegistrarMetrics()

    @grpcutil.guarded
    def Pair(self, request: registrar_pb2.PairRequest,  # noqa: N802
             context: grpc.ServicerContext) -> registrar_pb2.PairResponse:
        series = request.series
        with logs.context(series=series.series_instance_uid), self.metrics.stage("pairing"):
            prior = self.history.pair(request.patient_key, Study(
                series.study_instance_uid, series.series_instance_uid, request.study_date,
                request.study_time))
            log.info("study recorded", extra=logs.fields(has_prior=prior is not None))
        self.metrics.pairings.labels(prior="none" if prior is None else "found").inc()
        if prior is None:
            return registrar_pb2.PairResponse(has_prior=False)
        return registrar_pb2.PairResponse(
            has_prior=True, prior_study_date=prior.study_date,
            prior=volume_pb2.SeriesRef(study_instance_uid=prior.study_uid,
                                       series_instance_uid=prior.series_uid))


def build(settings: Settings, data_dir: Path, metrics: RegistrarMetrics | None = None
          ) -> tuple[grpcutil.Server, History]:
    """The gRPC server with RegistrarService and health, not yet started, and its history."""
    history = History(settings.database_path(data_dir))
    server = grpcutil.Server("registrar", f"{settings.grpc_host}:{settings.grpc_port}")
    server.add(registrar_pb2_grpc.add_RegistrarServiceServicer_to_server,
               RegistrarServicer(history, metrics))
    return server, history
