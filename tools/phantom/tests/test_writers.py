"""DICOM and NIfTI output: geometry and values survive the round trip; the DICOM is valid."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest

from phantom import Phantom, PhantomOptions, generate, write_dicom_series, write_nifti
from phantom.__main__ import main
from spinemets.geometry import assemble_ct


def load_nifti(path: Path) -> Any:
    return nib.load(path)


@cache
def posed() -> Phantom:
    """A small phantom with a random pose, compression and lesions."""
    return generate(PhantomOptions(seed=17, spacing=(2.5, 2.5, 3.0), matrix=72,
                                   levels=("T12", "L3"), lesions=2, compression="random"))


def test_dicom_reads_back_as_the_phantom_volume(tmp_path: Path) -> None:
    p = posed()
    files = write_dicom_series(p, tmp_path, patient_id="PH-1", patient_name="Phantom^One")
    datasets = [pydicom.dcmread(f) for f in files]
    volume = assemble_ct(datasets)
    assert np.array_equal(volume.array, p.ct.array)
    assert volume.geometry == p.ct.geometry
    assert np.array_equal(volume.geometry.direction, p.ct.geometry.direction)
    assert volume.slice_instance_uids == p.ct.slice_instance_uids
    first = datasets[0]
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert (first.RescaleIntercept, first.RescaleSlope, first.PixelRepresentation) == (-1024, 1, 0)
    assert first.BodyPartExamined == "SPINE" and first.PatientID == "PH-1"
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert sorted(int(ds.InstanceNumber) for ds in datasets) == list(range(1, len(files) + 1))
    top = max(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert int(top.InstanceNumber) == 1


def test_uids_are_deterministic_and_follow_a_given_study(tmp_path: Path) -> None:
    p = posed()
    a = write_dicom_series(p, tmp_path / "a", patient_id="A", patient_name="A")
    b = write_dicom_series(p, tmp_path / "b", patient_id="A", patient_name="A")
    c = write_dicom_series(p, tmp_path / "c", patient_id="B", patient_name="B",
                           study_uid="2.25.1234")

    def uids(files: list[Path]) -> list[tuple[str, str, str]]:
        return [(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
                for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)]

    assert uids(a) == uids(b)
    other = uids(c)
    assert {u[0] for u in other} == {"2.25.1234"}
    assert not {u[2] for u in other} & {u[2] for u in uids(a)}


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_finds_no_error(tmp_path: Path) -> None:
    files = write_dicom_series(posed(), tmp_path, patient_id="PH-1", patient_name="Phantom^One",
                               patient_weight_kg=72.5, patient_size_m=1.78)
    for path in (files[0], files[len(files) // 2]):
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                                check=False)
        report = result.stdout + result.stderr
        assert "CTImage" in report
        assert "Error" not in report, report
        assert "Warning" not in report, report


def test_nifti_affine_maps_voxels_to_the_same_points(tmp_path: Path) -> None:
    p = posed()
    paths = write_nifti(p, tmp_path)
    assert [x.name for x in paths] == ["ct.nii.gz", "vertebrae.nii.gz", "muscles.nii.gz",
                                       "lesions.nii.gz", "truth.json"]
    g = p.ct.geometry
    rng = np.random.default_rng(0)
    ijk = rng.integers(0, g.size, size=(20, 3))
    lps = g.index_to_patient(ijk)
    for name, label_map in (("ct", None), ("vertebrae", p.vertebrae), ("lesions", p.lesions)):
        image = load_nifti(tmp_path / f"{name}.nii.gz")
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")  # type: ignore[no-untyped-call]
        ras = nib.affines.apply_affine(image.affine, ijk)  # type: ignore[no-untyped-call]
        assert np.allclose(ras, lps * np.array([-1, -1, 1]), atol=1e-4)
        data = np.asarray(image.dataobj)
        source = p.ct.array if label_map is None else label_map.array
        assert np.array_equal(data, source.transpose(2, 1, 0))
        assert image.header.get_sform(coded=True)[1] == 1
    assert json.loads((tmp_path / "truth.json").read_text()) == p.truth


def test_cli_writes_dicom_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--seed", "3", "--out", str(tmp_path), "--levels", "L2", "L4",
                 "--spacing", "3", "3", "3", "--matrix", "64", "--lesions", "1",
                 "--compression", "L3", "--compression-kind", "crush",
                 "--patient-id", "CLI-1"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("phantom seed=3:") and "\n" not in line
    files = sorted((tmp_path / "dicom").glob("*.dcm"))
    truth = json.loads((tmp_path / "truth" / "truth.json").read_text())
    assert len(files) == truth["grid"]["size"][2]
    assert truth["compression"]["level"] == "L3" and truth["compression"]["kind"] == "crush"
    assert len(truth["lesions"]) == 1
    assert pydicom.dcmread(files[0], stop_before_pixels=True).PatientID == "CLI-1"
    assert {p.name for p in (tmp_path / "truth").iterdir()} == {
        "ct.nii.gz", "vertebrae.nii.gz", "muscles.nii.gz", "lesions.nii.gz", "truth.json"}


def test_cli_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--seed", "1", "--out", "/tmp/unused", "--compression", "C4"])
    assert exc.value.code == 2
    assert "compression" in capsys.readouterr().err
