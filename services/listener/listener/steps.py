"""The pipeline steps of a job, one downstream call each: Segment, Pair, Assess, Deliver.

Each step reads what earlier steps left (label maps in the job directory, the prior in the job
row) and returns what the runner commits. gRPC errors propagate; the runner classifies them.
(Finding a prior in the PACS when the registrar has none: :mod:`listener.pairing`.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
from google.protobuf import json_format

from listener.db import Job, JobPurpose, Prior, Series
from listener.settings import Settings
from listener.spool import LABEL_MAP_GLOB
from spinemets import grpcutil, labelmaps, logs
from spinemets.dimse import stored
from spinemets.errors import DeliveryError, SpineMetsError
from spinemets.v1 import (
    registrar_pb2,
    registrar_pb2_grpc,
    risk_pb2,
    risk_pb2_grpc,
    segmenter_pb2,
    segmenter_pb2_grpc,
    volume_pb2,
)

ASSESSMENT_FILE = "assessment.json"
DELIVERIES_FILE = "deliveries.json"
#: The registrar's comparison of the study with its prior (``Longitudinal``, JSON).
LONGITUDINAL_FILE = "longitudinal.json"

log = logging.getLogger(__name__)


class Peers:
    """Stubs of the downstream services, the deadlines, and our own data-service address."""

    def __init__(self, settings: Settings, data_service: str) -> None:
        self._channels = [grpcutil.channel(a)
                          for a in (settings.segmenter, settings.registrar, settings.risk)]
        self.segmenter = segmenter_pb2_grpc.SegmenterServiceStub(self._channels[0])  # type: ignore[no-untyped-call]
        self.registrar = registrar_pb2_grpc.RegistrarServiceStub(self._channels[1])  # type: ignore[no-untyped-call]
        self.risk = risk_pb2_grpc.RiskServiceStub(self._channels[2])  # type: ignore[no-untyped-call]
        self.timeouts = settings.timeouts
        self.data_service = data_service

    def close(self) -> None:
        for ch in self._channels:
            ch.close()


def series_ref(job: Job) -> volume_pb2.SeriesRef:
    return volume_pb2.SeriesRef(study_instance_uid=job.study_uid,
                                series_instance_uid=job.series_uid)


def segment(peers: Peers, job: Job, job_dir: Path) -> int:
    """Segment the series; the label maps are saved into the job directory. Returns their count."""
    request = segmenter_pb2.SegmentRequest(series=series_ref(job), roles=list(job.roles),
                                           data_service=peers.data_service)
    maps = labelmaps.from_chunks(peers.segmenter.Segment(
        request, timeout=peers.timeouts.segment_s, metadata=grpcutil.job_metadata(job.id)))
    if not maps:
        raise SpineMetsError("the segmenter returned no label map", reason="no-label-maps")
    for old in job_dir.glob(LABEL_MAP_GLOB):
        old.unlink()
    for n, label_map in enumerate(maps):
        labelmaps.save(label_map, job_dir / f"labelmap-{n:02d}.npz")
    return len(maps)


def pair(peers: Peers, job: Job, series: Series, job_dir: Path) -> Prior | None:
    """Record the study at the registrar and learn its prior study from its history, if any.

    A study to report is compared with its prior by the registrar (over our data service): the
    comparison is kept as ``longitudinal.json``; when it could not be made, the pairing stands
    and the reason is logged.
    """
    report = job.purpose != JobPurpose.PRIOR
    reply = peers.registrar.Pair(
        registrar_pb2.PairRequest(series=series_ref(job), patient_key=series.patient_key,
                                  study_date=series.study_date, study_time=series.study_time,
                                  data_service=peers.data_service if report else "",
                                  study_description=series.study_description,
                                  series_description=series.description),
        timeout=peers.timeouts.pair_s, metadata=grpcutil.job_metadata(job.id))
    kept = job_dir / LONGITUDINAL_FILE
    kept.unlink(missing_ok=True)
    if reply.HasField("longitudinal"):
        kept.write_text(json_format.MessageToJson(reply.longitudinal))
    elif reply.registration_problem:
        log.warning("no comparison with the prior", extra=logs.fields(
            problem=reply.registration_problem))
    if not reply.has_prior:
        return None
    return Prior(reply.prior.study_instance_uid, reply.prior.series_instance_uid,
                 reply.prior_study_date)


def _assess_stream(peers: Peers, job: Job, job_dir: Path, paths: list[Path]
                   ) -> Iterator[risk_pb2.AssessChunk]:
    header = risk_pb2.AssessHeader(series=series_ref(job), data_service=peers.data_service,
                                   has_prior=bool(job.has_prior), label_map_count=len(paths))
    if job.prior is not None:
        header.prior.CopyFrom(volume_pb2.SeriesRef(study_instance_uid=job.prior.study_uid,
                                                   series_instance_uid=job.prior.series_uid))
        if (job_dir / LONGITUDINAL_FILE).exists():
            json_format.Parse((job_dir / LONGITUDINAL_FILE).read_text(), header.longitudinal)
    yield risk_pb2.AssessChunk(header=header)
    for path in paths:
        for chunk in labelmaps.to_chunks(labelmaps.load(path)):
            yield risk_pb2.AssessChunk(label_map=chunk)


def assess(peers: Peers, job: Job, job_dir: Path) -> risk_pb2.AssessResponse:
    """Send the label maps (and the comparison with the prior, if any) to the risk service;
    its answer is kept as ``assessment.json``."""
    paths = sorted(job_dir.glob(LABEL_MAP_GLOB))
    if not paths:
        raise SpineMetsError("no label maps in the job directory", reason="no-label-maps")
    reply: risk_pb2.AssessResponse = peers.risk.Assess(
        _assess_stream(peers, job, job_dir, paths), timeout=peers.timeouts.assess_s,
        metadata=grpcutil.job_metadata(job.id))
    (job_dir / ASSESSMENT_FILE).write_text(json_format.MessageToJson(reply))
    return reply


def deliver(peers: Peers, job: Job, job_dir: Path) -> risk_pb2.DeliverResponse:
    """Have the risk service send the result objects (answer kept as ``deliveries.json``);
    any failed C-STORE is a retryable error."""
    reply: risk_pb2.DeliverResponse = peers.risk.Deliver(
        series_ref(job), timeout=peers.timeouts.deliver_s, metadata=grpcutil.job_metadata(job.id))
    (job_dir / DELIVERIES_FILE).write_text(json_format.MessageToJson(reply))
    failed = [d for d in reply.deliveries if not stored(d.status)]
    if failed:
        raise DeliveryError(
            "; ".join(f"{d.destination}: status 0x{d.status:04X}" for d in failed),
            reason="delivery-failed")
    return reply


def describe(error: grpc.RpcError) -> str:
    """``"<reason>: <message>"`` from a failed call (the project's convention for details)."""
    details = str(error.details() or "") if hasattr(error, "details") else str(error)
    return details if ": " in details else f"{error.code().name.lower()}: {details}"
