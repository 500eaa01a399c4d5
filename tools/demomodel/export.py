"""Export a trained checkpoint to ``triton-models/<role>/``: ONNX, model.json, config.pbtxt.

The ONNX graph takes ``input`` float32 ``[N, 1, Z, Y, X]`` (dynamic batch N, fixed patch size)
and returns ``logits`` float32 ``[N, C, Z, Y, X]``; onnxruntime must agree with torch within
:data:`TOLERANCE` or the export fails. ``model.json`` (fields in ``triton-models/README.md``)
holds spacing, patch, normalisation, channel -> catalogue name and the training provenance;
``config.pbtxt`` is rendered from it by :func:`stack.triton.write_config`.

``python -m demomodel.export --checkpoint .cache/demomodel/checkpoints/last.pt
--out triton-models/vertebrae --version 2`` (``muscles-last.pt`` to ``triton-models/muscles``,
and so on)
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from demomodel import data
from demomodel.network import (
    LevelUpsampling,
    ModelConfig,
    NetworkConfig,
    PlainUNet,
    TwoScaleUNet,
    parameter_count,
)
from stack.triton import write_config

log = logging.getLogger(__name__)

TITLE = "Phantom-trained demo model, not for clinical use"
OPSET = 17
#: Largest allowed absolute difference between onnxruntime and torch logits.
TOLERANCE = 1e-3
#: Upper bound of the committed ONNX file.
MAX_ONNX_BYTES = 20 * 1024 * 1024


def network(raw: dict[str, Any]) -> TwoScaleUNet | PlainUNet:
    """A freshly initialised network of a checkpoint's ``model`` entry."""
    if "features" in raw:
        return PlainUNet(NetworkConfig(tuple(raw["patch_size_zyx"]), tuple(raw["features"]),
                                       int(raw["num_classes"])))
    return TwoScaleUNet(ModelConfig(tuple(raw["patch_size_zyx"]), tuple(raw["bone_features"]),
                                    tuple(raw["level_features"]), int(raw["num_levels"]),
                                    _level_upsampling(raw), _level_phases(raw)))


def _level_upsampling(entry: Mapping[str, Any]) -> LevelUpsampling:
    """The level upsampling a checkpoint's ``model`` entry or a vertebra model.json names;
    versions 1-5 name none and upsampled by nearest neighbour."""
    upsampling: LevelUpsampling = entry.get("level_upsampling", "nearest")
    return upsampling


def _level_phases(entry: Mapping[str, Any]) -> int:
    """The grid phases a checkpoint's ``model`` entry or a vertebra model.json averages the
    level logits over; versions 1-7 name none and used one."""
    return int(entry.get("level_phases", 1))


