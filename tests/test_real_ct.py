"""A real CT (not a phantom) through the whole stack: processed without error, SEG on its slices.

The CT is the TPTBox sample (a real lumbar CT crop, L2-L4, 1.5 mm, PIR orientation, from
``../shared/data/real``), written here as a *sagittal* CT series exactly as its voxels lie, so
the stack also has to handle a non-axial orientation.
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from e2e import Stack, dciodvfy_errors, job_state, requires, send
from peers import Orthanc
from spinemets.geometry import assemble_ct

REAL_CT = (Path(__file__).resolve().parents[1]
           / "../shared/data/real/tptbox-ct-l2-l4/sub-ct_label-22_ct.nii.gz")

pytestmark = [
    pytest.mark.integration, requires("storescu", "dciodvfy"),
    pytest.mark.skipif(not REAL_CT.is_file(),
                       reason="../shared/data/real is not beside the checkout"),
]

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def nifti_to_dicom(path: Path, out: Path) -> list[Path]:
    """One CT slice per index of the NIfTI's third axis, geometry from its affine (RAS -> LPS)."""
    image = nib.load(path)
    data = np.asarray(image.dataobj).astype(np.int16)
    affine = image.affine
    axes = RAS_TO_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    row_dir, col_dir = axes[:, 0] / spacing[0], axes[:, 1] / spacing[1]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out.mkdir(parents=True)
    files = []
    for k in range(data.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "TPTBOX-1", "Real^Sample"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime = "20250101", "0900"
        ds.SeriesNumber, ds.InstanceNumber = 2, k + 1
        ds.SeriesDescription = "real lumbar CT (TPTBox sample)"
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        position = RAS_TO_LPS @ (affine @ np.array([0.0, 0.0, k, 1.0]))[:3]
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        # Pixel (row r, column c) is voxel (c, r, k): columns run along the first NIfTI axis.
        pixels = data[:, :, k].T
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0.0, 1.0
        ds.PixelData = np.ascontiguousarray(pixels).astype("<i2").tobytes()
        files.append(out / f"{k:04d}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return files


def test_real_ct_is_processed_and_seg_sits_on_its_slices(stack: Stack, orthanc: Orthanc,
                                                         tmp_path: Path) -> None:
    config, _ = stack
    files = nifti_to_dicom(REAL_CT, tmp_path / "real")
    volume = assemble_ct([pydicom.dcmread(f) for f in files])
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    study_uid = send(config, files)
    deadline = time.monotonic() + 600
    while job_state(config, series_uid) not in ("delivered", "failed"):
        assert time.monotonic() < deadline, "the real CT was not processed in 600 s"
        time.sleep(1.0)
    assert job_state(config, series_uid) == "delivered"
    results = {i["Modality"]: i for i in orthanc.instances_of_study(study_uid)}
    if "SEG" not in results:
        # The interim demo model may find no vertebra on this crop: then nothing is written.
        assert "SR" not in results
        return
    seg_path = orthanc.download(results["SEG"]["ID"], tmp_path / "seg.dcm")
    assert dciodvfy_errors(seg_path) == []
    assert dciodvfy_errors(orthanc.download(results["SR"]["ID"], tmp_path / "sr.dcm")) == []
    seg = pydicom.dcmread(seg_path)
    positions = dict(zip(volume.slice_instance_uids, volume.geometry.slice_positions(),
                         strict=True))
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    assert np.allclose([float(v) for v in orientation.ImageOrientationPatient],
                       pydicom.dcmread(files[0]).ImageOrientationPatient, atol=1e-4)
    for item in seg.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        frame_position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(frame_position, positions[source.ReferencedSOPInstanceUID], atol=1e-3)
