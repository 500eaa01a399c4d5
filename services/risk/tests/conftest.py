"""Fixtures: a small synthetic CT series (real pydicom Part 10 files) and a vertebra label map."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from risk.measure import VertebraMeasurement, measure_vertebrae
from risk.provenance import Provenance
from risk.seg_writer import build_seg
from risk.settings import Settings
from risk.sr_writer import build_sr
from spinemets import labels
from spinemets.geometry import Volume, assemble_ct
from spinemets.labelmaps import LabelMap
from spinemets.uids import derived_uid

ROWS, COLUMNS, SLICES = 40, 48, 12
PIXEL_SPACING = (0.8, 0.7)  # row spacing, column spacing (mm)
SLICE_SPACING = 2.5
#: Slices of each vertebra (caudal first: the series runs feet to head).
BLOCKS = {"L3": range(0, 4), "L2": range(4, 8), "L1": range(8, 11)}


def _slice(k: int, hu: npt.NDArray[np.int16], seed: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(derived_uid(seed, "instance", str(k)))
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
    mask: npt.NDArray[np.bool_] = (rr - 22) ** 2 + (cc - 24) ** 2 <= r * r
    return mask


def make_series(seed: str = "risk-test") -> tuple[list[Dataset], LabelMap]:
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
    datasets = [_slice(k, np.rint(hu[k]).astype(np.int16), seed) for k in range(SLICES)]
    random.Random(3).shuffle(datasets)
    geometry = assemble_ct(datasets).geometry
    names = {labels.vertebra(level).value: labels.vertebra(level).name for level in BLOCKS}
    return datasets, LabelMap(values, geometry, names, "vertebrae", "1", demo=True)


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def synthetic() -> tuple[list[Dataset], LabelMap]:
    return make_series()


@pytest.fixture(scope="session")
def ct_series(synthetic: tuple[list[Dataset], LabelMap]) -> list[Dataset]:
    """The synthetic CT instances, with pixel data, in arbitrary order."""
    return synthetic[0]


@pytest.fixture(scope="session")
def label_map(synthetic: tuple[list[Dataset], LabelMap]) -> LabelMap:
    """L3, L2, L1 (caudal to cranial) on the grid of :func:`ct_series`; model "vertebrae" 1."""
    return synthetic[1]


@pytest.fixture(scope="session")
def volume(ct_series: list[Dataset]) -> Volume:
    return assemble_ct(ct_series)


@pytest.fixture(scope="session")
def headers(ct_series: list[Dataset]) -> list[Dataset]:
    """The instances read back from Part 10 without pixel data, as the risk service reads them."""
    return [dcmread(io.BytesIO(part10(ds)), stop_before_pixels=True) for ds in ct_series]


@pytest.fixture(scope="session")
def measurements(volume: Volume, label_map: LabelMap) -> tuple[VertebraMeasurement, ...]:
    return measure_vertebrae(volume.array, label_map)


@pytest.fixture(scope="session")
def provenance(ct_series: list[Dataset]) -> Provenance:
    first = ct_series[0]
    return Provenance(str(first.StudyInstanceUID), str(first.SeriesInstanceUID), "vertebrae",
                      "1", demo=True)


@pytest.fixture(scope="session")
def seg_path(headers: list[Dataset], volume: Volume, label_map: LabelMap,
             measurements: tuple[VertebraMeasurement, ...], provenance: Provenance,
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SEG of the synthetic series, saved as a Part 10 file."""
    seg = build_seg(headers, volume.slice_instance_uids, label_map, measurements, provenance,
                    Settings().equipment, 9701)
    path = tmp_path_factory.mktemp("seg") / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="session")
def sr_path(headers: list[Dataset], seg_path: Path,
            measurements: tuple[VertebraMeasurement, ...], provenance: Provenance,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SR of the synthetic series, referencing :func:`seg_path`, saved as a Part 10 file."""
    sr = build_sr(headers, dcmread(seg_path), measurements, provenance, Settings().equipment,
                  9702)
    path = tmp_path_factory.mktemp("sr") / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="session")
def dciodvfy() -> Callable[[Path], list[str]]:
    """Run ``dciodvfy`` (dicom3tools) on a file; returns the lines that report errors."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")

    def errors(path: Path) -> list[str]:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                             check=False)
        return [line for line in (run.stdout + run.stderr).splitlines()
                if line.startswith("Error")]

    return errors
