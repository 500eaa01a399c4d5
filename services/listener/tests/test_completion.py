"""Series completion by the idle timer, routing, and quarantine of bad input."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import numpy as np
import pydicom
import pytest
from listener_testkit import (
    ct_series,
    enhanced_ct,
    expected_enhanced_hu,
    expected_hu,
    send,
    wait_for,
)
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian

from listener import volume_cache
from listener.app import Listener
from listener.db import JobState, SeriesState

pytestmark = pytest.mark.integration

StartListener = Callable[..., Listener]


def settled(app: Listener, uid: str, state: SeriesState, timeout: float = 15.0) -> None:
    wait_for(lambda: (s := app.db.series(uid)) is not None and s.state == state,
             timeout=timeout, what=f"series {state}")


def test_series_completes_after_the_idle_time(start_listener: StartListener) -> None:
    app = start_listener(completion_idle_s=1.0)
    series = ct_series(slices=6)
    uid = series[0].SeriesInstanceUID
    send(series[:3], app.dicom_port)  # two associations, one series
    send(series[3:], app.dicom_port)
    last_store = time.monotonic()
    time.sleep(0.6)
    record = app.db.series(uid)
    assert record is not None and record.state == SeriesState.RECEIVING
    settled(app, uid, SeriesState.PROCESSED)
    assert time.monotonic() - last_store >= 1.0
    [job] = app.db.jobs(uid)
    assert (job.rule, job.roles) == ("ct-spine", ("vertebrae",))
    record = app.db.series(uid)
    assert record is not None and record.instance_count == 6
    cached = volume_cache.load(app.spool.volume_path(series[0].StudyInstanceUID, uid))
    np.testing.assert_array_equal(cached.array, expected_hu(series))
    assert cached.geometry.size == (10, 12, 6)
    assert cached.geometry.spacing == pytest.approx((0.8, 0.7, 2.5))
    assert cached.geometry.origin == pytest.approx((-40.0, -30.0, 100.0 - 5 * 2.5))


def test_unrouted_series_is_skipped_with_reason_and_kept(
        start_listener: StartListener, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="listener")
    app = start_listener()
    series = ct_series(slices=3)
    uid = series[0].SeriesInstanceUID
    send(series, app.dicom_port)
    settled(app, uid, SeriesState.SKIPPED)
    record = app.db.series(uid)
    reason = "no rule matched: series has 3 slices, rule 'ct-spine' needs >= 5"
    assert record is not None and record.reason == reason
    assert len(app.spool.instance_paths(series[0].StudyInstanceUID, uid)) == 3  # files kept
    assert app.db.jobs(uid) == []
    wait_for(lambda: any(reason in r.getMessage() for r in caplog.records), what="log")


def _not_ct(series: list[Dataset]) -> None:
    series[2].Modality = "MR"


def _missing_pixel_data(series: list[Dataset]) -> None:
    del series[4].PixelData


def _undecodable(series: list[Dataset]) -> None:
    for ds in series:
        ds.file_meta.TransferSyntaxUID = JPEG2000
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"not a codestream" * 8])


def _duplicate_position(series: list[Dataset]) -> None:
    series[3].ImagePositionPatient = list(series[2].ImagePositionPatient)


def _mixed_orientation(series: list[Dataset]) -> None:
    series[5].ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]


def _uneven_spacing(series: list[Dataset]) -> None:
    del series[4]  # a missing slice


def _gantry_tilt(series: list[Dataset]) -> None:
    for k, ds in enumerate(series):
        ds.GantryDetectorTilt = 15.0
        ds.ImagePositionPatient = [-40.0, -30.0 + k * 0.67, 100.0 - k * 2.5]


BAD_INPUTS = {
    "not-ct": (_not_ct, ExplicitVRLittleEndian),
    "missing-pixel-data": (_missing_pixel_data, ExplicitVRLittleEndian),
    "undecodable-pixel-data": (_undecodable, JPEG2000),
    "duplicate-position": (_duplicate_position, ExplicitVRLittleEndian),
    "mixed-orientation": (_mixed_orientation, ExplicitVRLittleEndian),
    "uneven-spacing": (_uneven_spacing, ExplicitVRLittleEndian),
    "gantry-tilt": (_gantry_tilt, ExplicitVRLittleEndian),
}


@pytest.mark.parametrize("reason", list(BAD_INPUTS))
def test_bad_series_is_quarantined_with_reason_and_service_goes_on(
        start_listener: StartListener, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    app = start_listener()
    spoil, syntax = BAD_INPUTS[reason]
    bad = ct_series(slices=8)
    spoil(bad)
    study, uid = bad[0].StudyInstanceUID, bad[0].SeriesInstanceUID
    assert set(send(bad, app.dicom_port, transfer_syntax=syntax)) == {0x0000}
    settled(app, uid, SeriesState.QUARANTINED)

    record = app.db.series(uid)
    assert record is not None and record.reason is not None
    assert record.reason.startswith(f"{reason}: ")
    assert app.db.jobs(uid) == []
    assert not app.spool.series_dir(study, uid).exists()
    quarantine = app.spool.quarantine_dir(uid)
    kept = sorted(p.stem for p in quarantine.glob("*.dcm"))
    assert kept == sorted(ds.SOPInstanceUID for ds in bad)  # nothing lost
    assert all(pydicom.dcmread(p).SeriesInstanceUID == uid for p in quarantine.glob("*.dcm"))
    note = json.loads((quarantine / "reason.json").read_text())
    assert (note["reason"], note["study_instance_uid"]) == (reason, study)
    wait_for(lambda: any(f"series quarantined: {reason}" in r.getMessage()
                         for r in caplog.records), what="log")

    good = ct_series(slices=6)
    assert set(send(good, app.dicom_port)) == {0x0000}
    settled(app, good[0].SeriesInstanceUID, SeriesState.PROCESSED)


def test_missing_slice_arriving_late_brings_the_series_back(
        start_listener: StartListener) -> None:
    app = start_listener()
    series = ct_series(slices=8)
    uid = series[0].SeriesInstanceUID
    send(series[:4] + series[5:], app.dicom_port)
    settled(app, uid, SeriesState.QUARANTINED)
    send([series[4]], app.dicom_port)
    settled(app, uid, SeriesState.PROCESSED)
    assert not app.spool.quarantine_dir(uid).exists()
    volume = volume_cache.load(app.spool.volume_path(series[0].StudyInstanceUID, uid))
    np.testing.assert_array_equal(volume.array, expected_hu(series))
    wait_for(lambda: [j.state for j in app.db.jobs(uid)] == [JobState.DELIVERED],
             what="job delivered")


def test_enhanced_ct_instance_is_routed_by_frames_and_assembled(
        start_listener: StartListener) -> None:
    app = start_listener()
    instance = enhanced_ct(frames=6)
    assert send([instance], app.dicom_port) == [0x0000]
    uid = instance.SeriesInstanceUID
    settled(app, uid, SeriesState.PROCESSED)  # 1 instance, 6 frames: rule needs >= 5 slices
    volume = volume_cache.load(app.spool.volume_path(instance.StudyInstanceUID, uid))
    assert volume.geometry.size == (10, 12, 6)
    assert volume.geometry.spacing == pytest.approx((0.8, 0.7, 2.5))
    assert volume.geometry.origin == pytest.approx((-40.0, -30.0, 100.0 - 5 * 2.5))
    assert volume.slice_instance_uids == tuple(f"{instance.SOPInstanceUID}#{n}"
                                               for n in range(6, 0, -1))
    assert volume.array.shape == (6, 12, 10)


def test_enhanced_ct_frames_are_rescaled_to_hu(start_listener: StartListener) -> None:
    app = start_listener()
    instance = enhanced_ct(frames=6)
    send([instance], app.dicom_port)
    uid = instance.SeriesInstanceUID
    settled(app, uid, SeriesState.PROCESSED)
    volume = volume_cache.load(app.spool.volume_path(instance.StudyInstanceUID, uid))
    np.testing.assert_array_equal(volume.array, expected_enhanced_hu(instance))


def test_series_received_before_a_restart_is_completed_after_it(
        start_listener: StartListener) -> None:
    first = start_listener(completion_idle_s=60.0)
    series = ct_series(slices=6)
    uid = series[0].SeriesInstanceUID
    send(series, first.dicom_port)
    first.stop()  # acknowledged, not yet complete
    second = start_listener()
    settled(second, uid, SeriesState.PROCESSED)
    record = second.db.series(uid)
    assert record is not None and record.instance_count == 6
