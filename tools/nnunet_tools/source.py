"""A trained nnU-Net v2 model folder: plans, dataset.json, one configuration, folds, checkpoints.

nnU-Net writes ``nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration>/`` holding
``plans.json``, ``dataset.json`` and ``fold_<f>/checkpoint_final.pth``. :func:`load` takes that
folder, or the dataset folder above it together with the configuration's name, and checks that
the model is one the segmenter reproduces exactly: 3D, one CT input channel with
``CTNormalization``, not cascaded, not region-based, resampled by
``resample_data_or_seg_to_shape``. Anything else is a :class:`ModelError` naming the field.

Checkpoints are Python pickles (``torch.load(weights_only=False)``, as nnU-Net loads them): import
only models from a source you trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from spinemets.errors import ModelError

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint_final.pth"
RESAMPLING = "resample_data_or_seg_to_shape"


@dataclass(frozen=True)
class Checkpoint:
    """One fold's weights and what nnU-Net stored with them."""

    fold: str
    path: Path
    sha256: str
    weights: dict[str, torch.Tensor]
    trainer: str
    #: Mirroring axes nnU-Net allows at inference, in its (transposed) axis order.
    mirror_axes: tuple[int, ...]


@dataclass(frozen=True)
class TrainedModel:
    """A trained configuration of an nnU-Net v2 model and the folds chosen from it."""

    folder: Path
    plans: dict[str, Any]
    dataset: dict[str, Any]
    configuration: str
    checkpoints: tuple[Checkpoint, ...]

    @property
    def plans_manager(self) -> Any:
        return PlansManager(self.plans)

    @property
    def config(self) -> ConfigurationManager:
        return self.plans_manager.get_configuration(self.configuration)

    @property
    def channel_names(self) -> dict[int, str]:
        """Output channel -> nnU-Net label name (the ignore label has no channel)."""
        manager = self.plans_manager.get_label_manager(self.dataset)
        names = {int(v): k for k, v in self.dataset["labels"].items()
                 if manager.ignore_label is None or int(v) != manager.ignore_label}
        return {c: names[c] for c in range(manager.num_segmentation_heads)}


def _fail(message: str, reason: str = "unsupported-nnunet-model") -> ModelError:
    return ModelError(message, reason=reason)


def locate(path: Path, configuration: str | None) -> Path:
    """The trained-configuration folder: ``path`` itself, or its one subfolder for it."""
    if (path / "plans.json").is_file():
        return path
    if not path.is_dir():
        raise _fail(f"{path} is not a folder", "bad-nnunet-folder")
    found = sorted(p for p in path.iterdir() if (p / "plans.json").is_file()
                   and (configuration is None or p.name.endswith(f"__{configuration}")))
    if len(found) != 1:
        names = [p.name for p in found] or "none"
        raise _fail(f"{path} holds no plans.json; its trained configurations"
                    f"{'' if configuration is None else f' for {configuration!r}'}: {names} "
                    "(name one with --configuration, or give its folder)", "bad-nnunet-folder")
    return found[0]


def _folds(folder: Path, folds: Sequence[str] | None, checkpoint: str) -> list[str]:
    """The requested folds, or every ``fold_<n>`` with the checkpoint (nnU-Net's default)."""
    if folds:
        return list(folds)
    found = sorted((p.name.removeprefix("fold_") for p in folder.glob("fold_*")
                    if p.name != "fold_all" and (p / checkpoint).is_file()),
                   key=lambda f: int(f) if f.isdigit() else -1)
    if not found:
        raise _fail(f"no fold_*/{checkpoint} in {folder}", "bad-nnunet-folder")
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checkpoint(folder: Path, fold: str, name: str, configuration: str) -> Checkpoint:
    path = folder / f"fold_{fold}" / name
    if not path.is_file():
        raise _fail(f"{path} not found", "bad-nnunet-folder")
    raw = torch.load(path, map_location="cpu", weights_only=False)
    trained = raw.get("init_args", {}).get("configuration", configuration)
    if trained != configuration:
        raise _fail(f"{path} was trained for configuration {trained!r}, not {configuration!r}")
    axes = raw.get("inference_allowed_mirroring_axes")
    return Checkpoint(fold, path, _sha256(path), raw["network_weights"],
                      str(raw.get("trainer_name", "")),
                      tuple(int(a) for a in axes) if axes is not None else ())


def load(path: Path, configuration: str | None = None, folds: Sequence[str] | None = None,
         checkpoint: str = CHECKPOINT) -> TrainedModel:
    """Read a trained model folder and the chosen folds' checkpoints (logged one by one)."""
    folder = locate(path, configuration)
    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    available = sorted(plans.get("configurations", {}))
    name = configuration or (folder.name.rpartition("__")[2] if "__" in folder.name
                             else available[0] if len(available) == 1 else "")
    if name not in available:
        raise _fail(f"plans.json of {folder} has no configuration {name!r} (it has {available}; "
                    "name one with --configuration)", "bad-nnunet-folder")
    chosen = _folds(folder, folds, checkpoint)
    loaded = []
    for n, fold in enumerate(chosen, start=1):
        started = time.monotonic()
        loaded.append(_checkpoint(folder, fold, checkpoint, name))
        log.info("[%d/%d] loaded fold %s (%.1f s)", n, len(chosen), fold,
                 time.monotonic() - started)
    model = TrainedModel(folder, plans, dataset, name, tuple(loaded))
    check_supported(model)
    return model


def check_supported(model: TrainedModel) -> None:
    """Refuse what the segmenter cannot reproduce exactly; the message names the field."""
    config, where = model.config, f"{model.folder.name}: configuration {model.configuration!r}"
    checks = [
        (len(config.patch_size) == 3, f"patch_size {config.patch_size} is not 3D"),
        (config.previous_stage_name is None,
         f"is a cascade stage (previous_stage {config.previous_stage_name!r})"),
        (list(config.normalization_schemes) == ["CTNormalization"],
         f"normalization_schemes {config.normalization_schemes}: only one CTNormalization "
         "channel is supported"),
        (not any(config.use_mask_for_norm), "use_mask_for_norm is set"),
        (determine_num_input_channels(model.plans_manager, config, model.dataset) == 1,
         "has more than one input channel"),
        (not model.plans_manager.get_label_manager(model.dataset).has_regions,
         "is region-based (labels with several values)"),
    ]
    for kind in ("data", "probabilities"):
        name = config.configuration[f"resampling_fn_{kind}"]
        checks.append((name == RESAMPLING, f"resampling_fn_{kind} is {name!r}, not {RESAMPLING}"))
        order_z = config.configuration[f"resampling_fn_{kind}_kwargs"].get("order_z", 0)
        checks.append((order_z in (0, 1),
                       f"resampling_fn_{kind}_kwargs.order_z {order_z} is not 0 or 1"))
    order = config.configuration["resampling_fn_probabilities_kwargs"].get("order", 1)
    checks.append((order in (0, 1), f"resampling_fn_probabilities_kwargs.order {order} is not 0 "
                   "or 1"))
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise _fail(f"{where}: " + "; ".join(problems))
