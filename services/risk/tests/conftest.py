"""Fixtures: a small synthetic CT series (real pydicom Part 10 files) and a vertebra label map."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from spinemets import labels
from spinemets.geometry import Volume, assemble_ct
from spinemets.labelmaps import LabelMap
from spinemets.uids import derived_uid

ROWS, COLUMNS, SLICES = 40, 48, 12
PIXEL_SPACING = (0.8, 0.7)  # row spacing, column spacing (mm)
SLICE_SPACING = 2.5
#: Slices of each vertebra (caudal first: the series runs feet to head).
BLOCKS = {"L3": range(0, 4), "L2": range(4, 8), "L1": range(8, 11)}


@dataclass(frozen=True)
class Series:
    """A synthetic CT series: Part 10 bytes per instance, datasets, the assembled volume."""

    files: dict[str, bytes]
    datasets: list[Dataset]
    volume: Volume
    label_map: LabelMap

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    def headers(self) -> list[Dataset]:
        """The instances read back without pixel data, as the risk service reads them."""
        from pydicom import dcmread
        return [dcmread(io.BytesIO(data), stop_before_pixels=True)
                for data in self.files.values()]


def _slice(k: int, hu: npt.NDArray[np.int16], seed: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = derived_uid(seed, "instance", str(k))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = derived_uid(seed, "study")
    ds.SeriesInstanceUID = derived_uid(seed, "series")
    ds.FrameOfReferenceUID = derived_uid(seed, "frame")
    ds.PatientName, ds.PatientID = "Phantom^Synthetic", "SYN-0001"
    ds.PatientBirthDate, ds.PatientSex = "19600101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240315", "101500", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "ACC1", ""
    ds.Modality, ds.Manufacturer, ds.SeriesNumber = "CT", "Synthetic", 3
    ds.InstanceNumber = SLICES - k  # deliberately opposite to the spatial order
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-16.8, -20.0, -40.0 + k * SLICE_SPACING]
    ds.PixelSpacing = list(PIXEL_SPACING)
    ds.SliceThickness = SLICE_SPACING
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.KVP = 120
    ds.PixelData = (hu.astype(np.int32) + 1024).astype(np.int16).tobytes()
    return ds


def _vertebra_mask(rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """A rounded blob in the middle of a slice, slightly different per slice."""
    rr, cc = np.mgrid[0:ROWS, 0:COLUMNS]
    r = 8 + rng.integers(0, 3)
    return (rr - 22) ** 2 + (cc - 24) ** 2 <= r * r


def make_series(seed: str = "risk-test") -> Series:
    """CT slices (shuffled, instance numbers reversed) and a label map of L1-L3 on their grid."""
    rng = np.random.default_rng(7)
    hu = rng.normal(40, 15, size=(SLICES, ROWS, COLUMNS))
    values = np.zeros((SLICES, ROWS, COLUMNS), dtype=np.uint8)
    for level, ks in BLOCKS.items():
        label = labels.vertebra(level)
        for k in ks:
            mask = _vertebra_mask(rng)
            values[k][mask] = label.value
            hu[k][mask] = rng.normal(150 + 50 * (label.value % 3), 40, size=int(mask.sum()))
    hu16 = np.rint(hu).astype(np.int16)
    datasets = [_slice(k, hu16[k], seed) for k in range(SLICES)]
    random.Random(3).shuffle(datasets)
    files = {}
    for ds in datasets:
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        files[str(ds.SOPInstanceUID)] = buffer.getvalue()
    volume = assemble_ct(datasets)
    names = {labels.vertebra(level).value: labels.vertebra(level).name for level in BLOCKS}
    label_map = LabelMap(values, volume.geometry, names, "vertebrae", "1", demo=True)
    return Series(files, datasets, volume, label_map)


@pytest.fixture(scope="session")
def series() -> Series:
    return make_series()


def dciodvfy_errors(path: Path) -> list[str]:
    """Lines of ``dciodvfy`` (dicom3tools) output that report errors."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines()
            if line.startswith("Error")]
