"""Pair with a data service: both studies fetched, the prior registered per vertebra onto the
follow-up and the lesion change measured, or the pairing kept with the reason it was not."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from phantom import Phantom
from phantom.followup import FollowUp
from registrar import rigid
from registrar.history import History
from registrar.longitudinal import Comparison
from registrar.metrics import RegistrarMetrics
from registrar.server import RegistrarServicer
from registrar.settings import Settings
from spinemets import grpcutil, labelmaps, logs, volumes
from spinemets.config import BaselineRule
from spinemets.ports import free_port
from spinemets.v1 import listener_pb2_grpc, registrar_pb2, registrar_pb2_grpc, volume_pb2

TRE_MM = 1.0


class PhantomData(listener_pb2_grpc.DataServiceServicer):
    """A data service over phantoms by series UID: CT and label maps (lesions optional)."""

    def __init__(self, phantoms: list[Phantom], lesions: bool) -> None:
        self.phantoms, self.lesions = {p.series_uid: p for p in phantoms}, lesions

    def _phantom(self, request: volume_pb2.SeriesRef, context: grpc.ServicerContext) -> Phantom:
        if request.series_instance_uid not in self.phantoms:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown-series: not in the spool")
        return self.phantoms[request.series_instance_uid]

    def StreamVolume(self, request: volume_pb2.SeriesRef,  # noqa: N802
                     context: grpc.ServicerContext) -> Iterator[volume_pb2.VolumeChunk]:
        return volumes.to_chunks(self._phantom(request, context).ct)

    def StreamLabelMaps(self, request: volume_pb2.SeriesRef,  # noqa: N802
                        context: grpc.ServicerContext) -> Iterator[volume_pb2.LabelMapChunk]:
        p = self._phantom(request, context)
        maps = [p.vertebrae, p.lesions] if self.lesions else [p.vertebrae]
        return (chunk for m in maps for chunk in labelmaps.to_chunks(m))


def ref(p: Phantom) -> volume_pb2.SeriesRef:
    return volume_pb2.SeriesRef(study_instance_uid=p.study_uid, series_instance_uid=p.series_uid)


def serve(register: Callable[[Any, grpc.Server], None], servicer: object) -> grpcutil.Server:
    server = grpcutil.Server("test", "127.0.0.1:0")
    server.add(register, servicer)
    server.start()
    return server


def pair_follow_up(tmp_path: Path, truth: FollowUp, metrics: RegistrarMetrics, *,
                   lesions: bool = True, reachable: bool = True) -> registrar_pb2.PairResponse:
    """Pair the baseline of ``truth``, then its follow-up, naming a phantom data service."""
    data = serve(listener_pb2_grpc.add_DataServiceServicer_to_server,
                 PhantomData([truth.baseline, truth.phantom], lesions))
    history = History(tmp_path / "history.db", BaselineRule())
    registrar = serve(registrar_pb2_grpc.add_RegistrarServiceServicer_to_server,
                      RegistrarServicer(history, Settings(), metrics))
    address = f"127.0.0.1:{data.port if reachable else free_port()}"
    try:
        with grpcutil.channel(f"127.0.0.1:{registrar.port}") as channel:
            stub = registrar_pb2_grpc.RegistrarServiceStub(channel)  # type: ignore[no-untyped-call]
            for p, date in ((truth.baseline, "20220101"), (truth.phantom, "20230101")):
                reply: registrar_pb2.PairResponse = stub.Pair(registrar_pb2.PairRequest(
                    series=ref(p), patient_key="k1", study_date=date, study_time="120000",
                    data_service=address), timeout=600)
    finally:
        registrar.stop(grace=1)
        data.stop(grace=1)
        history.close()
    return reply


def test_pair_returns_every_vertebra_registered_within_1_mm_and_the_lesion_change(
        tmp_path: Path, lumbar: tuple[FollowUp, Comparison]) -> None:
    truth, direct = lumbar
    metrics = RegistrarMetrics()
    with logs.capture("registrar") as captured:
        reply = pair_follow_up(tmp_path, truth, metrics)
    assert reply.has_prior and not reply.registration_problem
    found = reply.longitudinal
    assert found.prior == ref(truth.baseline) and found.prior_study_date == "20220101"
    assert [v.level for v in found.registrations] == [
        v.level for v in direct.registration.vertebrae]
    for v in found.registrations:
        level = truth.truth["levels"][v.level]
        corners = np.asarray(level["body_corners_lps"])
        moved = rigid.apply(np.asarray(v.prior_to_current).reshape(4, 4), corners)
        exact = rigid.apply(np.asarray(level["baseline_to_follow_up"]), corners)
        assert np.linalg.norm(moved - exact, axis=1).max() <= TRE_MM, v.level
        assert not v.failed and v.dice > 0.9 and v.hd95_mm <= 2.5, v
    assert {s.level: s.reason for s in found.skipped} == {
        s.level: s.reason for s in direct.registration.skipped}
    assert not found.changes_omitted
    assert [(c.level, c.prior_ml, c.current_ml) for c in found.changes] == pytest.approx(
        [(c.level, c.prior_ml, c.current_ml) for c in direct.changes])
    statuses = [lesion.status for c in direct.changes for lesion in c.lesions]
    assert sum(c.new_lesions for c in found.changes) == statuses.count("new") > 0
    assert sum(c.resolved_lesions for c in found.changes) == statuses.count("resolved") > 0
    for c in found.changes:
        assert c.change_ml == pytest.approx(c.current_ml - c.prior_ml)
        assert c.HasField("change_percent") == (c.prior_ml > 0)
    assert metrics.value("stage_seconds_count", stage="registration") == 1
    assert metrics.value("registrations_total", outcome="done") == 1
    assert [r for r in logs.records(captured) if r["message"] == "prior compared"]
    assert "k1" not in captured.getvalue()


def test_without_lesion_maps_the_change_is_omitted_with_the_reason(
        tmp_path: Path, lumbar: tuple[FollowUp, Comparison]) -> None:
    reply = pair_follow_up(tmp_path, lumbar[0], RegistrarMetrics(), lesions=False)
    assert reply.longitudinal.registrations and not reply.longitudinal.changes
    assert reply.longitudinal.changes_omitted == "no lesion label map in the prior study"


def test_an_unreachable_data_service_leaves_the_pairing_with_the_problem(
        tmp_path: Path, lumbar: tuple[FollowUp, Comparison]) -> None:
    metrics = RegistrarMetrics()
    reply = pair_follow_up(tmp_path, lumbar[0], metrics, reachable=False)
    assert reply.has_prior and reply.prior == ref(lumbar[0].baseline)
    assert not reply.HasField("longitudinal")
    assert reply.registration_problem.startswith("fetching the studies failed: unavailable")
    assert metrics.value("registrations_total", outcome="failed") == 1
    assert metrics.value("stage_seconds_count", stage="registration") == 0
