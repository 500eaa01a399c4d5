"""``import-nnunet``: a trained nnU-Net v2 model folder -> a Triton model directory.

Writes ``<out>/`` (the folder's name is the model's name and role, as Triton names models):

* ``1/model.onnx``: the chosen folds, averaged (:mod:`nnunet_tools.network`);
* ``model.json``: what the segmenter needs, taken from the plans: spacing and patch size in
  canonical order, ``CTNormalization`` with the foreground intensity properties, nnU-Net's
  resampling settings, logit averaging, the mirroring axes the trainer allows, and the label
  names mapped to the catalogue (:mod:`nnunet_tools.label_mapping`), plus provenance;
* ``config.pbtxt``: production Triton (native ONNX Runtime backend, dynamic batching, GPU
  instances, optionally the TensorRT accelerator);
* ``configs/cpu.pbtxt``: the same on CPU instances, which the embedded server loads
  (``--model-config-name=cpu``, :mod:`stack.triton`).

The folder is assembled beside ``<out>`` and swapped in at the end, so a failed import never
leaves half a model behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal

from nnunet_tools.label_mapping import LabelMapping, Unmapped, channel_labels
from nnunet_tools.network import build, parameter_count, to_onnx
from nnunet_tools.source import TrainedModel
from segmenter.spec import ModelSpec
from stack.triton import EMBEDDED_CONFIG, render_config

log = logging.getLogger(__name__)

Orientation = Literal["LPS", "RAS"]


@dataclass(frozen=True)
class ImportOptions:
    """Choices of ``import-nnunet`` beyond the model folder itself."""

    mapping: LabelMapping
    unmapped: Unmapped | None = None
    orientation: Orientation | None = None
    mirroring: bool = True
    title: str | None = None
    demo: bool = False
    version: str = "1"
    max_batch_size: int = 8
    tensorrt: Literal["FP32", "FP16"] | None = None


def _interpolation(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"order": int(kwargs.get("order", 3)), "order_z": int(kwargs.get("order_z", 0)),
            "force_separate_z": kwargs.get("force_separate_z")}


def describe(model: TrainedModel, role: str, options: ImportOptions,
             parameters: int) -> dict[str, Any]:
    """The ``model.json`` of an imported model (validated by :class:`ModelSpec`)."""
    config, plans = model.config, model.plans_manager
    forward, backward = list(plans.transpose_forward), list(plans.transpose_backward)
    intensities = plans.foreground_intensity_properties_per_channel["0"]
    labels = channel_labels(model.channel_names, options.mapping, options.unmapped)
    allowed = model.checkpoints[0].mirror_axes if options.mirroring else ()
    folds = [c.fold for c in model.checkpoints]
    architecture = config.network_arch_class_name.rpartition(".")[2]
    features = config.network_arch_init_kwargs.get("features_per_stage")
    return {
        "name": role,
        "version": options.version,
        "role": role,
        "title": options.title or f"nnU-Net v2 {plans.dataset_name}, {model.configuration}, "
                                  f"fold{'s' if len(folds) > 1 else ''} {', '.join(folds)}",
        "demo": options.demo,
        "architecture": f"{architecture} (features {features}), mean of {len(folds)} fold(s), "
                        f"{parameters} parameters",
        "orientation": options.orientation or options.mapping.orientation or "LPS",
        "spacing_zyx": [float(config.spacing[b]) for b in backward],
        "patch_size_zyx": [int(config.patch_size[b]) for b in backward],
        "normalization": {"scheme": "CTNormalization", "mean": float(intensities["mean"]),
                          "std": float(intensities["std"]),
                          "lower": float(intensities["percentile_00_5"]),
                          "upper": float(intensities["percentile_99_5"])},
        "labels": labels,
        "input": {"name": "input", "datatype": "FP32"},
        "output": {"name": "logits", "datatype": "FP32"},
        "mirror_axes": sorted(forward[a] for a in allowed),
        "resampling": {
            "scheme": "nnunet",
            "data": _interpolation(config.configuration["resampling_fn_data_kwargs"]),
            "probabilities": _interpolation(
                config.configuration["resampling_fn_probabilities_kwargs"]),
        },
        "averaging": "logits",
        "nnunet": {
            "source": str(model.folder.resolve()),
            "dataset": plans.dataset_name,
            "plans": plans.plans_name,
            "configuration": model.configuration,
            "trainer": model.checkpoints[0].trainer,
            "folds": folds,
            "checkpoints": {c.fold: {"file": c.path.name, "sha256": c.sha256}
                            for c in model.checkpoints},
            "transpose_forward": forward,
            "label_names": {str(c): n for c, n in sorted(model.channel_names.items())},
            "label_mapping": options.mapping.description,
            "nnunetv2": package_version("nnunetv2"),
        },
    }


def _swap(staging: Path, out: Path) -> None:
    """Put ``staging`` in place of ``out`` (whose previous content is removed)."""
    if out.exists():
        old = out.with_name(f".{out.name}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        staging.rename(out)


def import_model(model: TrainedModel, out: Path, options: ImportOptions) -> ModelSpec:
    """Write the Triton model directory ``out`` for ``model``; returns its validated spec."""
    role = out.name
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        started = time.monotonic()
        ensemble = build(model)
        log.info("built %d fold network(s) from the plans (%.1f s)", len(model.checkpoints),
                 time.monotonic() - started)
        description = describe(model, role, options, parameter_count(ensemble))
        spec = ModelSpec.model_validate(description)
        to_onnx(ensemble, spec.patch_size_zyx, staging / options.version / "model.onnx")
        (staging / "model.json").write_text(json.dumps(description, indent=2) + "\n")
        (staging / "config.pbtxt").write_text(render_config(
            spec, max_batch_size=options.max_batch_size, kind="KIND_GPU",
            tensorrt=options.tensorrt))
        (staging / "configs").mkdir()
        (staging / "configs" / f"{EMBEDDED_CONFIG}.pbtxt").write_text(
            render_config(spec, max_batch_size=options.max_batch_size))
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    names = [name for _, name in sorted(spec.label_names.items())]
    log.info("wrote %s: %d channels, patch %s at %s mm, labels %s", out, spec.num_channels,
             list(spec.patch_size_zyx), list(spec.spacing_zyx), names)
    return spec
