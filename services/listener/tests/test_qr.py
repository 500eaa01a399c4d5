"""The Query/Retrieve SCU against real peers: Orthanc answers C-FIND, C-MOVE and C-GET, dcmtk's
storescp receives what a C-MOVE sends; and what happens when the PACS is not there."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from listener_testkit import ct_series, wait_for, write_files
from pydicom.dataset import Dataset
from pynetdicom.events import Event

from listener import qr
from listener.settings import Pacs
from peers import Orthanc, free_port

pytestmark = pytest.mark.integration

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def peer_of(pacs: Orthanc, ae_title: str = "SPINEMETS", timeout: float = 10.0) -> qr.Peer:
    return qr.Peer(Pacs(ae_title=pacs.aet, host="127.0.0.1", port=pacs.dicom_port), ae_title,
                   timeout, timeout)


@pytest.fixture
def patient(pacs: Orthanc, tmp_path: Path) -> tuple[str, list[Dataset]]:
    """A patient with two studies in the PACS: 2023-01-01 and (a later one) 2024-06-01."""
    patient_id = f"QR-{uuid.uuid4().hex[:8]}"
    first, second = ct_series(slices=6, patient_id=patient_id), ct_series(
        slices=4, patient_id=patient_id, description="CT chest")
    for ds in first:
        ds.StudyDate = "20230101"
    for ds in second:
        ds.StudyDate = "20240601"
    pacs.upload(write_files(first + second, tmp_path / "studies"))
    pacs.add_modality("spinemets", "SPINEMETS", free_port())
    return patient_id, first


def test_c_find_studies_and_series(pacs: Orthanc, patient: tuple[str, list[Dataset]]) -> None:
    patient_id, first = patient
    with qr.finder(peer_of(pacs)) as find:
        studies = find.studies(patient_id, "-20240101")
        [series] = find.series(first[0].StudyInstanceUID)
        assert find.studies(patient_id, "20230102-20240101") == []
    [study] = studies
    assert (study.study_uid, study.study_date, study.patient_id, study.issuer) == (
        first[0].StudyInstanceUID, "20230101", patient_id, "TEST")
    assert (series.series_uid, series.modality, series.description, series.instances) == (
        first[0].SeriesInstanceUID, "CT", "CT spine", 6)


@pytest.fixture
def storescp(pacs: Orthanc, tmp_path: Path) -> Iterator[Path]:
    """dcmtk's storescp as the C-MOVE destination RECEIVER, known to the PACS."""
    port, folder = free_port(), tmp_path / "received"
    folder.mkdir()
    process = subprocess.Popen(["storescp", "-aet", "RECEIVER", "-od", str(folder), str(port)],
                               env={**os.environ, "TCP_NODELAY": "1"})
    pacs.add_modality("receiver", "RECEIVER", port)

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0
    wait_for(listening, what="storescp listening")
    yield folder
    process.terminate()
    process.wait(10)


@pytest.mark.skipif(shutil.which("storescp") is None, reason="dcmtk is not installed")
def test_c_move_sends_the_series_to_the_destination(
        pacs: Orthanc, patient: tuple[str, list[Dataset]], storescp: Path) -> None:
    _, first = patient
    sent = qr.move(peer_of(pacs), first[0].StudyInstanceUID, first[0].SeriesInstanceUID,
                   "RECEIVER")
    assert sent == 6
    wait_for(lambda: len(list(storescp.iterdir())) == 6, what="six instances at storescp")


def test_c_move_to_an_unknown_destination_fails_with_the_status(
        pacs: Orthanc, patient: tuple[str, list[Dataset]]) -> None:
    _, first = patient
    with pytest.raises(qr.PacsError, match=r"C-MOVE from ORTHANC@.* failed: status 0x"):
        qr.move(peer_of(pacs), first[0].StudyInstanceUID, first[0].SeriesInstanceUID,
                "NOWHERE")


def test_c_get_hands_every_instance_to_the_store_handler(
        pacs: Orthanc, patient: tuple[str, list[Dataset]]) -> None:
    _, first = patient
    received: list[str] = []

    def on_store(event: Event) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    sent = qr.get(peer_of(pacs), first[0].StudyInstanceUID, first[0].SeriesInstanceUID,
                  {CT: [EXPLICIT_LE]}, on_store)
    assert sent == 6 and sorted(received) == sorted(ds.SOPInstanceUID for ds in first)


def test_no_pacs_listening_is_a_pacs_error(pacs: Orthanc) -> None:
    down = qr.Peer(Pacs(ae_title="ORTHANC", host="127.0.0.1", port=free_port()), "SPINEMETS",
                   2.0, 2.0)
    with pytest.raises(qr.PacsError, match="unreachable") as raised, qr.finder(down):
        pass
    assert raised.value.reason == "pacs-unreachable"
    with pytest.raises(qr.PacsError):
        qr.move(down, "1.2.3", "1.2.3.4", "SPINEMETS")
