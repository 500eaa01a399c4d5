"""Training pieces on tiny phantoms: network, patches, losses, a few iterations, export."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

import phantom
from demomodel import data, export, train
from demomodel.loss import IGNORE, DiceCELoss, level_loss, level_targets
from demomodel.network import (
    LevelUpsampling,
    ModelConfig,
    NetworkConfig,
    PlainUNet,
    TwoScaleUNet,
    widen,
)
from segmenter.inference import to_model_grid
from segmenter.spec import ModelSpec

TINY_PATCH = (16, 16, 16)
VERTEBRA_MODEL = Path(__file__).resolve().parents[3] / "triton-models" / "vertebrae"


@pytest.fixture(scope="module")
def tiny_cases() -> list[data.Case]:
    """Two lumbar phantoms at 6 mm (a few thousand voxels each)."""
    return [data.make_case(phantom.PhantomOptions(seed=seed, spacing=(6.0, 6.0, 6.0),
                                                  levels=("T11", "L2"), max_rotation_deg=0.0))
            for seed in (11, 12)]


def test_default_stride_plans_halve_axes_down_to_the_bottleneck_minimum() -> None:
    config = train.TrainConfig().model
    assert config.patch_size_zyx == (192, 64, 64)
    assert config.bone.strides == ((1, 1, 1),) + ((2, 2, 2),) * 4  # bottleneck 12 x 4 x 4
    assert config.levels.patch_size_zyx == (96, 32, 32)
    assert config.levels.strides[-1] == (2, 1, 1)  # bottleneck 6 x 4 x 4
    assert config.num_classes == len(data.CHANNELS) == 19


@pytest.mark.parametrize("upsampling", ["nearest", "trilinear"])
def test_two_scale_unet_outputs_log_probabilities_of_bone_times_level(
        upsampling: LevelUpsampling) -> None:
    torch.manual_seed(0)
    model = TwoScaleUNet(ModelConfig(TINY_PATCH, (4, 8), (8, 16), 18, upsampling)).eval()
    x = torch.randn(3, 1, *TINY_PATCH)
    with torch.no_grad():
        out = model(x)
        bone = torch.softmax(model.bone(x), dim=1)
        logits = model.level_logits(x)
    assert out.shape == (3, 19, *TINY_PATCH)
    probs = torch.exp(out)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3, *TINY_PATCH))
    torch.testing.assert_close(probs[:, 0], bone[:, 0])
    if upsampling == "nearest":  # a voxel of a 2-cube takes the level of its block
        voxel_logits = logits[:, :, 1, 2, 3]
    else:  # odd voxel 2j + 1 sits a quarter block from block j towards block j + 1, per axis
        voxel_logits = torch.stack([
            wz * wy * wx * logits[:, :, z, y, x] for z, wz in ((1, 0.75), (2, 0.25))
            for y, wy in ((2, 0.75), (3, 0.25)) for x, wx in ((3, 0.75), (4, 0.25))]).sum(dim=0)
    expected = bone[:, 1, 3, 5, 7, None] * torch.softmax(voxel_logits, dim=1)
    torch.testing.assert_close(probs[:, 1:, 3, 5, 7], expected)


def test_two_phase_level_logits_average_the_grid_and_the_grid_shifted_by_one_voxel() -> None:
    torch.manual_seed(0)
    model = TwoScaleUNet(ModelConfig(TINY_PATCH, (4, 8), (8, 16), 18, "trilinear", 2)).eval()
    x = torch.randn(2, 1, *TINY_PATCH)
    # The second phase sees voxel i + 1 at i along every axis, the last voxel repeated.
    index = [np.minimum(np.arange(1, n + 1), n - 1) for n in TINY_PATCH]
    shifted = x[:, :, index[0]][:, :, :, index[1]][:, :, :, :, index[2]]
    with torch.no_grad():
        out = model(x)
        bone = torch.softmax(model.bone(x), dim=1)
        first, second = model.level_logits(x), model.level_logits(shifted)
    # Voxel (3, 5, 7): odd voxel 2j + 1 sits a quarter block from block j towards j + 1 on the
    # grid; on the shifted grid it is voxel 2j, a quarter block from block j towards j - 1.
    on_grid = torch.stack([
        wz * wy * wx * first[:, :, z, y, x] for z, wz in ((1, 0.75), (2, 0.25))
        for y, wy in ((2, 0.75), (3, 0.25)) for x, wx in ((3, 0.75), (4, 0.25))]).sum(dim=0)
    on_shifted = torch.stack([
        wz * wy * wx * second[:, :, z, y, x] for z, wz in ((1, 0.75), (0, 0.25))
        for y, wy in ((2, 0.75), (1, 0.25)) for x, wx in ((3, 0.75), (2, 0.25))]).sum(dim=0)
    expected = bone[:, 1, 3, 5, 7, None] * torch.softmax((on_grid + on_shifted) / 2, dim=1)
    torch.testing.assert_close(torch.exp(out)[:, 1:, 3, 5, 7], expected)
    torch.testing.assert_close(torch.exp(out)[:, 0], bone[:, 0])
    # One phase is the plain upsampled graph of versions 6 and 7, with the same weights.
    single = TwoScaleUNet(ModelConfig(TINY_PATCH, (4, 8), (8, 16), 18, "trilinear", 1)).eval()
    single.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(single(x), out)
    with pytest.raises(ValueError, match="level_phases"):
        ModelConfig(TINY_PATCH, (4, 8), (8, 16), 18, "trilinear", 3)


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` away from its default initialisation (norms and biases count too)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def test_a_widened_bone_unet_computes_what_the_narrow_one_did_and_can_learn() -> None:
    torch.manual_seed(0)
    narrow = _perturbed(TwoScaleUNet(ModelConfig((32, 32, 32), (4, 8, 12, 16), (4, 8, 12, 16),
                                                 3)))
    wide = TwoScaleUNet(ModelConfig((32, 32, 32), (8, 12, 16, 24), (4, 8, 12, 16), 3))
    widen(wide, narrow.state_dict())
    x = torch.randn(2, 1, 32, 32, 32)
    narrow.eval()
    wide.eval()
    with torch.no_grad():
        assert torch.allclose(wide(x), narrow(x), atol=1e-4)
    # The new channels are alive: their outgoing weights get a gradient at once.
    wide.train()
    wide(x)[:, 1].mean().backward()
    seg = wide.state_dict(keep_vars=True)["bone.decoder.seg_layers.2.weight"]
    assert seg.shape[1] == 8 and seg.grad is not None and seg.grad[:, 4:].abs().max() > 0
    with pytest.raises(ValueError, match="does not fit"):
        widen(narrow, wide.state_dict())


def test_a_run_widens_a_narrower_bone_unet_and_refuses_other_level_unets() -> None:
    narrow = train.TrainConfig(patch_size_zyx=TINY_PATCH, bone_features=(4, 8),
                               level_features=(8, 16))
    model = TwoScaleUNet(narrow.model).eval()
    checkpoint = {"state_dict": model.state_dict(), "model": asdict(narrow.model),
                  "training": {"iterations": 1}}
    wide, widened_from = train.start_from(replace(narrow, bone_features=(8, 12)), checkpoint)
    assert widened_from == [4, 8] and wide.config.bone_features == (8, 12)
    same, widened_from = train.start_from(narrow, checkpoint)
    assert widened_from is None
    x = torch.randn(1, 1, *TINY_PATCH)
    with torch.no_grad():
        assert torch.allclose(wide.eval()(x), model(x), atol=1e-4)
        assert torch.equal(same.eval()(x), model(x))
    with pytest.raises(ValueError, match="level U-Net has features"):
        train.start_from(replace(narrow, level_features=(8, 24)), checkpoint)


def test_level_targets_take_the_majority_level_of_each_block() -> None:
    target = torch.zeros(1, 6, 2, 2, dtype=torch.int64)
    target[0, 0, 0, 0] = 3  # one voxel of channel 3, the rest background
    target[0, 2:4] = 5
    target[0, 3, 0, 0] = 4  # seven voxels of 5, one of 4
    levels = level_targets(target, 18, 2)
    assert levels.tolist() == [[[[2]], [[4]], [[IGNORE]]]]


def test_targets_are_channels_of_vertebrae_and_sacrum_only(tiny_cases: list[data.Case]) -> None:
    lut = data.value_to_channel()
    assert lut[8] == 1 and lut[24] == 17 and lut[26] == 18
    assert lut[101] == lut[201] == lut[7] == 0
    for case in tiny_cases:
        assert case.image.shape == case.target.shape
        assert {12, 13, 14} <= set(np.unique(case.target))  # T12, L1, L2 in view
        assert case.target.max() < len(data.CHANNELS)


def test_resampled_channels_keep_each_structure_where_it_is() -> None:
    """Channels resampled 1 mm -> 2 mm: a block stays where it was, with the voxel count its
    volume gives, and a thin channel between two others is kept where it is the largest."""
    channels = np.zeros((20, 20, 20), dtype=np.uint8)
    channels[4:12, 4:12, 4:12] = 1
    channels[12:16, 4:12, 4:12] = 2
    out = data.resample_channels(channels, 3, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0))
    assert out.shape == (10, 10, 10)
    expected = np.zeros((10, 10, 10), dtype=np.uint8)
    expected[2:6, 2:6, 2:6] = 1
    expected[6:8, 2:6, 2:6] = 2
    np.testing.assert_array_equal(out, expected)


def test_scanner_grid_cases_are_what_the_segmenter_feeds_the_model() -> None:
    """A scanner-grid case holds the CT as the segmenter resamples it for the model, and its
    target puts every level in view where the scanner-grid truth has it."""
    options = phantom.PhantomOptions(seed=13, spacing=(1.5, 1.5, 3.0), levels=("L1", "L3"),
                                     max_rotation_deg=0.0)
    scanner, model = np.array([3.0, 1.5, 1.5]), (6.0, 6.0, 6.0)
    case = data.make_case(options, resample_to=model, clip=(-1000.0, 1500.0))
    generated = phantom.generate(options)
    spec = ModelSpec.load(VERTEBRA_MODEL / "model.json")
    served = to_model_grid(generated.ct.array, (3.0, 1.5, 1.5),
                           spec.model_copy(update={"spacing_zyx": model}))
    assert case.image.shape == served.shape
    np.testing.assert_allclose(data.NORMALIZATION.apply(case.image), served, atol=2e-3)
    # Edge-aligned grids: model voxel j is centred at (j + 1/2) * spacing - scanner / 2; a
    # shift by one voxel (6 mm) fails.
    spacing = np.array(generated.ct.array.shape) * scanner / np.array(case.target.shape)
    truth = data.value_to_channel()[generated.vertebrae.array]
    for level in (13, 14, 15):  # L1-L3
        true_centre = np.argwhere(truth == level).mean(axis=0) * scanner
        centre = (np.argwhere(case.target == level).mean(axis=0) + 0.5) * spacing - scanner / 2
        np.testing.assert_allclose(centre, true_centre, atol=3.0)  # half a model voxel


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


def test_top_k_cross_entropy_averages_only_the_hardest_voxels() -> None:
    target = torch.zeros(1, 10, 10, 10, dtype=torch.int64)
    target[0, :5] = 1
    logits = torch.nn.functional.one_hot(target, 2).permute(0, 4, 1, 2, 3).float() * 20
    logits[0, :, 0, 0, :] = torch.tensor([[0.0], [4.0]])  # 10 voxels (1 %) wrong, CE ~4.02
    soft_dice = DiceCELoss(top_k=100)(logits, target) - torch.nn.functional.cross_entropy(
        logits, target)
    hard_ce = float(torch.nn.functional.cross_entropy(logits[:, :, 0, 0, :], target[:, 0, 0, :]))
    # 1 %: exactly the ten wrong voxels; 2 %: those and ten right ones (CE ~0)
    assert float(DiceCELoss(top_k=1)(logits, target) - soft_dice) == pytest.approx(hard_ce,
                                                                                 rel=1e-5)
    assert float(DiceCELoss(top_k=2)(logits, target) - soft_dice) == pytest.approx(hard_ce / 2,
                                                                                 rel=1e-4)
    with pytest.raises(ValueError, match="top_k"):
        DiceCELoss(top_k=0)


def test_top_k_level_loss_averages_the_hardest_vertebra_blocks_only() -> None:
    levels = torch.full((1, 4, 5, 5), IGNORE, dtype=torch.int64)
    levels[0, :2] = 3  # 50 vertebra blocks; the other 50 hold no vertebra
    logits = torch.nn.functional.one_hot(levels.clamp(min=0), 17).permute(0, 4, 1, 2, 3).float()
    logits = logits * 20
    logits[0, :, 0, 0, :] = 0.0  # 5 vertebra blocks undecided: CE log(17)
    logits[0, :, 3] = 0.0  # blocks without vertebra, undecided: never counted
    hard = float(np.log(17))
    assert float(level_loss(logits, levels)) == pytest.approx(hard * 5 / 50, rel=1e-4)
    assert float(level_loss(logits, levels, top_k=10)) == pytest.approx(hard, rel=1e-4)
    assert float(level_loss(logits, levels, top_k=20)) == pytest.approx(hard / 2, rel=1e-4)
    with pytest.raises(ValueError, match="top_k"):
        level_loss(logits, levels, top_k=0)


@pytest.mark.parametrize("phase", ["levels", "bone"])
def test_a_few_iterations_reduce_the_loss(tiny_cases: list[data.Case], phase: str) -> None:
    torch.manual_seed(0)
    model = TwoScaleUNet(ModelConfig(TINY_PATCH, (8, 16), (8, 16), 18))
    sampler = data.PatchSampler(tiny_cases, data.NORMALIZATION, TINY_PATCH,
                                np.random.default_rng(0), foreground_fraction=1.0)
    part, loss_of = ((model.levels, train.levels_loss()) if phase == "levels"
                     else (model.bone, train.bone_loss()))
    before = [p.detach().clone() for p in model.parameters()]
    losses = train.fit(model, part, loss_of, sampler, train.Phase(30, 2, 1e-2, 600), bf16=False)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    changed = {id(p) for p, b in zip(model.parameters(), before, strict=True)
               if not torch.equal(p, b)}
    assert changed == {id(p) for p in part.parameters()}  # the other U-Net is untouched


def test_poly_schedule() -> None:
    assert train.poly_lr(1e-2, 0.0) == 1e-2
    assert train.poly_lr(1e-2, 1.0) == 0.0
    assert train.poly_lr(1e-2, 0.5) == pytest.approx(1e-2 * 0.5 ** 0.9)


def test_export_writes_a_spec_the_segmenter_accepts(tmp_path: Path) -> None:
    config = ModelConfig(TINY_PATCH, (4, 8), (8, 16), 18)
    checkpoint = {
        "state_dict": TwoScaleUNet(config).state_dict(),
        "model": {"patch_size_zyx": list(TINY_PATCH), "bone_features": [4, 8],
                  "level_features": [8, 16], "num_levels": 18},
        "spacing_zyx": [2.0, 2.0, 2.0],
        "normalization": {"lower": -1000.0, "upper": 1500.0, "mean": 0.0, "std": 500.0},
        "training": {"iterations": 0, "script": "tools/demomodel/train.py"},
    }
    export.export(checkpoint, tmp_path / "vertebrae")
    spec = ModelSpec.load(tmp_path / "vertebrae" / "model.json")
    assert spec.name == spec.role == "vertebrae" and spec.version == "1"
    assert spec.patch_size_zyx == TINY_PATCH and spec.num_channels == 19
    assert spec.decision == "foreground-first"  # bone x level: bone first, then the level
    raw = json.loads((tmp_path / "vertebrae" / "model.json").read_text())
    assert raw["training"] == checkpoint["training"]
    assert (tmp_path / "vertebrae" / "1" / "model.onnx").stat().st_size > 0
    config_text = (tmp_path / "vertebrae" / "config.pbtxt").read_text()
    assert 'name: "vertebrae"' in config_text and "dims: [ 19, 16, 16, 16 ]" in config_text
    # New weights under a new version, from the command line.
    torch.save(checkpoint, tmp_path / "last.pt")
    export.main(["--checkpoint", str(tmp_path / "last.pt"), "--out", str(tmp_path / "vertebrae"),
                 "--version", "2"])
    assert ModelSpec.load(tmp_path / "vertebrae" / "model.json").version == "2"
    assert (tmp_path / "vertebrae" / "2" / "model.onnx").stat().st_size > 0


@pytest.mark.parametrize("role", ["vertebrae", "lesions"])
def test_training_resumes_from_a_committed_model_folder(tmp_path: Path, role: str) -> None:
    torch.manual_seed(0)
    training = {"iterations": 7, "script": "tools/demomodel/train.py"}
    normalization = {"lower": -1000.0, "upper": 1500.0, "mean": 0.0, "std": 500.0}
    checkpoint: dict[str, object]
    if role == "vertebrae":
        model: torch.nn.Module = _perturbed(TwoScaleUNet(ModelConfig(
            TINY_PATCH, (4, 8), (8, 12), 18, "trilinear", 2)))
        checkpoint = {"model": {"patch_size_zyx": list(TINY_PATCH), "bone_features": [4, 8],
                                "level_features": [8, 12], "num_levels": 18,
                                "level_upsampling": "trilinear", "level_phases": 2}}
    else:
        model = _perturbed(PlainUNet(NetworkConfig(TINY_PATCH, (4, 8, 12), 4)))
        checkpoint = {"model": {"patch_size_zyx": list(TINY_PATCH), "features": [4, 8, 12],
                                "num_classes": 4},
                      "role": role, "channels": ["background", "lesion_lytic", "lesion_blastic",
                                   "lesion_mixed"],
                      "mirror_axes": [2]}
    checkpoint.update(state_dict=model.state_dict(), spacing_zyx=[2.0, 2.0, 2.0],
                      normalization=normalization, training=training)
    export.export(checkpoint, tmp_path / role, version="3")
    rebuilt = train._resume(tmp_path / role)
    assert rebuilt["model"] == checkpoint["model"] and rebuilt["training"] == training
    assert rebuilt["normalization"] == normalization
    assert {k: rebuilt[k] for k in ("role", "channels", "mirror_axes") if k in checkpoint} == {
        k: checkpoint[k] for k in ("role", "channels", "mirror_axes") if k in checkpoint}
    x = torch.randn(2, 1, *TINY_PATCH)
    with torch.no_grad():
        torch.testing.assert_close(export.load(rebuilt)(x), model(x))
    # A folder that is not this project's demo model is refused, naming it.
    description = json.loads((tmp_path / role / "model.json").read_text())
    del description["training"]
    (tmp_path / role / "model.json").write_text(json.dumps(description))
    with pytest.raises(ValueError, match="not describe a demo model"):
        export.checkpoint_of(tmp_path / role)


def test_a_model_folder_without_level_upsampling_is_rebuilt_as_versions_1_to_5_were(
        tmp_path: Path) -> None:
    torch.manual_seed(0)
    raw = {"patch_size_zyx": list(TINY_PATCH), "bone_features": [4, 8], "level_features": [8, 12],
           "num_levels": 18}
    checkpoint = {"state_dict": _perturbed(TwoScaleUNet(ModelConfig(TINY_PATCH, (4, 8), (8, 12),
                                                                    18))).state_dict(),
                  "spacing_zyx": [2.0, 2.0, 2.0], "training": {"iterations": 7},
                  "normalization": {"lower": -1000.0, "upper": 1500.0, "mean": 0.0,
                                    "std": 500.0}}
    for upsampling in ("nearest", "trilinear"):
        export.export({**checkpoint, "model": {**raw, "level_upsampling": upsampling}},
                      tmp_path / upsampling / "vertebrae")
        path = tmp_path / upsampling / "vertebrae" / "model.json"
        description = json.loads(path.read_text())
        assert description["level_upsampling"] == upsampling
        assert description["level_phases"] == 1
        del description["level_upsampling"], description["level_phases"]  # as 1-5 wrote it
        path.write_text(json.dumps(description))
    rebuilt = export.checkpoint_of(tmp_path / "nearest" / "vertebrae")
    assert rebuilt["model"]["level_upsampling"] == "nearest"
    assert rebuilt["model"]["level_phases"] == 1
    # A trilinear graph rebuilt as nearest no longer reproduces its ONNX, and is refused.
    with pytest.raises(RuntimeError, match="differs from torch"):
        export.checkpoint_of(tmp_path / "trilinear" / "vertebrae")


def test_a_model_folder_without_level_phases_is_rebuilt_with_one_as_versions_1_to_7_were(
        tmp_path: Path) -> None:
    torch.manual_seed(0)
    raw = {"patch_size_zyx": list(TINY_PATCH), "bone_features": [4, 8], "level_features": [8, 12],
           "num_levels": 18, "level_upsampling": "trilinear"}
    checkpoint = {"state_dict": _perturbed(TwoScaleUNet(ModelConfig(TINY_PATCH, (4, 8), (8, 12),
                                                                    18))).state_dict(),
                  "spacing_zyx": [2.0, 2.0, 2.0], "training": {"iterations": 7},
                  "normalization": {"lower": -1000.0, "upper": 1500.0, "mean": 0.0,
                                    "std": 500.0}}
    for phases in (1, 2):
        export.export({**checkpoint, "model": {**raw, "level_phases": phases}},
                      tmp_path / str(phases) / "vertebrae")
        path = tmp_path / str(phases) / "vertebrae" / "model.json"
        description = json.loads(path.read_text())
        assert description["level_phases"] == phases
        assert ("averaged over 2 grid phases" in description["architecture"]) == (phases == 2)
        del description["level_phases"]  # as versions 6 and 7 wrote it
        path.write_text(json.dumps(description))
    assert export.checkpoint_of(tmp_path / "1" / "vertebrae")["model"]["level_phases"] == 1
    # A two-phase graph rebuilt with one phase no longer reproduces its ONNX, and is refused.
    with pytest.raises(RuntimeError, match="differs from torch"):
        export.checkpoint_of(tmp_path / "2" / "vertebrae")


def test_a_run_of_no_iterations_gives_resumed_weights_a_new_graph_without_training_phantoms(
        tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = _perturbed(TwoScaleUNet(ModelConfig(TINY_PATCH, (4, 8), (8, 12), 18))).state_dict()
    resume = {"model": {"patch_size_zyx": list(TINY_PATCH), "bone_features": [4, 8],
                        "level_features": [8, 12], "num_levels": 18,
                        "level_upsampling": "trilinear", "level_phases": 1},
              "state_dict": weights, "training": {"iterations": 7}}
    config = train.TrainConfig(patch_size_zyx=TINY_PATCH, bone_features=(4, 8),
                               level_features=(8, 12), levels=train.Phase(0, 4, 1e-3, 60),
                               bone=train.Phase(0, 2, 1e-3, 60),
                               validation_seeds=(data.VALIDATION_SEEDS.start,) * 2)
    checkpoint = train.train(config, tmp_path, resume)
    assert not (tmp_path / "phantoms").exists()
    assert checkpoint["model"]["level_phases"] == 2
    assert checkpoint["training"]["iterations"] == 0
    assert checkpoint["training"]["resumed_from"] == {"iterations": 7}
    for name, value in weights.items():
        torch.testing.assert_close(checkpoint["state_dict"][name], value)


def test_a_vertebra_checkpoint_records_the_mirror_axes_it_was_trained_with(tmp_path: Path
                                                                          ) -> None:
    config = train.TrainConfig(patch_size_zyx=TINY_PATCH, bone_features=(4, 8),
                               level_features=(8, 12))
    model = TwoScaleUNet(config.model)
    mirrored = train._save(tmp_path, model, config, {"iterations": 0})
    assert mirrored["mirror_axes"] == [2]  # left-right mirroring, as the sampler augments
    export.export(mirrored, tmp_path / "vertebrae")
    assert ModelSpec.load(tmp_path / "vertebrae" / "model.json").mirror_axes == (2,)
    unmirrored = replace(config, augmentation=data.Augmentation(mirror_x=0.0))
    assert train._save(tmp_path, model, unmirrored, {"iterations": 0})["mirror_axes"] == []
