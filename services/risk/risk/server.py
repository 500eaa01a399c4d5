"""gRPC transport of the risk service: RiskService (Assess, Deliver) and health."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import grpc

from risk.assess import assess
from risk.data import DataClient
from risk.delivery import deliver, send
from risk.metrics import RiskMetrics
from risk.outbox import Outbox
from risk.prior_study import PriorAssessments
from risk.response import assess_response
from risk.settings import Settings
from spinemets import grpcutil, labelmaps, logs
from spinemets.errors import InputError
from spinemets.v1 import risk_pb2, risk_pb2_grpc, volume_pb2


def _label_map_chunks(chunks: Iterator[risk_pb2.AssessChunk]
                      ) -> Iterator[volume_pb2.LabelMapChunk]:
    for chunk in chunks:
        if not chunk.HasField("label_map"):
            raise InputError("Assess stream has a second header", reason="bad-request")
        yield chunk.label_map


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    """Assess and Deliver over one outbox."""

    def __init__(self, settings: Settings, outbox: Outbox,
                 metrics: RiskMetrics | None = None) -> None:
        self.settings, self.outbox = settings, outbox
        self.metrics = metrics if metrics is not None else RiskMetrics()
        self.priors = PriorAssessments(settings)

    @grpcutil.guarded
    def Assess(self, request_iterator: Iterator[risk_pb2.AssessChunk],  # noqa: N802
               context: grpc.ServicerContext) -> risk_pb2.AssessResponse:
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            raise InputError("Assess stream must start with a header", reason="bad-request")
        header = first.header
        series = header.series
        if not (series.study_instance_uid and series.series_instance_uid and header.data_service):
            raise InputError("Assess header needs the series and the data service address",
                             reason="bad-request")
        maps = labelmaps.from_chunks(_label_map_chunks(request_iterator))
        if len(maps) != header.label_map_count:
            raise InputError(f"received {len(maps)} label maps, header announced "
                             f"{header.label_map_count}", reason="bad-request")
        prior = ((header.prior.study_instance_uid, header.prior.series_instance_uid)
                 if header.has_prior else None)
        with logs.context(series=series.series_instance_uid), self.metrics.stage("assessment"):
            data = DataClient(header.data_service, self.settings.data_timeout_s)
            result = assess(series.study_instance_uid, series.series_instance_uid,
                            data.volume(series), data.headers(series), maps, self.settings,
                            self.outbox, prior,
                            header.longitudinal if header.HasField("longitudinal") else None,
                            functools.partial(self.priors.assessment, data, header.prior))
        return assess_response(result)

    @grpcutil.guarded
    def Deliver(self, request: volume_pb2.SeriesRef,  # noqa: N802
                context: grpc.ServicerContext) -> risk_pb2.DeliverResponse:
        settings = self.settings
        sender = functools.partial(send, calling_ae=settings.ae_title,
                                   timeout=settings.dicom_timeout_s)
        with logs.context(series=request.series_instance_uid), self.metrics.stage("delivery"):
            deliveries = deliver(self.outbox, request.series_instance_uid, settings.destinations,
                                 sender, settings.delivery_attempts, settings.delivery_backoff_s,
                                 metrics=self.metrics)
        return risk_pb2.DeliverResponse(deliveries=[
            risk_pb2.Delivery(destination=d.destination, sop_instance_uid=d.sop_instance_uid,
                              status=d.status or 0)
            for d in deliveries])


def build(settings: Settings, data_dir: Path,
          metrics: RiskMetrics | None = None) -> grpcutil.Server:
    """The gRPC server with RiskService and health, not yet started."""
    server = grpcutil.Server("risk", f"{settings.grpc_host}:{settings.grpc_port}")
    server.add(risk_pb2_grpc.add_RiskServiceServicer_to_server,
               RiskServicer(settings, Outbox(settings.outbox_path(data_dir)), metrics))
    return server
