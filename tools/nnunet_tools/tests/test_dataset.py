"""Phantoms as an nnU-Net v2 raw dataset: nnU-Net's own checks pass and reads what we wrote.

Planning, preprocessing and training on such a dataset are exercised by the equivalence test's
fixture (:mod:`nnunet_tools.fixture`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813 - the conventional alias
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

from nnunet_tools.__main__ import export_main
from nnunet_tools.dataset import label_names
from phantom.generator import generate
from phantom.options import PhantomOptions
from segmenter.orientation import Reorientation
from spinemets import labels

OPTIONS = {"levels": ("L2", "L4"), "spacing": (2.5, 2.5, 3.0), "matrix": 48, "lesions": 1}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    assert export_main(["--out", str(out), "--dataset-id", "993", "--name", "Test",
                        "--first-seed", "41", "--cases", "2", "--levels", "L2", "L4",
                        "--spacing", "2.5", "2.5", "3.0", "--matrix", "48", "--lesions", "1",
                        "--maps", "vertebrae", "lesions", "--orientation", "RAS"]) == 0
    return out / "Dataset993_Test"


def test_dataset_json_names_catalogue_labels(exported: Path) -> None:
    description = json.loads((exported / "dataset.json").read_text())
    names = label_names(["vertebrae", "lesions"])
    assert names[:17] == [f"vertebra_{lv}" for lv in labels.LEVELS]
    assert names[17:] == ["sacrum", "lesion_lytic", "lesion_blastic", "lesion_mixed"]
    assert description["labels"] == {"background": 0, **{n: i for i, n in enumerate(names, 1)}}
    assert description["channel_names"] == {"0": "CT"} and description["numTraining"] == 2
    assert sorted(p.name for p in (exported / "imagesTr").iterdir()) == [
        "phantom_000041_0000.nii.gz", "phantom_000042_0000.nii.gz"]
    verify_dataset_integrity(str(exported), num_processes=1)  # nnU-Net's own check


def test_nnunet_reads_the_canonical_arrays(exported: Path) -> None:
    """SimpleITKIO (nnU-Net's reader) returns the RAS canonical CT and its truth, merged."""
    phantom = generate(PhantomOptions(seed=42, **OPTIONS))  # type: ignore[arg-type]
    reorientation = Reorientation.of(phantom.ct.geometry, "RAS")
    image, properties = SimpleITKIO().read_images(
        [str(exported / "imagesTr" / "phantom_000042_0000.nii.gz")])
    assert np.array_equal(image[0], reorientation.to_canonical(phantom.ct.array))
    assert np.allclose(properties["spacing"], reorientation.spacing_zyx)
    seg, _ = SimpleITKIO().read_seg(str(exported / "labelsTr" / "phantom_000042.nii.gz"))
    names = label_names(["vertebrae", "lesions"])
    values = np.array([0, *(labels.by_name(n).value for n in names)])[seg[0].astype(int)]
    lesions = reorientation.to_canonical(phantom.lesions.array)
    expected = np.where(lesions > 0, lesions, reorientation.to_canonical(phantom.vertebrae.array))
    assert np.array_equal(values, expected)
    assert (lesions > 0).any() and len(np.unique(values)) >= 4


def test_voxels_keep_their_patient_positions(exported: Path) -> None:
    """The files' geometry puts every canonical voxel where the phantom's voxel was."""
    phantom = generate(PhantomOptions(seed=41, **OPTIONS))  # type: ignore[arg-type]
    geometry = phantom.ct.geometry
    reorientation = Reorientation.of(geometry, "RAS")
    columns, rows, slices = geometry.size
    k, j, i = np.meshgrid(np.arange(slices), np.arange(rows), np.arange(columns), indexing="ij")
    positions = geometry.index_to_patient(np.stack([i, j, k], axis=-1))  # [slice, row, col, 3]
    canonical = np.stack([reorientation.to_canonical(positions[..., a]) for a in range(3)], -1)
    image = sitk.ReadImage(str(exported / "imagesTr" / "phantom_000041_0000.nii.gz"))
    for z, y, x in [(0, 0, 0), (3, 17, 40), tuple(n - 1 for n in canonical.shape[:3])]:
        point = image.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        assert np.allclose(point, canonical[z, y, x], atol=1e-3)
