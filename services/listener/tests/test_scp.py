"""The DICOM SCP against real peers: dcmtk echoscu/storescu and a pynetdicom SCU."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from listener_testkit import SENDER, ct_series, reject_reason, send, write_files
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless, SecondaryCaptureImageStorage

from listener.app import Listener
from listener.db import SeriesState

pytestmark = pytest.mark.integration

StartListener = Callable[..., Listener]


def echoscu(port: int, ae_title: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["echoscu", "-aet", ae_title, "-aec", "SPINEMETS", "127.0.0.1",
                           str(port)], capture_output=True, text=True, timeout=30)


def test_echo_from_an_allowed_caller(start_listener: StartListener) -> None:
    app = start_listener()
    result = echoscu(app.dicom_port, SENDER)
    assert result.returncode == 0, result.stderr


def test_unknown_calling_ae_is_rejected(start_listener: StartListener) -> None:
    app = start_listener()
    result = echoscu(app.dicom_port, "INTRUDER")
    assert result.returncode != 0
    assert "Association Rejected" in result.stdout + result.stderr
    # rejected-permanent, by the service user, "calling AE title not recognised"
    assert reject_reason(app.dicom_port, "INTRUDER") == (0x01, 0x01, 0x03)
    assert reject_reason(app.dicom_port, SENDER) is None  # and the service keeps serving


def test_allowed_title_from_a_wrong_address_is_rejected(start_listener: StartListener) -> None:
    app = start_listener(allowed_callers=[{"ae_title": "PACS", "hosts": ["10.9.8.0/24"]},
                                          {"ae_title": "LOCAL", "hosts": ["127.0.0.1"]}])
    assert reject_reason(app.dicom_port, "PACS") == (0x01, 0x01, 0x03)
    assert reject_reason(app.dicom_port, "LOCAL") is None


def test_each_instance_is_on_disk_when_success_is_answered(start_listener: StartListener) -> None:
    app = start_listener()
    series = ct_series(slices=4)
    seen: list[Path] = []

    def check_on_disk(ds: Dataset, status: int) -> None:
        assert status == 0x0000
        path = (app.spool.series_dir(ds.StudyInstanceUID, ds.SeriesInstanceUID)
                / f"{ds.SOPInstanceUID}.dcm")
        stored = pydicom.dcmread(path)  # exists and parses the moment the response arrives
        assert stored.SOPInstanceUID == ds.SOPInstanceUID
        assert stored.PixelData == ds.PixelData
        assert stored.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        seen.append(path)

    send(series, app.dicom_port, after_each=check_on_disk)
    record = app.db.series(series[0].SeriesInstanceUID)
    assert record is not None and record.instance_count == 4
    assert record.state == SeriesState.RECEIVING and record.calling_ae == SENDER
    assert not list(seen[0].parent.glob(".*.tmp"))  # no temporary file left behind


def test_storescu_series_is_stored_as_sent(start_listener: StartListener,
                                           tmp_path: Path) -> None:
    app = start_listener()
    series = ct_series(slices=5)
    files = write_files(series, tmp_path / "out")
    result = subprocess.run(["storescu", "-aet", SENDER, "-aec", "SPINEMETS", "127.0.0.1",
                             str(app.dicom_port), *map(str, files)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stored = app.spool.instance_paths(series[0].StudyInstanceUID, series[0].SeriesInstanceUID)
    assert sorted(p.name for p in stored) == sorted(p.name for p in files)
    for path in stored:
        original = pydicom.dcmread(tmp_path / "out" / path.name)
        assert pydicom.dcmread(path) == original  # every element, pixel data included


def test_compressed_series_is_accepted_and_decoded(start_listener: StartListener) -> None:
    app = start_listener()
    series = ct_series(slices=6, rows=64, columns=64)
    for ds in series:
        ds.compress(RLELossless)
    assert set(send(series, app.dicom_port, transfer_syntax=RLELossless)) == {0}
    uid = series[0].SeriesInstanceUID
    _wait_state(app, uid, SeriesState.PROCESSED)


def test_ignored_sop_class_is_accepted_and_discarded(start_listener: StartListener) -> None:
    app = start_listener(ignored_sop_classes=[SecondaryCaptureImageStorage])
    capture = ct_series(slices=1)[0]
    capture.SOPClassUID = SecondaryCaptureImageStorage
    capture.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    assert send([capture], app.dicom_port) == [0x0000]
    assert app.db.series(capture.SeriesInstanceUID) is None
    assert not any((app.spool.root / "spool").iterdir())


def test_unsafe_uid_is_refused_and_nothing_is_written(start_listener: StartListener) -> None:
    app = start_listener()
    bad = ct_series(slices=1)[0]
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        bad.SOPInstanceUID = "1.2/../../../escape"
        assert send([bad], app.dicom_port) == [0xC000]
    assert not any(app.spool.root.parent.rglob("escape*"))
    assert send(ct_series(slices=1), app.dicom_port) == [0x0000]


def test_spool_write_failure_answers_out_of_resources(start_listener: StartListener) -> None:
    app = start_listener()
    series = ct_series(slices=2)
    blocker = app.spool.series_dir(series[0].StudyInstanceUID, series[0].SeriesInstanceUID)
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"a file where the series directory should be")
    assert send(series, app.dicom_port) == [0xA700, 0xA700]
    assert app.db.series(series[0].SeriesInstanceUID) is None  # nothing recorded as received
    assert set(send(ct_series(slices=2), app.dicom_port)) == {0x0000}  # still serving


def _wait_state(app: Listener, uid: str, state: SeriesState) -> None:
    from listener_testkit import wait_for

    wait_for(lambda: (s := app.db.series(uid)) is not None and s.state == state,
             what=f"series {state}")
