"""Fixtures: a small synthetic CT series (real pydicom Part 10 files) and a vertebra label map."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from phantom import Phantom, PhantomOptions, anatomy, generate, skeleton, softtissue
from phantom.shapes import Grid, Pose, Solid, evaluate, rotation
from risk.measure import VertebraMeasurement, measure_vertebrae
from risk.method_settings import CalibrationSettings, MethodSettings, PhantomCalibration
from risk.provenance import Provenance
from risk.seg_writer import build_seg
from risk.settings import Settings
from risk.spine import SpineAssessment, assess_spine
from risk.sr_writer import build_sr
from spinemets import labels
from spinemets.geometry import Geometry, Volume, assemble_ct
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


PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")


@pytest.fixture(scope="session")
def pixelmed() -> Callable[[Path], tuple[str, list[str]]]:
    """Run PixelMed's ``DicomSRValidator`` on an SR; returns its output and the error lines.

    Its template tables predate TID 1411's algorithm and qualitative evaluation rows, which
    it only warns about."""
    if shutil.which("java") is None or not PIXELMED_JAR.exists():
        pytest.skip("pixelmed-apps (Java) is not installed")
    limits = [f"-Djdk.xml.{name}=0"
              for name in ("xpathExprOpLimit", "xpathExprGrpLimit", "xpathTotalOpLimit")]

    def validate(path: Path) -> tuple[str, list[str]]:
        run = subprocess.run(["java", *limits, "-cp", str(PIXELMED_JAR),
                              "com.pixelmed.validate.DicomSRValidator", str(path)],
                             capture_output=True, text=True, check=False, timeout=300)
        output = run.stdout + run.stderr
        assert "Root Template Validation Complete" in output, output[-2000:]
        return output, [line for line in output.splitlines() if line.startswith("Error")]

    return validate


# --- phantoms with ground truth (tools/phantom) for the methods of SCIENCE.md ---------------

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


@dataclass(frozen=True)
class PhantomTruth:
    """Ground truth of a phantom beyond its truth JSON, from the generator's own geometry.

    Uses the phantom's anatomy, solids and soft-tissue table (tools/phantom), so the truth is
    analytic: it does not come from the label maps or the code under test.
    """

    phantom: Phantom

    @property
    def pose(self) -> Pose:
        t = self.phantom.truth["pose"]
        return Pose(rotation(t["rotation_deg"]), np.asarray(t["pivot_lps"], float),
                    np.asarray(t["translation_mm"], float))

    @property
    def grid(self) -> Grid:
        g = self.phantom.truth["grid"]
        columns, rows, slices = g["size"]
        return Grid(np.asarray(g["origin_lps"], float), np.asarray(g["spacing_mm"], float),
                    (slices, rows, columns))

    def level(self, name: str) -> dict[str, Any]:
        level: dict[str, Any] = self.phantom.truth["levels"][name]
        return level

    def axis(self, name: str) -> npt.NDArray[np.float64]:
        return np.asarray(self.level(name)["axis_lps"], dtype=np.float64)

    def body(self, name: str) -> npt.NDArray[np.bool_]:
        """Voxels of the vertebral body primitive (before the posterior elements are added)."""
        anat = anatomy.build(self.phantom.options.seed)
        comp = self.phantom.truth["compression"]
        compression = (skeleton.Compression(comp["level"], comp["fraction"],
                                            comp["kind"] == "wedge")
                       if comp and comp["level"] == name else None)
        unit = skeleton.vertebra(anat, anat.level(name), compression)
        found = evaluate(Solid(unit.parts[:1]).posed(self.pose), self.grid, 0.0)
        assert found is not None
        mask = np.zeros(self.grid.shape, dtype=bool)
        mask[found[0]] = found[1] <= 0
        return mask & (self.phantom.vertebrae.array == labels.vertebra(name).value)

    def extensor_section(self, name: str, side: int, step: float = 0.25
                         ) -> tuple[float, float]:
        """Area (mm2) and posterior offset (mm) of a deep back muscle ellipse (side +1 left)
        in the plane through the body centroid perpendicular to the level's axis."""
        anat = anatomy.build(self.phantom.options.seed)
        table = softtissue.table(anat)
        axes = anat.curve.frame(anat.level(name).s).posed(self.pose).axes
        left, posterior = axes[:, 0], axes[:, 1]
        u = np.arange(-120.0, 120.0, step)
        xx, yy = np.meshgrid(u, u, indexing="ij")
        kji = np.argwhere(self.body(name)).mean(axis=0)
        g = self.grid
        centre = g.origin + kji[::-1] * g.spacing  # the phantom's grids are axis-aligned
        points = centre + xx[..., None] * left + yy[..., None] * posterior
        pose = self.pose
        local = (points - pose.pivot - pose.translation) @ pose.rotation + pose.pivot
        rows = table.lookup(local[..., 2].astype(np.float32))
        c = table.columns
        dx = local[..., 0] - c["x"][rows] - side * c["deep_x"][rows]
        dy = local[..., 1] - c["y"][rows] - c["deep_y"][rows]
        inside = (dx / c["deep_rx"][rows]) ** 2 + (dy / c["deep_ry"][rows]) ** 2 <= 1
        return float(inside.sum() * step * step), float(yy[inside].mean())


