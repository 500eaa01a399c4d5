"""The risk service assesses a follow-up's prior from the listener's data service (a real one,
over a spool holding both studies) and reports the change since it; a prior it cannot assess
leaves the change missing and holds back nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from listener.data_service import DataService
from listener.db import Database
from listener.intake import header_of, receive
from listener.spool import Spool
from phantom import Phantom, PhantomOptions, generate, write_dicom_series
from phantom.followup import FollowUp, follow_up
from phantom.options import FollowUpOptions
from risk.data import DataClient
from risk.metrics import RiskMetrics
from risk.prior_study import PriorAssessments
from risk.server import build
from risk.settings import Settings
from spinemets import grpcutil, labelmaps
from spinemets.errors import InputError
from spinemets.labelmaps import LabelMap
from spinemets.v1 import listener_pb2_grpc, longitudinal_pb2, risk_pb2, risk_pb2_grpc, volume_pb2


@pytest.fixture(scope="module")
def pair() -> FollowUp:
    """L1-L3 at 1.5 mm; the follow-up has a new fracture of L2 (seeds of these tests only)."""
    return follow_up(generate(PhantomOptions(seed=4_300_020, levels=("L1", "L3"),
                                             spacing=(1.5, 1.5, 1.5), matrix=110,
                                             max_rotation_deg=5)),
                     FollowUpOptions(seed=1, new_lesions=0, resolved=0, compression="L2",
                                     compression_fraction=0.3))


def ref(p: Phantom) -> volume_pb2.SeriesRef:
    return volume_pb2.SeriesRef(study_instance_uid=p.study_uid, series_instance_uid=p.series_uid)


@dataclass
class Listener:
    """The listener's spool, job table and data service, with studies received as DICOM."""

    spool: Spool
    db: Database
    server: grpcutil.Server

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def receive(self, p: Phantom, folder: Path, study_date: str) -> None:
        for path in write_dicom_series(p, folder, patient_id="CHANGE-1",
                                       patient_name="Change^Test", study_date=study_date,
                                       patient_weight_kg=70.0, patient_size_m=1.75):
            receive(self.spool, self.db, header_of(dcmread(path), ExplicitVRLittleEndian,
                                                   "TEST", b"secret-key"), path.read_bytes())
        series = self.db.series(p.series_uid)
        assert series is not None and self.db.mark_complete(series)

    def segmented(self, p: Phantom, maps: list[LabelMap]) -> None:
        """The series' job saved ``maps``; a job already there saves them anew, as a repeated
        Segment step does."""
        series = self.db.series(p.series_uid)
        assert series is not None
        jobs = self.db.jobs(p.series_uid)
        job = jobs[-1].id if jobs else self.db.create_job(series, "ct-spine", ("vertebrae",),
                                                          time.time())[0]
        for old in self.spool.label_map_paths(job):
            old.unlink()
        for n, m in enumerate(maps):
            labelmaps.save(m, self.spool.job_dir(job) / f"labelmap-{n:02d}.npz")


@pytest.fixture
def listener(tmp_path: Path, pair: FollowUp) -> Iterator[Listener]:
    spool = Spool(tmp_path / "state")
    db = Database(tmp_path / "listener.sqlite")
    server = grpcutil.Server("data", "127.0.0.1:0")
    server.add(listener_pb2_grpc.add_DataServiceServicer_to_server, DataService(db, spool))
    server.start()
    found = Listener(spool, db, server)
    for p, date in ((pair.baseline, "20240101"), (pair.phantom, "20240701")):
        found.receive(p, tmp_path / p.series_uid, date)
        found.segmented(p, [p.vertebrae, p.muscles])
    yield found
    server.stop(grace=1)
    db.close()


def test_the_prior_is_assessed_once_and_again_when_its_label_maps_change(
        listener: Listener, pair: FollowUp) -> None:
    priors = PriorAssessments(Settings())
    data = DataClient(listener.address, 60)
    first = priors.assessment(data, ref(pair.baseline))
    assert {"L1", "L2", "L3"} <= {v.level for v in first.vertebrae}
    assert first.has_muscle_segmentation and first.body.mass_kg == 70.0  # from the headers
    assert priors.assessment(data, ref(pair.baseline)) is first
    listener.segmented(pair.baseline, [pair.baseline.vertebrae])  # segmented again
    again = priors.assessment(data, ref(pair.baseline))
    assert again is not first and not again.has_muscle_segmentation


