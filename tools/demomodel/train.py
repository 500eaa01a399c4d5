"""Train a phantom-trained demo model (not for clinical use) and export it.

``python -m demomodel.train --out triton-models/vertebrae`` trains the vertebra model: it
generates (or reuses) the phantom cache, painted on scanner grids and resampled to the model
grid as the segmenter resamples a CT (``--phantom-grid``), trains the level U-Net (half
resolution, cross-entropy of the level given vertebra) and then the bone U-Net (full resolution,
nnU-Net's Dice + CE of vertebra versus background), measures the validation Dice on the model
grid and exports ONNX, model.json and config.pbtxt. The committed model is this run continued
with ``--resume`` (its model.json records every run).

``python -m demomodel.train --role muscles --out triton-models/muscles`` (or ``lesions``) trains
the one U-Net of that role (:mod:`demomodel.roles`) with Dice + CE on its channels, in the same
way. Every phase uses AdamW with nnU-Net's poly schedule. Everything random is seeded; a run
that completes its iterations within the time budgets is repeatable on the same machine and
thread count. Checkpoints go to ``<cache>/checkpoints`` (``last.pt`` for the vertebra model,
``<role>-last.pt`` for the others).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, get_args

import numpy as np
import torch

from demomodel import data, evaluate, export, role_eval
from demomodel.loss import DiceCELoss, level_loss, level_targets
from demomodel.network import (
    LEVEL_PHASES,
    LEVEL_SCALE,
    LevelUpsampling,
    ModelConfig,
    PlainUNet,
    TwoScaleUNet,
    parameter_count,
    widen,
)
from demomodel.roles import ROLES, RoleConfig

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(".cache/demomodel")
Model = TypeVar("Model", bound=torch.nn.Module)
#: ``loss(model, image, target)`` of one phase.
PhaseLoss = Callable[[Model, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Phase:
    """Optimisation of one of the two U-Nets."""

    iterations: int
    batch_size: int
    learning_rate: float
    time_budget_s: float
    weight_decay: float = 3e-5


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the checkpoint and model.json)."""

    spacing_zyx: tuple[float, float, float] = (2.0, 2.0, 2.0)
    patch_size_zyx: tuple[int, int, int] = (192, 64, 64)
    bone_features: tuple[int, ...] = (16, 32, 48, 64, 96)
    level_features: tuple[int, ...] = (16, 32, 64, 96, 128)
    train_seeds: tuple[int, int] = (data.TRAIN_SEEDS.start, data.TRAIN_SEEDS.start + 60)
    validation_seeds: tuple[int, int] = (data.VALIDATION_SEEDS.start,
                                         data.VALIDATION_SEEDS.start + 3)
    levels: Phase = field(default_factory=lambda: Phase(1500, 4, 3e-3, 22 * 60))
    bone: Phase = field(default_factory=lambda: Phase(600, 2, 3e-3, 16 * 60))
    phantom_grid: data.PhantomGrid = "scanner"
    augmentation: data.Augmentation = field(default_factory=data.Augmentation)
    #: Per cent of voxels whose cross-entropy the bone loss averages (100: all, plain Dice + CE).
    bone_top_k: float = 100.0
    #: Per cent of vertebra blocks whose cross-entropy the level loss averages (100: all).
    level_top_k: float = 100.0
    #: How the exported graph upsamples the level logits (training scores whole blocks).
    level_upsampling: LevelUpsampling = "trilinear"
    #: Grid phases the exported graph averages the level logits over (training uses one).
    level_phases: int = 2
    seed: int = 12345
    threads: int = 2
    bf16: bool = True

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(self.patch_size_zyx, self.bone_features, self.level_features,
                           len(data.CHANNELS) - 1, self.level_upsampling, self.level_phases)


def poly_lr(initial: float, progress: float, exponent: float = 0.9) -> float:
    """nnU-Net's polynomial learning-rate decay at ``progress`` (0..1) of the run."""
    return float(initial * (1 - min(progress, 1.0)) ** exponent)


