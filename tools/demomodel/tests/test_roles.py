"""The muscle and lesion roles: targets, patches, a few iterations, export, CLI and metrics."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import phantom
from demomodel import data, export, role_eval, roles, train
from demomodel.network import NetworkConfig, PlainUNet
from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.geometry import Geometry
from spinemets.labelmaps import LabelMap

TINY_PATCH = (16, 16, 16)
LYTIC, BLASTIC, MIXED = (labels.by_name(f"lesion_{k}").value
                         for k in ("lytic", "blastic", "mixed"))


@pytest.fixture(scope="module")
def muscle_cases() -> list[data.Case]:
    """Two lumbar phantoms at 6 mm in the canonical pose, muscle channels."""
    return [data.make_case(phantom.PhantomOptions(seed=seed, spacing=(6.0, 6.0, 6.0),
                                                  levels=("T12", "L3"), max_rotation_deg=0.0),
                           roles.MUSCLES)
            for seed in (11, 12)]


def test_channels_are_the_catalogue_groups_in_order() -> None:
    assert roles.MUSCLES.channels == ("background", "deep_back_muscle_left",
                                      "deep_back_muscle_right", "psoas_major_left",
                                      "psoas_major_right", "quadratus_lumborum_left",
                                      "quadratus_lumborum_right")
    assert roles.LESIONS.channels == ("background", "lesion_lytic", "lesion_blastic",
                                      "lesion_mixed")
    lut = data.value_to_channel(roles.LESIONS.channels)
    assert (lut[LYTIC], lut[BLASTIC], lut[MIXED]) == (1, 2, 3)
    assert lut[labels.vertebra("L1").value] == lut[101] == 0


def test_cache_folders_keep_the_vertebra_name_and_prefix_the_others() -> None:
    fingerprint = data.phantom_fingerprint()
    assert data.VERTEBRAE.folder((2.0, 2.0, 2.0)) == f"2x2x2-{fingerprint}"
    assert roles.MUSCLES.folder((2.5, 2.5, 2.5)) == f"muscles-2.5x2.5x2.5-{fingerprint}"
    assert roles.LESIONS.folder((1.5, 1.5, 1.5)) == f"lesions-crop10-1.5x1.5x1.5-{fingerprint}"
    assert data.VERTEBRAE.folder((2.0, 2.0, 2.0), "scanner") == f"scanner-2x2x2-{fingerprint}"


def test_muscle_targets_are_lateral(muscle_cases: list[data.Case]) -> None:
    """Patient left is +x (LPS), the last array axis: every left muscle lies at larger x."""
    for case in muscle_cases:
        assert set(np.unique(case.target)) == set(range(7))
        columns = {c: np.argwhere(case.target == c)[:, 2].mean() for c in range(1, 7)}
        for left in (1, 3, 5):
            assert columns[left] > columns[left + 1]


def test_muscles_are_never_mirrored_and_lesions_may_be() -> None:
    assert roles.ROLES["muscles"].augmentation.mirror_x == 0.0
    assert roles.ROLES["lesions"].augmentation.mirror_x > 0.0


def test_lesion_phantoms_hold_lesions_inside_vertebrae() -> None:
    options = roles.lesion_options(data.TRAIN_SEEDS.start, (3.0, 3.0, 3.0))
    assert 2 <= options.lesions <= 7 and options.matrix == 80
    generated = phantom.generate(options)
    lesions = generated.lesions.array > 0
    assert lesions.any()
    assert (generated.vertebrae.array[lesions] > 0).all()


def test_lesion_cases_are_cropped_as_the_segmenter_crops() -> None:
    """The vertebrae T1-L5 + 10 mm, at least the patch (96 mm): every lesion voxel is kept."""
    options = roles.lesion_options(data.TRAIN_SEEDS.start, (3.0, 3.0, 3.0))
    generated = phantom.generate(options)
    case = data.make_case(options, roles.LESIONS)
    assert roles.LESIONS.crop is not None and roles.LESIONS.crop.margin_mm == 10.0
    assert roles.LESIONS.crop.min_extent_mm == (96.0, 96.0, 96.0)
    assert case.image.shape[1] < generated.ct.array.shape[1]
    assert case.image.shape[2] < generated.ct.array.shape[2]
    assert min(case.image.shape) >= 96 / 3
    lut = data.value_to_channel(roles.LESIONS.channels)
    assert np.array_equal(np.bincount(case.target.ravel(), minlength=4)[1:],
                          np.bincount(lut[generated.lesions.array].ravel(), minlength=4)[1:])


def test_scanner_grid_lesion_cases_are_cropped_on_the_model_grid() -> None:
    """Painted at 1.5 mm, resampled to 3 mm, then cropped: every lesion voxel is kept."""
    options = replace(roles.lesion_options(data.TRAIN_SEEDS.start, (3.0, 3.0, 3.0)),
                      spacing=(1.5, 1.5, 1.5), matrix=160)
    cropped = data.make_case(options, roles.LESIONS, resample_to=(3.0, 3.0, 3.0))
    whole = data.make_case(options, replace(roles.LESIONS, crop=None),
                           resample_to=(3.0, 3.0, 3.0))
    assert cropped.image.shape[1] < whole.image.shape[1]
    assert cropped.image.shape[2] < whole.image.shape[2]
    assert min(cropped.image.shape) >= 96 / 3
    counts = np.bincount(cropped.target.ravel(), minlength=4)[1:]
    assert counts.sum() > 0
    assert np.array_equal(counts, np.bincount(whole.target.ravel(), minlength=4)[1:])


def test_half_the_lesion_patches_are_centred_on_lesions() -> None:
    target = np.zeros((40, 40, 40), dtype=np.uint8)
    target[20:22, 20:22, 20:22] = 1
    case = data.Case(0, np.zeros((40, 40, 40), dtype=np.int16), target)
    no_aug = data.Augmentation(mirror_x=0.0, truncate_z=0.0)
    sampler = data.PatchSampler([case], data.NORMALIZATION, TINY_PATCH, np.random.default_rng(0),
                                foreground_fraction=roles.ROLES["lesions"].foreground_fraction,
                                augmentation=no_aug)
    _, y = sampler.batch(8)
    assert sum(bool((t == 1).any()) for t in y) >= 4


def test_a_few_iterations_reduce_the_loss(muscle_cases: list[data.Case]) -> None:
    torch.manual_seed(0)
    model = PlainUNet(NetworkConfig(TINY_PATCH, (8, 16), 7))
    sampler = data.PatchSampler(muscle_cases, roles.ROLES["muscles"].normalization, TINY_PATCH,
                                np.random.default_rng(0), foreground_fraction=1.0,
                                augmentation=roles.ROLES["muscles"].augmentation)
    losses = train.fit(model, model, train.plain_loss, sampler, train.Phase(30, 2, 1e-2, 600),
                       bf16=False)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_export_of_a_role_writes_its_channels(tmp_path: Path) -> None:
    config = NetworkConfig(TINY_PATCH, (4, 8), 7)
    checkpoint = {
        "state_dict": PlainUNet(config).state_dict(), "role": "muscles",
        "model": {"patch_size_zyx": list(TINY_PATCH), "features": [4, 8], "num_classes": 7},
        "channels": list(roles.MUSCLES.channels), "mirror_axes": [],
        "spacing_zyx": [2.5, 2.5, 2.5],
        "normalization": {"lower": -250.0, "upper": 250.0, "mean": 0.0, "std": 100.0},
        "training": {"iterations": 0, "script": "tools/demomodel/train.py"},
    }
    export.export(checkpoint, tmp_path / "muscles")
    spec = ModelSpec.load(tmp_path / "muscles" / "model.json")
    assert spec.name == spec.role == "muscles" and spec.demo and spec.title == export.TITLE
    assert [spec.labels[str(c)] for c in range(7)] == list(roles.MUSCLES.channels)
    assert spec.channel_values == (0, 101, 102, 103, 104, 105, 106)
    assert spec.mirror_axes == () and spec.decision == "argmax"
    assert spec.spacing_zyx == (2.5, 2.5, 2.5)
    raw = json.loads((tmp_path / "muscles" / "model.json").read_text())
    assert raw["architecture"].startswith("PlainConvUNet, 2 stages")
    assert "dims: [ 7, 16, 16, 16 ]" in (tmp_path / "muscles" / "config.pbtxt").read_text()


def test_the_role_option_selects_a_role_and_leaves_the_vertebra_defaults() -> None:
    run = train._parse(["--role", "lesions", "--out", "x", "--minutes", "2", "--iterations", "7",
                        "--train-phantoms", "4", "--foreground", "0.5"])
    config = run.config
    assert isinstance(config, roles.RoleConfig) and config.role == "lesions"
    assert (run.out, run.version) == (Path("x"), "1")
    assert (config.iterations, config.time_budget_s, config.foreground_fraction) == (7, 120.0,
                                                                                      0.5)
    assert config.train_seeds == (data.TRAIN_SEEDS.start, data.TRAIN_SEEDS.start + 4)
    assert config.learning_rate == roles.ROLES["lesions"].learning_rate
    assert config.phantom_grid == "model"  # as the committed lesion model was trained
    vertebrae = train._parse(["--out", "x"]).config
    assert vertebrae == train.TrainConfig()
    assert isinstance(vertebrae, train.TrainConfig) and vertebrae.phantom_grid == "scanner"
    on_model_grid = train._parse(["--out", "x", "--phantom-grid", "model"]).config
    assert isinstance(on_model_grid, train.TrainConfig) and on_model_grid.phantom_grid == "model"
    widened = train._parse(["--out", "x", "--bone-features", "16,32,48,64,96", "--version", "2"])
    assert isinstance(widened.config, train.TrainConfig)
    assert (widened.config.bone_features, widened.version) == ((16, 32, 48, 64, 96), "2")
    top_k = train._parse(["--out", "x", "--bone-top-k", "10", "--level-top-k", "20"]).config
    assert isinstance(top_k, train.TrainConfig)
    assert (top_k.bone_top_k, top_k.level_top_k) == (10.0, 20.0)
    assert (vertebrae.bone_top_k, vertebrae.level_top_k) == (100.0, 100.0)  # plain CE by default
    nearest = train._parse(["--out", "x", "--level-upsampling", "nearest"]).config
    assert isinstance(nearest, train.TrainConfig) and nearest.model.level_upsampling == "nearest"
    assert vertebrae.model.level_upsampling == "trilinear"  # version 6 on
    one = train._parse(["--out", "x", "--level-phases", "1"]).config
    assert isinstance(one, train.TrainConfig) and one.model.level_phases == 1
    assert vertebrae.model.level_phases == 2  # version 8 on
    with pytest.raises(SystemExit):
        train._parse(["--out", "x", "--level-phases", "3"])


def test_lesion_scores_count_detection_typing_and_false_positives() -> None:
    truth = np.zeros((20, 20, 20), dtype=np.uint8)
    truth[2:5, 2:5, 2:5] = LYTIC
    truth[10:14, 10:14, 10:14] = BLASTIC
    prediction = np.zeros_like(truth)
    prediction[2:5, 2:5, 3:5] = LYTIC  # detected, right type
    prediction[10:14, 10:14, 10:12] = MIXED  # detected, wrong type
    prediction[17:19, 17:19, 17:19] = BLASTIC  # nowhere near a lesion
    score = role_eval.lesion_score(truth, prediction)
    assert (score.lesions, score.detected, score.typed) == (2, 2, 1)
    assert (score.predicted_components, score.false_positives) == (3, 1)
    summary = score.summary()
    assert summary["dice"] == {"lesion_lytic": round(2 * 18 / (27 + 18), 4),
                               "lesion_blastic": 0.0, "lesion_mixed": 0.0,
                               "any": round(2 * 50 / (91 + 58), 4)}
    precision = 2 / 3
    assert summary["f2"] == round(5 * precision / (4 * precision + 1), 4)


def test_lesion_scores_add_up_over_phantoms() -> None:
    truth = np.zeros((8, 8, 8), dtype=np.uint8)
    truth[1:3, 1:3, 1:3] = LYTIC
    total = role_eval.LesionScore()
    total.add(role_eval.lesion_score(truth, truth))
    total.add(role_eval.lesion_score(truth, np.zeros_like(truth)))
    summary = total.summary()
    assert (summary["lesions"], summary["detected"], summary["detection_rate"]) == (2, 1, 0.5)
    assert summary["dice"] == {"lesion_lytic": round(2 * 8 / 24, 4), "any": round(16 / 24, 4)}


def test_muscle_dice_penalises_a_muscle_found_where_there_is_none() -> None:
    truth = np.zeros((6, 6, 6), dtype=np.uint8)
    truth[:3] = 101
    prediction = truth.copy()
    prediction[4:] = 104
    assert role_eval.muscle_dice(truth, prediction) == {"deep_back_muscle_left": 1.0,
                                                        "psoas_major_right": 0.0}


def _map(array: np.ndarray, names: dict[int, str]) -> LabelMap:
    geometry = Geometry((30, 30, 30), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    return LabelMap(array.astype(np.uint8), geometry, names, "test", "1")


def test_lesion_acceptance_counts_lesions_of_5_mm_and_vertebra_types() -> None:
    """Two vertebrae; 5 mm cubes (6.2 mm equivalent sphere) count, a 2 mm one does not."""
    l1, l2 = labels.vertebra("L1").value, labels.vertebra("L2").value
    vertebrae = np.zeros((30, 30, 30), dtype=np.uint8)
    vertebrae[:15, 5:25, 5:25], vertebrae[15:, 5:25, 5:25] = l1, l2
    names = {l1: "vertebra_L1", l2: "vertebra_L2"}
    lesion_names = {LYTIC: "lesion_lytic", BLASTIC: "lesion_blastic", MIXED: "lesion_mixed"}
    truth = np.zeros_like(vertebrae)
    truth[5:10, 6:11, 6:11] = LYTIC
    truth[20:25, 6:11, 6:11] = BLASTIC
    truth[20:22, 20:22, 20:22] = LYTIC  # 8 mm3: below 5 mm, and below risk's 0.1 mL
    prediction = np.zeros_like(vertebrae)
    prediction[5:10, 6:11, 7:12] = LYTIC  # found, L1 lytic
    prediction[20:25, 6:11, 6:11] = MIXED  # found with the wrong type
    prediction[17:22, 15:20, 15:20] = BLASTIC  # a false positive in L2: L2 becomes mixed
    prediction[5:10, 26:30, 26:30] = BLASTIC  # outside the vertebrae: never reported
    score = role_eval.lesion_acceptance(_map(vertebrae, names), _map(truth, lesion_names),
                                        _map(vertebrae, names), _map(prediction, lesion_names))
    assert (score.lesions, score.detected, score.predicted, score.false_positives) == (2, 2, 3, 1)
    assert score.f2 == pytest.approx(5 * (2 / 3) / (4 * (2 / 3) + 1))
    assert score.types == {("lytic", "lytic"): 1, ("blastic", "mixed"): 1}
    assert score.vertebra_type_accuracy == 0.5
    total = role_eval.LesionAcceptance()
    total.add(score)
    total.add(score)
    assert total.summary()["vertebra_types"] == {"blastic->mixed": 2, "lytic->lytic": 2}
