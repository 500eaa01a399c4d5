"""Train the phantom-trained demo vertebra model (not for clinical use) and export it.

``python -m demomodel.train --out triton-models/vertebrae`` reproduces the committed model:
it generates (or reuses) the phantom cache, trains a small nnU-Net-style U-Net with Dice + CE
and a poly learning-rate schedule, measures the validation Dice on the model grid, and exports
ONNX + model.json. Everything random is seeded; a run that completes its iterations within the
time budget is repeatable on the same machine and thread count. Checkpoints go to
``<cache>/checkpoints``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from demomodel import data, evaluate, export
from demomodel.loss import DiceCELoss
from demomodel.network import NetworkConfig, build, parameter_count

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(".cache/demomodel")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the checkpoint and model.json)."""

    spacing_zyx: tuple[float, float, float] = (2.0, 2.0, 2.0)
    patch_size_zyx: tuple[int, int, int] = (160, 64, 64)
    features: tuple[int, ...] = (8, 16, 32, 48, 64, 96)
    train_seeds: tuple[int, int] = (data.TRAIN_SEEDS.start, data.TRAIN_SEEDS.start + 60)
    validation_seeds: tuple[int, int] = (data.VALIDATION_SEEDS.start,
                                         data.VALIDATION_SEEDS.start + 3)
    iterations: int = 2000
    batch_size: int = 2
    learning_rate: float = 2e-3
    weight_decay: float = 3e-5
    seed: int = 12345
    threads: int = 2
    bf16: bool = True
    time_budget_s: float = 40 * 60

    @property
    def network(self) -> NetworkConfig:
        return NetworkConfig(self.patch_size_zyx, self.features, len(data.CHANNELS))


def poly_lr(initial: float, progress: float, exponent: float = 0.9) -> float:
    """nnU-Net's polynomial learning-rate decay at ``progress`` (0..1) of the run."""
    return float(initial * (1 - min(progress, 1.0)) ** exponent)


def fit(model: torch.nn.Module, sampler: data.PatchSampler, config: TrainConfig,
        checkpoint: Callable[[int], object] | None = None) -> list[float]:
    """Train ``model`` in place on patches from ``sampler``; return the loss of every iteration.

    AdamW with nnU-Net's poly schedule. The schedule follows the iteration count or the time
    budget, whichever is further along, so the learning rate is annealed when the budget ends a
    run early on a slow or busy machine. ``checkpoint(i)`` is called every 250 iterations.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    loss_fn = DiceCELoss()
    model.train()
    started = time.monotonic()
    losses: list[float] = []
    for iteration in range(config.iterations):
        elapsed = time.monotonic() - started
        if elapsed > config.time_budget_s:
            log.warning("time budget reached after %d iterations", iteration)
            break
        progress = max(iteration / config.iterations, elapsed / config.time_budget_s)
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(config.learning_rate, progress)
        x, y = sampler.batch(config.batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits = model(torch.from_numpy(x))
        loss = loss_fn(logits, torch.from_numpy(y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
        optimizer.step()
        losses.append(loss.item())
        if (iteration + 1) % 25 == 0:
            log.info("iteration %d/%d loss %.4f (mean of last 25) %.0f s", iteration + 1,
                     config.iterations, float(np.mean(losses[-25:])),
                     time.monotonic() - started)
        if checkpoint is not None and (iteration + 1) % 250 == 0:
            checkpoint(iteration + 1)
    model.eval()
    return losses


def train(config: TrainConfig, cache: Path) -> dict[str, Any]:
    """Train and return the checkpoint (state dict, configuration, normalisation, provenance)."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.monotonic()
    cases = data.cached_cases(range(*config.train_seeds), config.spacing_zyx, cache / "phantoms")
    normalization = data.NORMALIZATION
    log.info("%d training phantoms ready in %.0f s", len(cases), time.monotonic() - started)
    sampler = data.PatchSampler(cases, normalization, config.patch_size_zyx, rng)
    model = build(config.network)
    log.info("network: %s, %d parameters", config.network.describe(), parameter_count(model))
    train_started = time.monotonic()
    losses = fit(model, sampler, config, lambda i: _save(cache, model, config, normalization,
                                                          {"iterations": i}))
    train_seconds = time.monotonic() - train_started
    validation = evaluate.validate_on_model_grid(
        model, normalization, config.patch_size_zyx,
        data.cached_cases(range(*config.validation_seeds), config.spacing_zyx,
                          cache / "phantoms"), config.spacing_zyx)
    log.info("validation Dice per level: %s", validation)
    provenance = {
        "phantom_seeds": {"train": list(config.train_seeds),
                          "validation": list(config.validation_seeds),
                          "evaluation": [data.EVALUATION_SEEDS.start, data.EVALUATION_SEEDS.stop]},
        "phantom_generator_sha256": data.phantom_fingerprint(),
        "iterations": len(losses),
        "batch_size": config.batch_size,
        "train_seconds": round(train_seconds, 1),
        "threads": config.threads,
        "first_loss": round(float(np.mean(losses[:25])), 4) if losses else None,
        "final_loss": round(float(np.mean(losses[-25:])), 4) if losses else None,
        "validation_dice": {k: round(v, 4) for k, v in validation.items()},
        "validation_mean_dice": round(float(np.mean(list(validation.values()))), 4)
        if validation else None,
        "config": _jsonable(asdict(config)),
        "script": "tools/demomodel/train.py",
    }
    return _save(cache, model, config, normalization, provenance)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _save(cache: Path, model: torch.nn.Module, config: TrainConfig,
          normalization: data.Normalization, training: dict[str, Any]) -> dict[str, Any]:
    checkpoint = {
        "state_dict": model.state_dict(),
        "network": _jsonable(asdict(config.network)),
        "spacing_zyx": list(config.spacing_zyx),
        "normalization": asdict(normalization),
        "training": training,
    }
    path = cache / "checkpoints" / "last.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return checkpoint


def _parse(argv: Sequence[str] | None) -> tuple[TrainConfig, Path, Path]:
    default = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="triton-models/<role> folder")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--iterations", type=int, default=default.iterations)
    parser.add_argument("--time-budget-min", type=float, default=default.time_budget_s / 60)
    parser.add_argument("--train-phantoms", type=int,
                        default=default.train_seeds[1] - default.train_seeds[0])
    parser.add_argument("--validation-phantoms", type=int,
                        default=default.validation_seeds[1] - default.validation_seeds[0])
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument("--learning-rate", type=float, default=default.learning_rate)
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--threads", type=int, default=default.threads)
    parser.add_argument("--no-bf16", action="store_true", help="train in float32")
    args = parser.parse_args(argv)
    config = TrainConfig(
        train_seeds=(data.TRAIN_SEEDS.start, data.TRAIN_SEEDS.start + args.train_phantoms),
        validation_seeds=(data.VALIDATION_SEEDS.start,
                          data.VALIDATION_SEEDS.start + args.validation_phantoms),
        iterations=args.iterations, batch_size=args.batch_size,
        learning_rate=args.learning_rate, seed=args.seed, threads=args.threads,
        bf16=not args.no_bf16, time_budget_s=args.time_budget_min * 60)
    return config, args.cache, args.out


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config, cache, out = _parse(argv)
    checkpoint = train(config, cache)
    export.export(checkpoint, out)


if __name__ == "__main__":
    main()