def bone_loss(top_k: float = 100.0) -> PhaseLoss[TwoScaleUNet]:
    """Dice + CE of the full-resolution U-Net: vertebra (any level, sacrum) versus the rest;
    the CE over the ``top_k`` per cent hardest voxels (:class:`DiceCELoss`)."""
    criterion = DiceCELoss(top_k=top_k)

    def loss(model: TwoScaleUNet, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value: torch.Tensor = criterion(model.bone(image), (target > 0).long())
        return value

    return loss


def levels_loss(top_k: float = 100.0) -> PhaseLoss[TwoScaleUNet]:
    """CE of the half-resolution U-Net: the level of every block holding vertebra voxels,
    averaged over the ``top_k`` per cent hardest blocks."""

    def loss(model: TwoScaleUNet, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        levels = level_targets(target, model.config.num_levels, LEVEL_SCALE)
        return level_loss(model.level_logits(image), levels, top_k)

    return loss


def plain_loss(model: PlainUNet, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice + CE of a single U-Net over all its channels."""
    loss: torch.Tensor = DiceCELoss()(model(image), target)
    return loss


def fit(model: Model, part: torch.nn.Module, loss_of: PhaseLoss[Model],
        sampler: data.PatchSampler, phase: Phase, *, bf16: bool = True,
        checkpoint: Callable[[int], object] | None = None) -> list[float]:
    """Optimise the parameters of ``part`` (a sub-network of ``model``) for one phase.

    AdamW with nnU-Net's poly schedule, which follows the iteration count or the time budget,
    whichever is further along, so the learning rate is annealed when the budget ends a phase
    early on a slow or busy machine. ``checkpoint(i)`` is called every 250 iterations. Returns
    the loss of every iteration; the model is left in eval mode.
    """
    optimizer = torch.optim.AdamW(part.parameters(), lr=phase.learning_rate,
                                  weight_decay=phase.weight_decay)
    model.train()
    started = time.monotonic()
    losses: list[float] = []
    for iteration in range(phase.iterations):
        elapsed = time.monotonic() - started
        if elapsed > phase.time_budget_s:
            log.warning("time budget reached after %d iterations", iteration)
            break
        progress = max(iteration / phase.iterations, elapsed / phase.time_budget_s)
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(phase.learning_rate, progress)
        x, y = sampler.batch(phase.batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_of(model, torch.from_numpy(x), torch.from_numpy(y))
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(part.parameters(), 12.0)
        optimizer.step()
        losses.append(loss.item())
        if (iteration + 1) % 25 == 0:
            log.info("iteration %d/%d loss %.4f (mean of last 25) %.0f s", iteration + 1,
                     phase.iterations, float(np.mean(losses[-25:])), time.monotonic() - started)
        if checkpoint is not None and (iteration + 1) % 250 == 0:
            checkpoint(iteration + 1)
    model.eval()
    return losses


def _summary(losses: list[float], seconds: float) -> dict[str, Any]:
    return {"iterations": len(losses), "seconds": round(seconds, 1),
            "first_loss": round(float(np.mean(losses[:25])), 4) if losses else None,
            "final_loss": round(float(np.mean(losses[-25:])), 4) if losses else None}


def start_from(config: TrainConfig, resume: dict[str, Any] | None
               ) -> tuple[TwoScaleUNet, list[int] | None]:
    """The model a run starts from, and the bone features it was widened from, if it was.

    ``resume``: a checkpoint of the same architecture, or with a narrower bone U-Net, which is
    widened to ``config.bone_features`` keeping its function (:func:`network.widen`); the
    level U-Net must match.
    """
    model = TwoScaleUNet(config.model)
    if resume is None:
        return model, None
    log.info("resuming from a checkpoint trained for %s iterations",
             resume["training"].get("iterations"))
    if tuple(resume["model"]["level_features"]) != config.level_features:
        raise ValueError(f"the checkpoint's level U-Net has features "
                         f"{resume['model']['level_features']}, not {list(config.level_features)}")
    if tuple(resume["model"]["bone_features"]) == config.bone_features:
        model.load_state_dict(resume["state_dict"])
        return model, None
    widened_from = list(resume["model"]["bone_features"])
    log.info("widening the bone U-Net from features %s", widened_from)
    widen(model, resume["state_dict"])
    return model, widened_from


def train(config: TrainConfig, cache: Path, resume: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """Train both U-Nets; return the checkpoint (state dict, configuration, provenance).

    ``resume``: a checkpoint whose weights the run starts from (:func:`start_from`; its own
    provenance is kept under ``resumed_from``).
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.monotonic()
    # A run of no iterations (a new graph of resumed weights) samples no patch.
    trains = config.levels.iterations > 0 or config.bone.iterations > 0
    cases = data.cached_cases(range(*config.train_seeds), config.spacing_zyx, cache / "phantoms",
                              grid=config.phantom_grid) if trains else []
    log.info("%d training phantoms ready in %.0f s", len(cases), time.monotonic() - started)
    sampler = data.PatchSampler(cases, data.NORMALIZATION, config.patch_size_zyx, rng,
                                augmentation=config.augmentation)
    model, widened_from = start_from(config, resume)
    log.info("%s: %d parameters", config.model.describe(), parameter_count(model))
    phases: dict[str, Any] = {}
    for name, part, loss_of, phase in (("levels", model.levels, levels_loss(config.level_top_k),
                                        config.levels),
                                       ("bone", model.bone, bone_loss(config.bone_top_k),
                                        config.bone)):
        log.info("training the %s U-Net", name)
        phase_started = time.monotonic()

        def checkpoint(iteration: int, phase_name: str = name) -> None:
            _save(cache, model, config, {phase_name: iteration})

        losses = fit(model, part, loss_of, sampler, phase, bf16=config.bf16,
                     checkpoint=checkpoint)
        phases[name] = _summary(losses, time.monotonic() - phase_started)
    validation = evaluate.validate_on_model_grid(
        model, data.NORMALIZATION, config.patch_size_zyx,
        data.cached_cases(range(*config.validation_seeds), config.spacing_zyx,
                          cache / "phantoms", grid=config.phantom_grid), config.spacing_zyx)
    log.info("validation Dice per level: %s", validation)
    provenance = {
        "script": "tools/demomodel/train.py",
        "phantom_seeds": {"train": list(config.train_seeds),
                          "validation": list(config.validation_seeds),
                          "evaluation": [data.EVALUATION_SEEDS.start, data.EVALUATION_SEEDS.stop]},
        "phantom_generator_sha256": data.phantom_fingerprint(),
        "phases": phases,
        "iterations": sum(p["iterations"] for p in phases.values()),
        "train_seconds": round(time.monotonic() - started, 1),
        "threads": config.threads,
        "validation_dice": {k: round(v, 4) for k, v in validation.items()},
        "validation_mean_dice": round(float(np.mean(list(validation.values()))), 4)
        if validation else None,
        "config": _jsonable(asdict(config)),
    }
    if widened_from is not None:
        provenance["bone_widened_from"] = widened_from
    if resume is not None:
        provenance["resumed_from"] = resume["training"]
        provenance["total_iterations"] = (provenance["iterations"]
                                          + resume["training"].get("total_iterations",
                                                                   resume["training"]["iterations"]))
    return _save(cache, model, config, provenance)


def train_role(config: RoleConfig, cache: Path, resume: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Train the U-Net of a single-network role; return its checkpoint (as :func:`train`)."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.monotonic()
    phantoms = cache / "phantoms"
    cases = data.cached_cases(range(*config.train_seeds), config.spacing_zyx, phantoms,
                              config.target, config.phantom_grid, config.normalization)
    log.info("%d training phantoms ready in %.0f s", len(cases), time.monotonic() - started)
    sampler = data.PatchSampler(cases, config.normalization, config.patch_size_zyx, rng,
                                foreground_fraction=config.foreground_fraction,
                                augmentation=config.augmentation)
    model = PlainUNet(config.network)
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
    log.info("%s: %d parameters", config.network.describe(), parameter_count(model))
    phase = Phase(config.iterations, config.batch_size, config.learning_rate,
                  config.time_budget_s, config.weight_decay)
    fit_started = time.monotonic()
    losses = fit(model, model, plain_loss, sampler, phase, bf16=config.bf16,
                 checkpoint=lambda i: _save_role(cache, model, config, {"iterations": i}))
    seconds = time.monotonic() - fit_started
    validation = role_eval.validate_on_model_grid(
        model, config.normalization, config.patch_size_zyx,
        data.cached_cases(range(*config.validation_seeds), config.spacing_zyx, phantoms,
                          config.target, config.phantom_grid, config.normalization),
        config.target.channels)
    log.info("validation Dice per label: %s", validation)
    provenance = {
        "script": "tools/demomodel/train.py",
        "role": config.role,
        "phantom_seeds": {"train": list(config.train_seeds),
                          "validation": list(config.validation_seeds),
                          "evaluation": [data.EVALUATION_SEEDS.start, data.EVALUATION_SEEDS.stop]},
        "phantom_generator_sha256": data.phantom_fingerprint(),
        "phases": {config.role: _summary(losses, seconds)},
        "iterations": len(losses),
        "train_seconds": round(time.monotonic() - started, 1),
        "threads": config.threads,
        "validation_dice": {k: round(v, 4) for k, v in validation.items()},
        "validation_mean_dice": round(float(np.mean(list(validation.values()))), 4)
        if validation else None,
        "config": _jsonable({k: v for k, v in asdict(config).items() if k != "target"}),
        "phantom_crop": _jsonable(asdict(config.target.crop)) if config.target.crop else None,
    }
    if resume is not None:
        provenance["resumed_from"] = resume["training"]
        provenance["total_iterations"] = len(losses) + resume["training"].get(
            "total_iterations", resume["training"]["iterations"])
    return _save_role(cache, model, config, provenance)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _write(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """Save atomically (temporary file, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return checkpoint


def _save(cache: Path, model: TwoScaleUNet, config: TrainConfig,
          training: dict[str, Any]) -> dict[str, Any]:
    return _write({
        "state_dict": model.state_dict(),
        "model": _jsonable(asdict(config.model)),
        "mirror_axes": config.augmentation.mirror_axes,
        "spacing_zyx": list(config.spacing_zyx),
        "normalization": asdict(data.NORMALIZATION),
        "training": training,
    }, cache / "checkpoints" / "last.pt")


def _save_role(cache: Path, model: PlainUNet, config: RoleConfig,
               training: dict[str, Any]) -> dict[str, Any]:
    return _write({
        "state_dict": model.state_dict(),
        "role": config.role,
        "model": _jsonable(asdict(config.network)),
        "channels": list(config.target.channels),
        "mirror_axes": config.augmentation.mirror_axes,
        "spacing_zyx": list(config.spacing_zyx),
        "normalization": asdict(config.normalization),
        "training": training,
    }, cache / "checkpoints" / f"{config.role}-last.pt")


def _features(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


class Run(NamedTuple):
    """What the command line asks for."""

    config: TrainConfig | RoleConfig
    cache: Path
    out: Path
    resume: Path | None
    version: str


def _parse(argv: Sequence[str] | None) -> Run:
    default = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("vertebrae", *ROLES), default="vertebrae")
    parser.add_argument("--out", type=Path, required=True, help="triton-models/<role> folder")
    export.add_version_argument(parser)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--resume", type=Path, help="checkpoint to continue training from "
                        "(<cache>/checkpoints/last.pt of an earlier run), or a model folder "
                        "such as triton-models/vertebrae (rebuilt from its model.json and ONNX)")
    parser.add_argument("--level-lr", type=float, default=default.levels.learning_rate)
    parser.add_argument("--bone-lr", type=float, default=default.bone.learning_rate)
    parser.add_argument("--level-iterations", type=int, default=default.levels.iterations)
    parser.add_argument("--level-minutes", type=float, default=default.levels.time_budget_s / 60)
    parser.add_argument("--bone-iterations", type=int, default=default.bone.iterations)
    parser.add_argument("--bone-minutes", type=float, default=default.bone.time_budget_s / 60)
    parser.add_argument("--bone-top-k", type=float, default=default.bone_top_k,
                        help="per cent of hardest voxels in the bone U-Net's CE (nnU-Net's "
                             "DiceTopK10 loss: 10; default 100, plain Dice + CE)")
    parser.add_argument("--level-top-k", type=float, default=default.level_top_k,
                        help="per cent of hardest vertebra blocks in the level U-Net's CE "
                             "(default 100, plain CE)")
    parser.add_argument("--level-upsampling", choices=get_args(LevelUpsampling),
                        default=default.level_upsampling,
                        help="how the exported graph brings the level logits to full "
                        "resolution (versions 1-5: nearest; default: %(default)s)")
    parser.add_argument("--level-phases", type=int, choices=LEVEL_PHASES,
                        default=default.level_phases,
                        help="phases of the half-resolution grid the exported graph averages "
                        "the level logits over (versions 1-7: 1; default: %(default)s)")
    parser.add_argument("--bone-features", type=_features, default=default.bone_features,
                        help="features per stage of the bone U-Net, e.g. 16,32,48,64,96; a "
                        "--resume checkpoint with fewer is widened (default: %(default)s)")
    parser.add_argument("--lr", type=float, help="learning rate (muscles, lesions)")
    parser.add_argument("--iterations", type=int, help="iterations (muscles, lesions)")
    parser.add_argument("--minutes", type=float, help="time budget (muscles, lesions)")
    parser.add_argument("--foreground", type=float,
                        help="share of foreground-centred patches (muscles, lesions)")
    parser.add_argument("--train-phantoms", type=int, help="default: 60 (lesions 80)")
    parser.add_argument("--validation-phantoms", type=int, help="default: 3")
    parser.add_argument("--phantom-grid", choices=("model", "scanner"),
                        help="paint training phantoms on the model grid, or on a scanner grid "
                        "and resample them as the segmenter does (default: scanner for "
                        "vertebrae, model for the other roles)")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--threads", type=int, default=default.threads)
    parser.add_argument("--no-bf16", action="store_true", help="train in float32")
    args = parser.parse_args(argv)
    if args.role != "vertebrae":
        role = ROLES[args.role]
        config: TrainConfig | RoleConfig = replace(
            role, learning_rate=args.lr or role.learning_rate,
            iterations=args.iterations or role.iterations,
            time_budget_s=args.minutes * 60 if args.minutes else role.time_budget_s,
            foreground_fraction=(role.foreground_fraction if args.foreground is None
                                 else args.foreground),
            train_phantoms=args.train_phantoms or role.train_phantoms,
            validation_phantoms=args.validation_phantoms or role.validation_phantoms,
            phantom_grid=args.phantom_grid or role.phantom_grid, seed=args.seed,
            threads=args.threads, bf16=not args.no_bf16)
        return Run(config, args.cache, args.out, args.resume, args.version)
    train_phantoms = args.train_phantoms or default.train_seeds[1] - default.train_seeds[0]
    validation_phantoms = (args.validation_phantoms
                           or default.validation_seeds[1] - default.validation_seeds[0])
    config = TrainConfig(
        bone_features=args.bone_features,
        train_seeds=(data.TRAIN_SEEDS.start, data.TRAIN_SEEDS.start + train_phantoms),
        validation_seeds=(data.VALIDATION_SEEDS.start,
                          data.VALIDATION_SEEDS.start + validation_phantoms),
        levels=Phase(args.level_iterations, default.levels.batch_size, args.level_lr,
                     args.level_minutes * 60),
        bone=Phase(args.bone_iterations, default.bone.batch_size, args.bone_lr,
                   args.bone_minutes * 60),
        phantom_grid=args.phantom_grid or default.phantom_grid, bone_top_k=args.bone_top_k,
        level_top_k=args.level_top_k, level_upsampling=args.level_upsampling,
        level_phases=args.level_phases, seed=args.seed, threads=args.threads, bf16=not args.no_bf16)
    return Run(config, args.cache, args.out, args.resume, args.version)


def _resume(path: Path) -> dict[str, Any]:
    """The checkpoint file, or the checkpoint rebuilt from a model folder, at ``path``."""
    if path.is_dir():
        return export.checkpoint_of(path)
    checkpoint: dict[str, Any] = torch.load(path, weights_only=False)
    return checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run = _parse(argv)
    resume = _resume(run.resume) if run.resume else None
    if isinstance(run.config, RoleConfig):
        checkpoint = train_role(run.config, run.cache, resume)
    else:
        checkpoint = train(run.config, run.cache, resume)
    export.export(checkpoint, run.out, run.version)


if __name__ == "__main__":
    main()
