"""Delivery by C-STORE to real pynetdicom storage SCPs, with injected faults."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from risk.assess import assess
from risk.delivery import Sender, deliver, send
from risk.metrics import RiskMetrics
from risk.outbox import Outbox
from risk.settings import Destination, Settings
from spinemets.errors import DeliveryError
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap
from spinemets.ports import free_port
from stack.mock_pacs import Faults, MockPacs

SENDER: Sender = functools.partial(send, calling_ae="SPINEMETS_RISK", timeout=5.0)


@pytest.fixture
def outbox(tmp_path: Path, volume: Volume, headers: list[Dataset],
           label_map: LabelMap) -> Outbox:
    """An outbox holding the SEG, SR and report (PDF, one SC page) of the synthetic series."""
    box = Outbox(tmp_path / "outbox")
    first = headers[0]
    assess(str(first.StudyInstanceUID), str(first.SeriesInstanceUID), volume, headers,
           [label_map], Settings(), box)
    return box


@pytest.fixture
def series_uid(headers: list[Dataset]) -> str:
    return str(headers[0].SeriesInstanceUID)


def started(server: MockPacs) -> Destination:
    return Destination(ae_title="PACS", host="127.0.0.1", port=server.start())


def received_uids(server: MockPacs) -> list[str]:
    return [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in server.received]


def test_objects_arrive_seg_first_and_are_marked_delivered(
        tmp_path: Path, outbox: Outbox, series_uid: str) -> None:
    servers = [MockPacs(tmp_path / f"pacs{n}", "PACS", port=0) for n in range(2)]
    destinations = [started(s) for s in servers]
    try:
        deliveries = deliver(outbox, series_uid, destinations, SENDER, 1, 0.0)
    finally:
        for s in servers:
            s.stop()
    entry = outbox.get(series_uid)
    expected = [o.sop_instance_uid for o in entry.objects]
    assert [o.modality for o in entry.objects] == ["SEG", "SR", "DOC", "OT"]
    for server, dest in zip(servers, destinations, strict=True):
        assert received_uids(server) == expected
        assert outbox.delivered(series_uid)[dest.key] == set(expected)
    assert [(d.destination, d.status) for d in deliveries] == [
        (dest.key, 0) for dest in destinations for _ in expected]
    for obj in entry.objects:  # what arrived is what the outbox holds
        stored = dcmread(servers[0].root / obj.modality / f"{obj.sop_instance_uid}.dcm")
        assert stored == dcmread(entry.path / obj.file)


def test_rejected_associations_are_retried_with_backoff(
        tmp_path: Path, outbox: Outbox, series_uid: str) -> None:
    server = MockPacs(tmp_path / "pacs", "PACS", port=0, faults=Faults(reject_associations=2))
    waits: list[float] = []
    metrics = RiskMetrics()
    try:
        deliveries = deliver(outbox, series_uid, [started(server)], SENDER, 3, 0.5,
                             sleep=waits.append, metrics=metrics)
    finally:
        server.stop()
    assert waits == [0.5, 1.0]
    assert all(d.stored for d in deliveries)
    assert len(server.received) == 4
    assert metrics.value("delivery_retries_total") == 2
    assert metrics.value("objects_delivered_total", kind="SEG") == 1
    assert metrics.value("objects_delivered_total", kind="SR") == 1
    assert metrics.value("delivery_failures_total") == 0


def test_a_failed_seg_holds_back_the_sr_until_the_next_attempt(
        tmp_path: Path, outbox: Outbox, series_uid: str) -> None:
    server = MockPacs(tmp_path / "pacs", "PACS", port=0, faults=Faults(fail_stores=1))
    try:
        deliver(outbox, series_uid, [started(server)], SENDER, 2, 0.0, sleep=lambda _: None)
    finally:
        server.stop()
    assert received_uids(server) == [o.sop_instance_uid for o in outbox.get(series_uid).objects]


def test_an_unreachable_destination_raises_and_keeps_the_outbox(
        tmp_path: Path, outbox: Outbox, series_uid: str) -> None:
    server = MockPacs(tmp_path / "pacs", "PACS", port=0)
    good = started(server)
    down = Destination(ae_title="PACS", host="127.0.0.1", port=free_port())
    waits: list[float] = []
    try:
        with pytest.raises(DeliveryError, match=down.key) as raised:
            deliver(outbox, series_uid, [good, down], SENDER, 3, 0.25, sleep=waits.append)
        assert raised.value.reason == "delivery-failed"
        assert waits == [0.25, 0.5]
        entry = outbox.get(series_uid)
        assert all((entry.path / o.file).exists() for o in entry.objects)
        marks = outbox.delivered(series_uid)
        assert down.key not in marks and len(marks[good.key]) == 4
        # Once the second destination is up, only it receives the objects.
        late = MockPacs(tmp_path / "late", "PACS", port=down.port)
        late.start()
        try:
            deliver(outbox, series_uid, [good, down], SENDER, 1, 0.0)
        finally:
            late.stop()
    finally:
        server.stop()
    assert len(server.received) == 4
    assert len(late.received) == 4


def test_a_destination_failing_every_store_raises(
        tmp_path: Path, outbox: Outbox, series_uid: str) -> None:
    server = MockPacs(tmp_path / "pacs", "PACS", port=0, faults=Faults(fail_stores=100))
    metrics = RiskMetrics()
    try:
        with pytest.raises(DeliveryError, match="0xA700"):
            deliver(outbox, series_uid, [started(server)], SENDER, 2, 0.0,
                    sleep=lambda _: None, metrics=metrics)
    finally:
        server.stop()
    assert outbox.delivered(series_uid) == {}
    assert server.received == []
    assert metrics.value("delivery_retries_total") == 1
    assert metrics.value("delivery_failures_total") == 1
    assert metrics.value("objects_delivered_total", kind="SEG") == 0


def test_an_entry_without_objects_delivers_nothing(tmp_path: Path, series_uid: str) -> None:
    box = Outbox(tmp_path)
    box.put(series_uid, [], {"vertebrae": []})
    assert deliver(box, series_uid, [Destination(ae_title="PACS", host="127.0.0.1",
                                                 port=free_port())], SENDER, 1, 0.0) == []


def test_a_series_without_results_is_not_found(tmp_path: Path, series_uid: str) -> None:
    with pytest.raises(FileNotFoundError, match="no results"):
        deliver(Outbox(tmp_path), series_uid, [], SENDER, 1, 0.0)


def test_a_destination_without_segmentation_storage_raises(
        outbox: Outbox, series_uid: str) -> None:
    ae = AE(ae_title="CTONLY")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    port = int(server.server_address[1])
    try:
        with pytest.raises(DeliveryError, match="lacks 4 of 4 objects"):
            deliver(outbox, series_uid, [Destination(ae_title="CTONLY", host="127.0.0.1",
                                                     port=port)], SENDER, 1, 0.0)
    finally:
        server.shutdown()