def test_a_prior_without_label_maps_is_an_error_naming_why(listener: Listener,
                                                           pair: FollowUp) -> None:
    listener.segmented(pair.baseline, [pair.baseline.muscles])
    with pytest.raises(InputError, match="no vertebra label map"):
        PriorAssessments(Settings()).assessment(DataClient(listener.address, 60),
                                                ref(pair.baseline))


@pytest.fixture
def risk(tmp_path: Path) -> Iterator[tuple[risk_pb2_grpc.RiskServiceStub, Path]]:
    outbox = tmp_path / "outbox"
    server = build(Settings(grpc_host="127.0.0.1", grpc_port=0, outbox_dir=outbox), tmp_path,
                   RiskMetrics())
    server.start()
    server.set_serving(True)
    with grpcutil.channel(f"127.0.0.1:{server.port}") as channel:
        yield risk_pb2_grpc.RiskServiceStub(channel), outbox  # type: ignore[no-untyped-call]
    server.stop(grace=1)


def assess_follow_up(stub: risk_pb2_grpc.RiskServiceStub, outbox: Path, listener: Listener,
                     pair: FollowUp, prior: volume_pb2.SeriesRef) -> dict[str, Any]:
    """Assess the follow-up with ``prior``; the ``risk`` section of its measurements.json."""
    p = pair.phantom
    maps = [p.vertebrae, p.muscles]
    header = risk_pb2.AssessHeader(
        series=ref(p), data_service=listener.address, has_prior=True, prior=prior,
        label_map_count=len(maps),
        longitudinal=longitudinal_pb2.Longitudinal(prior=prior, prior_study_date="20240101"))
    chunks = [risk_pb2.AssessChunk(header=header),
              *(risk_pb2.AssessChunk(label_map=c) for m in maps for c in labelmaps.to_chunks(m))]
    reply = stub.Assess(iter(chunks), timeout=300)
    assert {"SEG", "SR"} <= {o.modality for o in reply.objects}
    [entry] = [d for d in outbox.iterdir() if d.is_dir() and p.series_uid in d.name]
    risk: dict[str, Any] = json.loads((entry / "measurements.json").read_text())["risk"]
    return risk


def test_assess_reports_the_change_since_the_prior(
        risk: tuple[risk_pb2_grpc.RiskServiceStub, Path], listener: Listener,
        pair: FollowUp) -> None:
    change = assess_follow_up(*risk, listener, pair, ref(pair.baseline))["change"]
    assert change["prior"] == {"study_instance_uid": pair.baseline.study_uid,
                               "series_instance_uid": pair.baseline.series_uid}
    levels = {c["level"]: c for c in change["levels"]}
    assert {"L1", "L2", "L3"} <= set(levels)
    broken = levels["L2"]  # the new fracture
    assert broken["height_loss_anterior_percent"]["change"] > 15
    assert broken["correspondence"]["registration"] == "not-registered"
    assert all(f["factor_of_risk"]["change"] is not None
               for f in levels["L1"]["factors_of_risk"])


def test_a_prior_the_data_service_lacks_leaves_the_change_missing(
        risk: tuple[risk_pb2_grpc.RiskServiceStub, Path], listener: Listener,
        pair: FollowUp) -> None:
    unknown = volume_pb2.SeriesRef(study_instance_uid="1.2.826.0.1.9",
                                   series_instance_uid="1.2.826.0.1.9.1")
    section = assess_follow_up(*risk, listener, pair, unknown)
    assert section["change"]["missing"] == "prior-not-assessed"
    assert "not in the spool" in section["change"]["detail"]
    assert section["vertebrae"]  # the current study's numbers are there


def test_the_data_client_names_a_missing_series(listener: Listener) -> None:
    with pytest.raises(InputError, match="not in the spool"):
        DataClient(listener.address, 30).label_maps(volume_pb2.SeriesRef(
            study_instance_uid="1.2.826.0.1.9", series_instance_uid="1.2.826.0.1.9.1"))
