"""Writers: the phantom CT as a DICOM CT Image Storage series, its truth as NIfTI + JSON."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from phantom.generator import Phantom
from spinemets.geometry import CT_IMAGE_STORAGE, Geometry
from spinemets.uids import derived_uid

RESCALE_INTERCEPT = -1024
MANUFACTURER = "SpineMets"
MODEL = "spinemets-phantom"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def write_dicom_series(phantom: Phantom, out_dir: Path, *, patient_id: str, patient_name: str,
                       study_uid: str | None = None, series_uid: str | None = None,
                       study_date: str = "20240101", study_time: str = "120000",
                       study_description: str = "CT thoracolumbar spine",
                       series_description: str | None = None, series_number: int = 1,
                       accession_number: str = "", patient_birth_date: str = "",
                       patient_sex: str = "", patient_weight_kg: float | None = None,
                       patient_size_m: float | None = None) -> list[Path]:
    """Write one CT Image Storage file per slice (PS3.3 A.3, Explicit VR Little Endian).

    UIDs come from the phantom (deterministic for its seed and grid) unless ``study_uid`` or
    ``series_uid`` are given; then the others are derived from them, so writing one phantom
    for two patients gives two distinct sets of instances. Returns the paths, slice 0 first.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    study = study_uid or phantom.study_uid
    series = series_uid or (phantom.series_uid if study_uid is None
                            else derived_uid(study, "series", str(series_number)))
    frame_of_reference = (phantom.frame_of_reference_uid if study_uid is None
                          else derived_uid(study, "frame-of-reference"))
    instances = (phantom.ct.slice_instance_uids if series == phantom.series_uid
                 else tuple(derived_uid(series, "instance", str(k))
                            for k in range(len(phantom.ct.slice_instance_uids))))
    geometry = phantom.ct.geometry
    base = _series_dataset(phantom, geometry)
    base.PatientName, base.PatientID = patient_name, patient_id
    base.PatientBirthDate, base.PatientSex = patient_birth_date, patient_sex
    if patient_weight_kg is not None:
        base.PatientWeight = _ds(patient_weight_kg)
    if patient_size_m is not None:
        base.PatientSize = _ds(patient_size_m)
    base.StudyInstanceUID, base.SeriesInstanceUID = study, series
    base.FrameOfReferenceUID = frame_of_reference
    base.StudyDate = base.SeriesDate = base.ContentDate = base.AcquisitionDate = study_date
    base.StudyTime = base.SeriesTime = base.ContentTime = base.AcquisitionTime = study_time
    base.StudyDescription = study_description
    base.SeriesDescription = (series_description if series_description is not None
                              else f"Synthetic spine phantom, seed {phantom.options.seed}")
    base.SeriesNumber = series_number
    base.AccessionNumber = accession_number
    stored = (phantom.ct.array.astype(np.int32) - RESCALE_INTERCEPT).astype(np.uint16)
    positions = geometry.slice_positions()
    n = len(instances)
    paths = []
    for k in range(n):
        ds = Dataset()
        ds.update(base)
        ds.file_meta = _file_meta(instances[k])
        ds.SOPInstanceUID = instances[k]
        ds.InstanceNumber = n - k  # 1 = most cranial, as a head-first scan
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.SliceLocation = _ds(positions[k][2])
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = out_dir / f"CT{n - k:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _file_meta(instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _series_dataset(phantom: Phantom, geometry: Geometry) -> Dataset:
    """Attributes shared by every slice (Patient, Study, Series, Equipment, CT Image...)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.BodyPartExamined = "SPINE"
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL
    ds.SoftwareVersions = phantom.truth["generator"]
    ds.ImageComments = "Synthetic phantom, not patient data"
    ds.AcquisitionNumber = 1
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    columns, rows, _ = geometry.size
    col_spacing, row_spacing, _ = geometry.spacing
    ds.ImageOrientationPatient = [_ds(v) for v in (*geometry.direction[:, 0],
                                                   *geometry.direction[:, 1])]
    ds.PixelSpacing = [_ds(row_spacing), _ds(col_spacing)]
    ds.SliceThickness = _ds(phantom.truth["slice_thickness_mm"])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = str(RESCALE_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = ["400", "40"]
    ds.WindowWidth = ["1800", "400"]
    ds.WindowCenterWidthExplanation = ["BONE", "SOFT TISSUE"]
    ds.KVP = "120"
    ds.ReconstructionDiameter = _ds(columns * col_spacing)
    ds.ConvolutionKernel = "STANDARD"
    ds.ScanOptions = "HELICAL MODE"
    return ds


def _affine_ras(geometry: Geometry) -> npt.NDArray[np.float64]:
    """NIfTI affine (RAS) of voxel (column, row, slice) indices."""
    lps = np.eye(4)
    lps[:3, :3] = geometry.direction @ np.diag(geometry.spacing)
    lps[:3, 3] = geometry.origin
    return np.asarray(LPS_TO_RAS @ lps)


def write_nifti(phantom: Phantom, out_dir: Path) -> list[Path]:
    """Write ``ct``, ``vertebrae``, ``muscles`` and ``lesions`` ``.nii.gz`` and ``truth.json``.

    NIfTI arrays are indexed (column, row, slice) with an RAS affine (LPS with x, y negated).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    affine = _affine_ras(phantom.ct.geometry)
    paths = []
    volumes: dict[str, npt.NDArray[np.generic]] = {
        "ct": phantom.ct.array, "vertebrae": phantom.vertebrae.array,
        "muscles": phantom.muscles.array, "lesions": phantom.lesions.array}
    for name, array in volumes.items():
        image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)),  # type: ignore[no-untyped-call]
                                affine)
        image.set_qform(affine, code=1)  # type: ignore[no-untyped-call]
        image.set_sform(affine, code=1)  # type: ignore[no-untyped-call]
        image.header.set_xyzt_units("mm")  # type: ignore[no-untyped-call]
        if name != "ct":
            image.header["intent_name"] = b"labels"
        path = out_dir / f"{name}.nii.gz"
        nib.save(image, path)
        paths.append(path)
    path = out_dir / "truth.json"
    path.write_text(json.dumps(phantom.truth, indent=2) + "\n")
    paths.append(path)
    return paths
