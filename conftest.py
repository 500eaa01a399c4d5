"""Fixtures shared by every test folder: small synthetic CT series made with pydicom; and
each parallel test worker's own share of the free ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from spinemets.ports import SHARE_VARIABLE

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

SliceFactory = Callable[..., list[Dataset]]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, worker ``gwK`` of N chooses ports in share K/N only
    (:mod:`spinemets.ports`), so that two workers never start servers on the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        count = os.environ["PYTEST_XDIST_WORKER_COUNT"]
        os.environ[SHARE_VARIABLE] = f"{worker.removeprefix('gw')}/{count}"


def make_ct_slices(
    n: int = 8,
    *,
    rows: int = 16,
    columns: int = 16,
    spacing: Sequence[float] = (0.8, 0.8, 2.0),
    origin: Sequence[float] = (-6.0, -6.0, 100.0),
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    seed: int = 0,
    patient_id: str = "PID-SECRET-42",
    patient_name: str = "Secret^Patient",
) -> list[Dataset]:
    """``n`` single-frame CT slices of a regular grid; slice k has HU = 10*k + noise."""
    rng = np.random.default_rng(seed)
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    slices = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.Modality = "CT"
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame
        ds.StudyDate, ds.StudyTime = "20260101", "120000"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        position = np.asarray(origin, float) + k * spacing[2] * normal
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        hu = 10 * k + rng.integers(-5, 6, size=(rows, columns))
        ds.PixelData = (hu + 1024).astype("<i2").tobytes()
        slices.append(ds)
    return slices


@pytest.fixture
def ct_slices() -> SliceFactory:
    """Factory of small synthetic CT series (see :func:`make_ct_slices`)."""
    return make_ct_slices
