"""The imported network: every chosen fold rebuilt from the plans, averaged, exported to ONNX.

Each fold's network is built as nnU-Net builds it for inference (``get_network_from_plans`` with
the configuration's architecture, no deep supervision) and loaded with the fold's weights.
:class:`Ensemble` takes patches in the segmenter's canonical axis order, applies nnU-Net's
``transpose_forward``, averages the folds' logits (as ``nnUNetPredictor`` does) and transposes
back. Averaging per patch equals nnU-Net's averaging of whole-image logits, since the sliding
window is linear in the logits.

The ONNX graph takes ``input`` float32 ``[N, 1, Z, Y, X]`` (dynamic batch N) and returns
``logits`` float32 ``[N, C, Z, Y, X]``; onnxruntime must agree with torch or the export fails.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from nnunet_tools.source import TrainedModel
from spinemets.errors import ModelError

log = logging.getLogger(__name__)

OPSET = 17
#: Largest allowed difference between onnxruntime and torch logits, relative to their range.
TOLERANCE = 1e-3
#: Above this many bytes of weights the graph keeps them in a separate file (protobuf limit 2 GB).
EXTERNAL_DATA_BYTES = 1 << 30


class Ensemble(nn.Module):
    """Mean logits of the fold networks, on patches in canonical ``(z, y, x)`` order."""

    def __init__(self, networks: Sequence[nn.Module], transpose_forward: Sequence[int]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(networks)
        forward = [int(a) for a in transpose_forward]
        self.to_nnunet = (0, 1, *(2 + a for a in forward))
        self.from_nnunet = (0, 1, *(2 + int(a) for a in np.argsort(forward)))
        self.transposed = forward != [0, 1, 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            x = x.permute(*self.to_nnunet)
        total: torch.Tensor = self.folds[0](x)
        for fold in self.folds[1:]:
            total = total + fold(x)
        if len(self.folds) > 1:
            total = total / len(self.folds)
        return total.permute(*self.from_nnunet) if self.transposed else total


def build(model: TrainedModel) -> Ensemble:
    """The chosen folds as one :class:`Ensemble`, in eval mode."""
    config = model.config
    outputs = len(model.channel_names)
    networks = []
    for checkpoint in model.checkpoints:
        network = get_network_from_plans(
            config.network_arch_class_name, config.network_arch_init_kwargs,
            config.network_arch_init_kwargs_req_import, 1, outputs, allow_init=False,
            deep_supervision=False)
        try:
            network.load_state_dict(checkpoint.weights)
        except RuntimeError as exc:
            raise ModelError(f"fold {checkpoint.fold} does not fit the plans' architecture "
                             f"(a trainer with its own network?): {exc}",
                             reason="unsupported-nnunet-model") from None
        networks.append(network)
    return Ensemble(networks, model.plans_manager.transpose_forward).eval()


def parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def _check(session_path: Path, ensemble: Ensemble, example: torch.Tensor) -> float:
    """Largest difference between onnxruntime and torch on ``example``, relative to range."""
    with torch.no_grad():
        expected = ensemble(example).numpy()
    session = ort.InferenceSession(str(session_path), providers=["CPUExecutionProvider"])
    actual = session.run(["logits"], {"input": example.numpy()})[0]
    if actual.shape != expected.shape:
        raise ModelError(f"onnxruntime returned {actual.shape}, torch {expected.shape}",
                         reason="onnx-export")
    scale = max(1.0, float(np.abs(expected).max()))
    return float(np.abs(actual - expected).max()) / scale


def to_onnx(ensemble: Ensemble, patch_zyx: Sequence[int], path: Path) -> float:
    """Write ``path`` (and ``path.data`` for large models); returns the checked difference.

    The graph is written to a temporary folder, checked against torch on two random patches
    (which exercises the batch axis), then moved into place.
    """
    example = torch.randn(2, 1, *patch_zyx, generator=torch.Generator().manual_seed(0))
    external = parameter_count(ensemble) * 4 > EXTERNAL_DATA_BYTES
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        target = Path(tmp) / path.name
        log.info("exporting %d fold(s) to ONNX, patch %s", len(ensemble.folds), list(patch_zyx))
        started = time.monotonic()
        with warnings.catch_warnings():
            # Tracing notes on InstanceNorm (it always normalises by the instance's own
            # statistics, in eval mode too): true and harmless here, the check below is the test.
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean")
            warnings.filterwarnings("ignore", message=".*instance_norm.*", category=UserWarning)
            torch.onnx.export(ensemble, (example,), str(target), dynamo=False,
                              opset_version=OPSET, input_names=["input"],
                              output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                              external_data=external)
        log.info("exported ONNX (%.1f s); checking it against torch on two patches",
                 time.monotonic() - started)
        started = time.monotonic()
        difference = _check(target, ensemble, example)
        if difference > TOLERANCE:
            raise ModelError(f"onnxruntime differs from torch by {difference:.2e} of the logits' "
                             "range", reason="onnx-export")
        log.info("onnxruntime agrees with torch within %.1e (%.1f s)", difference,
                 time.monotonic() - started)
        for item in Path(tmp).iterdir():
            shutil.move(str(item), path.parent / item.name)
    return difference