def load(checkpoint: dict[str, Any]) -> TwoScaleUNet | PlainUNet:
    """The network of a checkpoint (the vertebra model's two U-Nets, or one U-Net), in eval
    mode."""
    model = network(checkpoint["model"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def model_description(checkpoint: dict[str, Any], model: TwoScaleUNet | PlainUNet, role: str,
                      version: str) -> dict[str, Any]:
    """The ``model.json`` content of a checkpoint (channels: the vertebra model's unless the
    checkpoint names its own)."""
    config = model.config
    channels = checkpoint.get("channels", data.CHANNELS)
    description: dict[str, Any] = {
        "name": role,
        "version": version,
        "role": role,
        "title": TITLE,
        "demo": True,
        "architecture": f"{config.describe()}, {parameter_count(model)} parameters",
        "orientation": "LPS",
        "spacing_zyx": [float(s) for s in checkpoint["spacing_zyx"]],
        "patch_size_zyx": list(config.patch_size_zyx),
        "normalization": data.Normalization(**checkpoint["normalization"]).as_json(),
        "labels": {str(c): name for c, name in enumerate(channels)},
        "input": {"name": "input", "datatype": "FP32"},
        "output": {"name": "logits", "datatype": "FP32"},
        "mirror_axes": checkpoint.get("mirror_axes", []),
        # Bone x level: bone where the bone U-Net says so, then the most probable level.
        "decision": "foreground-first" if isinstance(model, TwoScaleUNet) else "argmax",
        "training": checkpoint["training"],
    }
    if isinstance(model, TwoScaleUNet):
        description["level_upsampling"] = model.config.level_upsampling
        description["level_phases"] = model.config.level_phases
    return description


def _example(model: TwoScaleUNet | PlainUNet) -> torch.Tensor:
    """A fixed random batch of two patches."""
    return torch.randn(2, 1, *model.config.patch_size_zyx,
                       generator=torch.Generator().manual_seed(0))


def _check(model: TwoScaleUNet | PlainUNet, path: Path) -> float:
    """The largest difference between onnxruntime on ``path`` and ``model`` on the example
    batch; raises when it is above :data:`TOLERANCE`."""
    example = _example(model)
    with torch.no_grad():
        expected = model(example).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(["logits"], {"input": example.numpy()})[0]
    difference = float(np.abs(actual - expected).max())
    if difference > TOLERANCE:
        raise RuntimeError(f"onnxruntime on {path.name} differs from torch by {difference:.2e}")
    return difference


def to_onnx(model: TwoScaleUNet | PlainUNet, path: Path) -> None:
    """Write the ONNX graph and check it against torch on a random batch of two patches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (_example(model),), str(tmp), dynamo=False, opset_version=OPSET,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      external_data=False)
    difference = _check(model, tmp)
    if tmp.stat().st_size > MAX_ONNX_BYTES:
        raise RuntimeError(f"ONNX file is {tmp.stat().st_size} bytes, limit {MAX_ONNX_BYTES}")
    tmp.replace(path)
    log.info("wrote %s (%d bytes), max |onnx - torch| = %.2e", path, path.stat().st_size,
             difference)


def _stage_features(weights: dict[str, torch.Tensor], prefix: str) -> list[int]:
    """Features per encoder stage of the PlainConvUNet under ``prefix``."""
    features: list[int] = []
    while (key := f"{prefix}encoder.stages.{len(features)}.0.convs.0.conv.weight") in weights:
        features.append(int(weights[key].shape[0]))
    return features


def checkpoint_of(folder: Path) -> dict[str, Any]:
    """The checkpoint a demo model folder (``triton-models/<role>``) was exported from, rebuilt
    from its model.json and ONNX, so that training can go on from a committed model.

    The ONNX initialisers keep the torch parameter names. Parameters the graph does not use
    (the decoders' deep-supervision heads) keep a fresh initialisation; the rebuilt network
    must reproduce the ONNX logits within :data:`TOLERANCE`.
    """
    description = json.loads((folder / "model.json").read_text())
    if not description.get("demo") or "training" not in description:
        raise ValueError(f"{folder}/model.json does not describe a demo model of this project")
    path = folder / str(description["version"]) / "model.onnx"
    weights = {tensor.name: torch.from_numpy(numpy_helper.to_array(tensor).copy())
               for tensor in onnx.load(str(path)).graph.initializer}
    channels = [description["labels"][str(c)] for c in range(len(description["labels"]))]
    patch = list(description["patch_size_zyx"])
    checkpoint: dict[str, Any] = {
        "spacing_zyx": list(description["spacing_zyx"]),
        "normalization": {k: float(description["normalization"][k])
                          for k in ("lower", "upper", "mean", "std")},
        "mirror_axes": description.get("mirror_axes", []),
        "training": description["training"],
    }
    if description["role"] == "vertebrae":
        checkpoint["model"] = {"patch_size_zyx": patch,
                               "bone_features": _stage_features(weights, "bone."),
                               "level_features": _stage_features(weights, "levels."),
                               "num_levels": len(channels) - 1,
                               "level_upsampling": _level_upsampling(description),
                               "level_phases": _level_phases(description)}
    else:
        checkpoint.update(role=description["role"], channels=channels,
                          model={"patch_size_zyx": patch,
                                 "features": _stage_features(weights, "net."),
                                 "num_classes": len(channels)})
    model = network(checkpoint["model"])
    parameters = dict(model.named_parameters())
    if unknown := sorted(set(weights) - set(parameters)):
        raise ValueError(f"{path}: weights {unknown[:3]} are not parameters of "
                         f"{checkpoint['model']}")
    with torch.no_grad():
        for name, value in weights.items():
            parameters[name].copy_(value)
    checkpoint["state_dict"] = model.state_dict()
    _check(model.eval(), path)
    return checkpoint


def export(checkpoint: dict[str, Any], out: Path, version: str = "1") -> None:
    """Write ``out/<version>/model.onnx``, ``out/model.json`` and Triton's ``out/config.pbtxt``.

    The folder's name is the model's name and role (Triton names a model after its folder).
    """
    model = load(checkpoint)
    to_onnx(model, out / version / "model.onnx")
    description = model_description(checkpoint, model, out.name, version)
    (out / "model.json").write_text(json.dumps(description, indent=2) + "\n")
    log.info("wrote %s and %s", out / "model.json", write_config(out))


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    """``--version``: the model version written (Triton's version folder)."""
    parser.add_argument("--version", default="1",
                        help="model version (Triton's version folder); give new weights a new "
                        "one, as the UIDs of result objects derive from it (default: 1)")


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description="Export the demo model to triton-models/.")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="triton-models/<role> folder")
    add_version_argument(parser)
    args = parser.parse_args(argv)
    export(torch.load(args.checkpoint, weights_only=False), args.out, args.version)


if __name__ == "__main__":
    main()
