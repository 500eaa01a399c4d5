"""gRPC transport of the registrar: RegistrarService (Pair) and health.

Pair records the study and finds its prior; when there is one and the request names the
listener's data service, both studies' CT and label maps are fetched from it and compared
(:func:`registrar.longitudinal.compare`). A comparison that cannot be made leaves the pairing
intact: the reply then says why in ``registration_problem``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from registrar import messages, studies
from registrar.history import History, Study
from registrar.longitudinal import compare
from registrar.metrics import RegistrarMetrics
from registrar.settings import Settings
from spinemets import grpcutil, logs
from spinemets.config import BaselineRule
from spinemets.v1 import longitudinal_pb2, registrar_pb2, registrar_pb2_grpc, volume_pb2

log = logging.getLogger(__name__)


class RegistrarServicer(registrar_pb2_grpc.RegistrarServiceServicer):
    """Pair over one study history."""

    def __init__(self, history: History, settings: Settings,
                 metrics: RegistrarMetrics | None = None) -> None:
        self.history, self.settings = history, settings
        self.metrics = metrics if metrics is not None else RegistrarMetrics()

    @grpcutil.guarded
    def Pair(self, request: registrar_pb2.PairRequest,  # noqa: N802
             context: grpc.ServicerContext) -> registrar_pb2.PairResponse:
        series = request.series
        with logs.context(series=series.series_instance_uid):
            with self.metrics.stage("pairing"):
                prior = self.history.pair(request.patient_key, Study(
                    series.study_instance_uid, series.series_instance_uid, request.study_date,
                    request.study_time, request.study_description,
                    request.series_description))
                log.info("study recorded", extra=logs.fields(has_prior=prior is not None))
            self.metrics.pairings.labels(prior="none" if prior is None else "found").inc()
            if prior is None:
                return registrar_pb2.PairResponse(has_prior=False)
            prior_ref = volume_pb2.SeriesRef(study_instance_uid=prior.study_uid,
                                             series_instance_uid=prior.series_uid)
            reply = registrar_pb2.PairResponse(has_prior=True, prior=prior_ref,
                                               prior_study_date=prior.study_date)
            if request.data_service:
                self._compare(request, prior_ref, reply, context.time_remaining())
        return reply

    def _compare(self, request: registrar_pb2.PairRequest, prior: volume_pb2.SeriesRef,
                 reply: registrar_pb2.PairResponse, timeout: float | None) -> None:
        """Fill ``reply.longitudinal``, or ``reply.registration_problem`` if that fails."""
        try:
            with self.metrics.stage("registration"):
                reply.longitudinal.CopyFrom(self._longitudinal(request, prior,
                                                               reply.prior_study_date, timeout))
        except grpc.RpcError as exc:
            reply.registration_problem = (f"fetching the studies failed: "
                                          f"{exc.code().name.lower()}: {exc.details()}")
        except Exception as exc:  # the pairing stands without its comparison
            reason = getattr(exc, "reason", type(exc).__name__)
            reply.registration_problem = f"registration failed: {reason}: {exc}"
        if reply.registration_problem:
            self.metrics.registrations.labels(outcome="failed").inc()
            log.warning("no comparison with the prior", extra=logs.fields(
                problem=reply.registration_problem))
            return
        found = reply.longitudinal
        self.metrics.registrations.labels(outcome="done").inc()
        log.info("prior compared", extra=logs.fields(
            registered=len(found.registrations), skipped=len(found.skipped),
            failed=sum(v.failed for v in found.registrations), changes=len(found.changes)))

    def _longitudinal(self, request: registrar_pb2.PairRequest, prior: volume_pb2.SeriesRef,
                      prior_study_date: str, timeout: float | None
                      ) -> longitudinal_pb2.Longitudinal:
        before = studies.fetch(request.data_service, prior, timeout)
        now = studies.fetch(request.data_service, request.series, timeout)
        comparison = compare(before, now, self.settings.registration, self.settings.change)
        assert comparison is not None  # there is a prior
        omitted = ("" if before.lesions is not None and now.lesions is not None
                   else "no lesion label map in the "
                   + ("prior study" if before.lesions is None else "current study"))
        return messages.longitudinal(prior, prior_study_date, comparison, omitted)


def build(settings: Settings, data_dir: Path, rule: BaselineRule,
          metrics: RegistrarMetrics | None = None) -> tuple[grpcutil.Server, History]:
    """The gRPC server with RegistrarService and health, not yet started, and its history
    (choosing priors by ``rule``)."""
    history = History(settings.database_path(data_dir), rule)
    server = grpcutil.Server("registrar", f"{settings.grpc_host}:{settings.grpc_port}")
    server.add(registrar_pb2_grpc.add_RegistrarServiceServicer_to_server,
               RegistrarServicer(history, settings, metrics))
    return server, history
