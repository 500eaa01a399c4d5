"""Cropped roles: the box, the sub-volume's geometry, and a role run inside another's box."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from segmenter.crop import (
    CropRule,
    box_around,
    crop_volume,
    extend,
    group_box,
    paste,
    patch_extent,
)
from segmenter.inference import segment
from segmenter.routing import run_order, segment_roles
from segmenter.settings import Settings
from segmenter.sliding import Predict
from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

VolumeFactory = Callable[..., Volume]
LESION_NAMES = ("lesion_lytic", "lesion_blastic", "lesion_mixed")


def test_box_grows_by_the_margin_in_mm_per_axis() -> None:
    mask = np.zeros((40, 50, 60), dtype=bool)
    mask[10:20, 20:30, 30:35] = True
    box = box_around(mask, (2.0, 1.0, 0.5), margin_mm=4.0, min_extent_mm=(0.0, 0.0, 0.0))
    assert box == (slice(8, 22), slice(16, 34), slice(22, 43))


def test_box_is_widened_to_the_patch_and_kept_inside_the_array() -> None:
    mask = np.zeros((40, 50, 60), dtype=bool)
    mask[1:3, 24:26, 57:59] = True
    box = box_around(mask, (1.0, 1.0, 1.0), margin_mm=1.0, min_extent_mm=(10.0, 20.0, 100.0))
    assert box is not None
    assert [s.stop - s.start for s in box] == [10, 20, 60]  # the last axis is taken whole
    assert box[0] == slice(0, 10)  # shifted back inside at the first slice
    assert box[1].start <= 23 and box[1].stop >= 27  # the grown labels stay inside
    assert box_around(np.zeros((4, 4, 4), bool), (1.0, 1.0, 1.0), 5.0, (0, 0, 0)) is None


def test_sub_volume_keeps_every_voxel_where_it_was(volume: VolumeFactory) -> None:
    rotated = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])  # sagittal
    array = np.arange(8 * 9 * 10, dtype=np.int16).reshape(8, 9, 10)
    full = volume(array, spacing=(0.7, 0.8, 2.5), direction=rotated)
    box = (slice(2, 6), slice(3, 9), slice(1, 5))
    part = crop_volume(full, box)
    assert np.array_equal(part.array, array[box])
    assert part.slice_instance_uids == full.slice_instance_uids[2:6]
    assert part.geometry.size == (4, 6, 4) and part.geometry.spacing == full.geometry.spacing
    for ijk in [(0, 0, 0), (3, 5, 3), (2, 1, 0)]:  # column, row, slice in the part
        whole = (ijk[0] + 1, ijk[1] + 3, ijk[2] + 2)
        np.testing.assert_allclose(part.geometry.index_to_patient(ijk),
                                   full.geometry.index_to_patient(whole), atol=1e-9)
    label_map = LabelMap(np.ones(part.array.shape, np.uint8), part.geometry,
                         {1: "lesion_lytic"}, "lesions", "1", demo=True)
    pasted = paste(label_map, box, full.geometry)
    assert pasted.geometry == full.geometry and pasted.demo
    assert pasted.array.sum() == pasted.array[box].sum() == part.array.size


def test_patch_extent_follows_the_array_axes(make_spec: Callable[..., ModelSpec],
                                             volume: VolumeFactory) -> None:
    spec = make_spec(patch=(8, 16, 32), spacing=(3.0, 2.0, 1.0))  # z 24 mm, y 32, x 32 mm
    axial = volume(np.zeros((4, 4, 4), np.int16))
    assert patch_extent(axial.geometry, spec) == (24.0, 32.0, 32.0)
    sagittal = volume(np.zeros((4, 4, 4), np.int16),
                      direction=[[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    # slices run along x, rows along z, columns along y
    assert patch_extent(sagittal.geometry, spec) == (32.0, 24.0, 32.0)


def test_cropped_roles_run_after_their_reference() -> None:
    crops = {"lesions": CropRule(around="vertebrae")}
    assert run_order(["lesions", "muscles", "vertebrae"], crops) == ["muscles", "vertebrae",
                                                                    "lesions"]
    assert run_order(["lesions", "muscles"], crops) == ["lesions", "muscles"]


def test_crop_rules_must_name_a_served_uncropped_reference() -> None:
    default = Settings()
    assert default.crops == {"lesions": CropRule(around="vertebrae", margin_mm=10.0,
                                                 extend_reference=True)}
    assert Settings(roles=("vertebrae",)).crops  # inert: lesions not served
    for roles, crops in [
            (("vertebrae", "lesions"), {"lesions": {"around": "muscles"}}),  # not served
            (("vertebrae", "lesions"), {"lesions": {"around": "lesions"}}),
            (("vertebrae", "muscles", "lesions"),
             {"lesions": {"around": "vertebrae"}, "vertebrae": {"around": "muscles"}}),
            (("vertebrae", "lesions"), {"lesions": {"around": "vertebrae", "margin_mm": -1}})]:
        with pytest.raises(ValidationError):
            Settings.model_validate({"roles": roles, "crops": crops})


def _predict(path: Path) -> Predict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(["logits"], {"input": batch})[0]


@pytest.fixture()
def two_roles(model_dir: Callable[..., Path], tmp_path: Path
              ) -> tuple[dict[str, ModelSpec], dict[str, Predict]]:
    """A "vertebra" net that labels voxels above ~200 HU and a "lesion" net (normalised by 50
    instead of 100) that labels voxels above ~100 HU; both the tiny one-convolution network."""
    folders = {
        "vertebrae": model_dir(tmp_path, names=("vertebra_L1",), spacing=(2.0, 2.0, 2.0)),
        "lesions": model_dir(tmp_path, names=LESION_NAMES, spacing=(2.0, 2.0, 2.0),
                             name="lesions", role="lesions", normalization={
                                 "scheme": "CTNormalization", "mean": 0.0, "std": 50.0,
                                 "lower": -1000.0, "upper": 1500.0})}
    specs = {role: ModelSpec.load(folder / "model.json") for role, folder in folders.items()}
    predicts = {role: _predict(folder / "1" / "model.onnx") for role, folder in folders.items()}
    return specs, predicts


def _ct(volume: VolumeFactory) -> Volume:
    """Bone (400 HU) that both nets see, and a 150 HU block 60 mm away only the lesion net sees.

    On the models' 2 mm grid, so that the box's grid is the volume's (resampling a box of
    another spacing moves the model grid by a fraction of a voxel; see the phantom test in
    tools/demomodel/tests/test_committed_roles.py).
    """
    array = np.zeros((30, 45, 52), dtype=np.int16)
    array[8:22, 8:19, 8:19] = 400
    array[9:21, 30:39, 38:48] = 150
    return volume(array, spacing=(2.0, 2.0, 2.0))


def test_a_cropped_role_equals_the_whole_volume_run_inside_its_box(
        two_roles: tuple[dict[str, ModelSpec], dict[str, Predict]],
        volume: VolumeFactory) -> None:
    specs, predicts = two_roles
    ct = _ct(volume)

    def run(role: str, part: Volume) -> LabelMap:
        return segment(part, specs[role], predicts[role])

    crops = {"lesions": CropRule(around="vertebrae", margin_mm=6.0)}
    lesions, vertebrae = segment_roles(ct, ["lesions", "vertebrae"], specs, crops, run)
    whole = run("lesions", ct)
    assert lesions.geometry == whole.geometry == ct.geometry
    assert lesions.labels == whole.labels and lesions.model_name == "lesions"
    box = group_box(vertebrae, labels.Group.VERTEBRA, 6.0, patch_extent(ct.geometry,
                                                                       specs["lesions"]))
    assert box is not None
    outside = np.ones(ct.array.shape, bool)
    outside[box] = False
    assert not lesions.array[outside].any()
    assert whole.array[outside].any()  # the 150 HU block, outside the box
    inside_agreement = np.mean(lesions.array[box] == whole.array[box])
    assert inside_agreement >= 0.999 and lesions.array[box].any()
    # Without its reference in the request the role runs on the whole volume.
    [alone] = segment_roles(ct, ["lesions"], specs, crops, run)
    assert np.array_equal(alone.array, whole.array)


def test_a_role_with_no_reference_labels_gives_an_empty_map(
        two_roles: tuple[dict[str, ModelSpec], dict[str, Predict]],
        volume: VolumeFactory) -> None:
    specs, predicts = two_roles
    ct = volume(np.zeros((20, 30, 30), dtype=np.int16), spacing=(1.5, 1.5, 2.0))
    runs: list[str] = []

    def run(role: str, part: Volume) -> LabelMap:
        runs.append(role)
        return segment(part, specs[role], predicts[role])

    _, lesions = segment_roles(ct, ["vertebrae", "lesions"], specs,
                               {"lesions": CropRule(around="vertebrae")}, run)
    assert runs == ["vertebrae"]
    assert not lesions.array.any() and lesions.geometry == ct.geometry
    assert lesions.labels == specs["lesions"].label_names


def test_lesions_touching_a_vertebra_join_the_nearest_one(volume: VolumeFactory) -> None:
    """A lytic hole of L1 and the part of a lesion across the L1/L2 border join their
    vertebra; a lesion in soft tissue and the voxels of other labels stay as they are."""
    l1, l2, sacrum = (labels.by_name(n).value for n in ("vertebra_L1", "vertebra_L2", "sacrum"))
    geometry = volume(np.zeros((30, 20, 20), dtype=np.int16)).geometry
    vertebrae = np.zeros((30, 20, 20), dtype=np.uint8)
    vertebrae[2:12, 5:15, 5:15], vertebrae[14:24, 5:15, 5:15] = l1, l2
    vertebrae[26:30, 5:15, 5:15] = sacrum
    vertebrae[5:9, 8:12, 8:12] = 0  # a lytic hole inside L1 the vertebra model left out
    lesions = np.zeros_like(vertebrae)
    lesions[5:9, 8:12, 8:12] = 201
    lesions[10:16, 1:5, 1:5] = 201  # across the disc, touching both; lateral to the bodies
    lesions[10:16, 4, 4] = 201
    lesions[2:5, 17:19, 17:19] = 202  # in soft tissue, 2 voxels away from L1
    lesions[25, 8:10, 8:10] = 203  # touches the sacrum only
    names = {l1: "vertebra_L1", l2: "vertebra_L2", sacrum: "sacrum"}
    reference = LabelMap(vertebrae, geometry, names, "vertebrae", "1")
    part = LabelMap(lesions, geometry, {201: "lesion_lytic", 202: "lesion_blastic",
                                        203: "lesion_mixed"}, "lesions", "1")
    box = (slice(0, 30), slice(0, 20), slice(0, 20))
    result = extend(reference, part, box, labels.Group.VERTEBRA).array
    assert (result[5:9, 8:12, 8:12] == l1).all()
    assert (result[10:12, 1:5, 1:5] == l1).all() and (result[14:16, 1:5, 1:5] == l2).all()
    assert not result[2:5, 17:19, 17:19].any() and not result[25, 8:10, 8:10].any()
    assert (result[26:] == vertebrae[26:]).all() and result.sum() > vertebrae.sum()
    assert not vertebrae[5:9, 8:12, 8:12].any()  # the input is left as it was
    empty_box = (slice(0, 1), slice(0, 20), slice(0, 20))
    assert extend(reference, part, empty_box, labels.Group.VERTEBRA) is reference
