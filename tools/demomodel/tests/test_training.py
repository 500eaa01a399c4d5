"""Training pieces on tiny phantoms: network plan, patches, loss, a few iterations, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import phantom
from demomodel import data, export, train
from demomodel.loss import DiceCELoss
from demomodel.network import NetworkConfig, build
from segmenter.spec import ModelSpec

TINY_PATCH = (16, 16, 16)


@pytest.fixture(scope="module")
def tiny_cases() -> list[data.Case]:
    """Two lumbar phantoms at 6 mm (a few thousand voxels each)."""
    return [data.make_case(phantom.PhantomOptions(seed=seed, spacing=(6.0, 6.0, 6.0),
                                                  levels=("T11", "L2"), max_rotation_deg=0.0))
            for seed in (11, 12)]


def test_stride_plan_halves_axes_down_to_the_bottleneck_minimum() -> None:
    config = NetworkConfig((160, 64, 64), (8, 16, 32, 48, 64, 96), 19)
    assert config.strides == ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 1, 1))
    model = build(config).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 64, 32, 32))  # any multiple of the total stride
    assert out.shape == (1, 19, 64, 32, 32)


def test_targets_are_channels_of_vertebrae_and_sacrum_only(tiny_cases: list[data.Case]) -> None:
    lut = data.value_to_channel()
    assert lut[8] == 1 and lut[24] == 17 and lut[26] == 18
    assert lut[101] == lut[201] == lut[7] == 0
    for case in tiny_cases:
        assert case.image.shape == case.target.shape
        assert {12, 13, 14} <= set(np.unique(case.target))  # T12, L1, L2 in view
        assert case.target.max() < len(data.CHANNELS)


def test_cache_round_trip(tmp_path: Path, tiny_cases: list[data.Case]) -> None:
    case = tiny_cases[0]
    case.save(tmp_path / "case.npz")
    loaded = data.Case.load(tmp_path / "case.npz")
    assert loaded.seed == case.seed
    np.testing.assert_array_equal(loaded.image, case.image)
    np.testing.assert_array_equal(loaded.target, case.target)


def test_patches_oversample_foreground_and_pad_with_water(tiny_cases: list[data.Case]) -> None:
    patch = (48, 24, 24)  # taller than the phantoms: patches always reach outside
    no_aug = data.Augmentation(mirror_x=0.0, truncate_z=0.0, scale=(1.0, 1.0), shift=(0.0, 0.0),
                               noise_sigma=(0.0, 0.0))
    sampler = data.PatchSampler(tiny_cases, data.NORMALIZATION, patch,
                                np.random.default_rng(0), augmentation=no_aug)
    x, y = sampler.batch(8)
    assert x.shape == (8, 1, *patch) and x.dtype == np.float32
    assert y.shape == (8, *patch) and y.dtype == np.int64
    assert sum(bool((t > 0).any()) for t in y[:4]) == 4  # the first half: foreground-centred
    outside = (x[:, 0] == 0.0) & (y == 0)
    assert outside.any()  # padding: water (0 after normalisation), background target
    assert x.min() >= (data.NORMALIZATION.lower - data.NORMALIZATION.mean) / data.NORMALIZATION.std


def test_dice_ce_loss_is_lowest_for_the_right_answer() -> None:
    target = torch.zeros(1, 8, 8, 8, dtype=torch.int64)
    target[0, 2:6, 2:6, 2:6] = 1
    target[0, 6:, 6:, 6:] = 2
    right = torch.nn.functional.one_hot(target, 3).permute(0, 4, 1, 2, 3).float() * 20
    wrong = torch.roll(right, 1, dims=1)
    loss = DiceCELoss()
    assert loss(right, target) < 0.01 < 1.0 < loss(wrong, target)


def test_a_few_iterations_reduce_the_loss(tiny_cases: list[data.Case]) -> None:
    torch.manual_seed(0)
    config = train.TrainConfig(patch_size_zyx=TINY_PATCH, features=(8, 16), iterations=30,
                               batch_size=2, learning_rate=1e-2, bf16=False)
    sampler = data.PatchSampler(tiny_cases, data.NORMALIZATION, TINY_PATCH,
                                np.random.default_rng(0), foreground_fraction=1.0)
    losses = train.fit(build(config.network), sampler, config)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_poly_schedule() -> None:
    assert train.poly_lr(1e-2, 0.0) == 1e-2
    assert train.poly_lr(1e-2, 1.0) == 0.0
    assert train.poly_lr(1e-2, 0.5) == pytest.approx(1e-2 * 0.5 ** 0.9)


def test_export_writes_a_spec_the_segmenter_accepts(tmp_path: Path) -> None:
    config = NetworkConfig(TINY_PATCH, (4, 8), len(data.CHANNELS))
    model = build(config)
    checkpoint = {
        "state_dict": model.state_dict(),
        "network": {"patch_size_zyx": list(TINY_PATCH), "features": [4, 8],
                    "num_classes": len(data.CHANNELS)},
        "spacing_zyx": [2.0, 2.0, 2.0],
        "normalization": {"lower": -1000.0, "upper": 1500.0, "mean": 0.0, "std": 500.0},
        "training": {"iterations": 0, "script": "tools/demomodel/train.py"},
    }
    export.export(checkpoint, tmp_path / "vertebrae")
    spec = ModelSpec.load(tmp_path / "vertebrae" / "model.json")
    assert spec.name == spec.role == "vertebrae" and spec.version == "1"
    assert spec.patch_size_zyx == TINY_PATCH and spec.num_channels == 19
    raw = json.loads((tmp_path / "vertebrae" / "model.json").read_text())
    assert raw["training"] == checkpoint["training"]
    assert (tmp_path / "vertebrae" / "1" / "model.onnx").stat().st_size > 0