def phantom_headers(**attributes: Any) -> list[Dataset]:
    """One header with acquisition and patient attributes (what the methods read)."""
    ds = Dataset()
    ds.Manufacturer, ds.ManufacturerModelName, ds.KVP = "Synthetic", "Phantom CT", 120
    ds.ConvolutionKernel = "B30f"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return [ds]


#: A phantom calibration of the synthetic scanner of :func:`phantom_headers` (known values).
PHANTOM_CALIBRATION = PhantomCalibration(manufacturer="Synthetic", model="Phantom CT", kvp=120,
                                         slope_hu_per_mg_cm3=1.25, intercept_hu=-5.0,
                                         source="test phantom")


def calibrated_settings(**methods: Any) -> MethodSettings:
    """Method settings that calibrate :func:`phantom_headers` series with PHANTOM_CALIBRATION."""
    return MethodSettings(calibration=CalibrationSettings(phantoms=(PHANTOM_CALIBRATION,)),
                          **methods)


@pytest.fixture(scope="session")
def phantom_calibration() -> PhantomCalibration:
    return PHANTOM_CALIBRATION


@pytest.fixture(scope="session")
def wedge_phantom() -> PhantomTruth:
    """T12-L4 at 1 mm, posed, with a 40 % wedge fracture of L2 and the paraspinal muscles."""
    return PhantomTruth(generate(PhantomOptions(
        seed=21, levels=("T12", "L4"), spacing=(1.0, 1.0, 1.0), matrix=180, compression="L2",
        compression_fraction=0.4, compression_wedge=True)))


@pytest.fixture(scope="session")
def wedge_assessment(wedge_phantom: PhantomTruth) -> SpineAssessment:
    ph = wedge_phantom.phantom
    return assess_spine(ph.ct, ph.vertebrae, ph.muscles, None,
                        phantom_headers(PatientWeight=80, PatientSize=1.8, PatientSex="M"),
                        calibrated_settings())


@pytest.fixture(scope="session")
def lesion_phantom() -> PhantomTruth:
    """L1-L3 at 1 mm with three lesions (one in a pedicle), muscles and lesions labelled."""
    return PhantomTruth(generate(PhantomOptions(
        seed=11, levels=("L1", "L3"), spacing=(1.0, 1.0, 1.0), matrix=170, lesions=3,
        posterior_lesions=True, max_rotation_deg=5)))


@pytest.fixture(scope="session")
def lesion_assessment(lesion_phantom: PhantomTruth) -> SpineAssessment:
    ph = lesion_phantom.phantom
    return assess_spine(ph.ct, ph.vertebrae, ph.muscles, ph.lesions, phantom_headers(),
                        calibrated_settings())


@pytest.fixture(scope="session")
def wide_phantom() -> PhantomTruth:
    """L2-L3 with a field of view wider than the body (air round it), 1.5 mm voxels."""
    return PhantomTruth(generate(PhantomOptions(
        seed=23, levels=("L2", "L3"), spacing=(1.5, 1.5, 1.5), matrix=300)))


@pytest.fixture(scope="session")
def tptbox() -> tuple[Volume, LabelMap, npt.NDArray[np.uint8]]:
    """The real TPTBox CT crop (L2-L4, PIR orientation): CT, vertebra labels, sub-regions."""
    folder = SHARED_DATA / "real" / "tptbox-ct-l2-l4"
    if not folder.is_dir():
        pytest.skip("../shared/data/real/tptbox-ct-l2-l4 is not available")
    nib = pytest.importorskip("nibabel")

    def load(name: str) -> tuple[npt.NDArray[Any], Geometry]:
        image = nib.load(folder / name)
        lps = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(image.affine)[:3, :4]
        spacing = np.linalg.norm(lps[:, :3], axis=0)
        array = np.asarray(image.dataobj).transpose(2, 1, 0)
        geometry = Geometry(size=(array.shape[2], array.shape[1], array.shape[0]),
                            spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
                            origin=(float(lps[0, 3]), float(lps[1, 3]), float(lps[2, 3])),
                            direction=lps[:, :3] / spacing)
        return array, geometry

    ct, geometry = load("sub-ct_label-22_ct.nii.gz")
    vertebrae, _ = load("sub-ct_seg-vert_label-22_msk.nii.gz")
    subregions, _ = load("sub-ct_seg-subreg_label-22_msk.nii.gz")
    label_map = LabelMap(vertebrae.astype(np.uint8), geometry,
                         {21: "vertebra_L2", 22: "vertebra_L3", 23: "vertebra_L4"}, "tptbox", "1")
    volume = Volume(ct.astype(np.int16), geometry, (), CTImageStorage)
    return volume, label_map, subregions.astype(np.uint8)


@pytest.fixture(scope="session")
def make_headers() -> Callable[..., list[Dataset]]:
    """:func:`phantom_headers`: headers of the synthetic scanner, with extra attributes."""
    return phantom_headers


@pytest.fixture(scope="session")
def make_settings() -> Callable[..., MethodSettings]:
    """:func:`calibrated_settings`: method settings calibrating the synthetic scanner."""
    return calibrated_settings
