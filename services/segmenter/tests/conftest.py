"""Fixtures of the segmenter tests: model descriptions, volumes and a tiny ONNX network."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segmenter.spec import ModelSpec
from spinemets.geometry import Geometry, Volume

VolumeFactory = Callable[..., Volume]


def spec_dict(names: Sequence[str] = ("vertebra_T1", "vertebra_T2"),
              patch: Sequence[int] = (16, 16, 16), spacing: Sequence[float] = (2.0, 2.0, 2.0),
              **overrides: Any) -> dict[str, Any]:
    """A valid model.json; HU 200 maps to 2.0 after normalisation (std 100)."""
    raw: dict[str, Any] = {
        "name": "vertebrae", "version": "1", "role": "vertebrae",
        "title": "Tiny test network, not for clinical use", "demo": True,
        "architecture": "one Conv3d", "orientation": "LPS",
        "spacing_zyx": list(spacing), "patch_size_zyx": list(patch),
        "normalization": {"scheme": "CTNormalization", "mean": 0.0, "std": 100.0,
                          "lower": -1000.0, "upper": 1500.0},
        "labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(names)}},
        "input": {"name": "input", "datatype": "FP32"},
        "output": {"name": "logits", "datatype": "FP32"},
        "mirror_axes": [0, 1, 2],
    }
    raw.update(overrides)
    return raw


@pytest.fixture(scope="session")
def make_spec() -> Callable[..., ModelSpec]:
    """``make_spec(names, patch, spacing, **overrides)`` -> a validated :class:`ModelSpec`."""
    return lambda *args, **kwargs: ModelSpec.model_validate(spec_dict(*args, **kwargs))


def make_volume(array: npt.NDArray[np.int16], spacing: Sequence[float] = (1.0, 1.0, 1.5),
                direction: npt.ArrayLike | None = None,
                origin: Sequence[float] = (-20.0, -30.0, 100.0)) -> Volume:
    """A volume over ``array[slice, row, column]`` (spacing: column, row, slice; axial)."""
    slices, rows, columns = array.shape
    cosines = np.asarray(np.eye(3) if direction is None else direction, dtype=np.float64)
    geometry = Geometry((columns, rows, slices), (spacing[0], spacing[1], spacing[2]),
                        (origin[0], origin[1], origin[2]), cosines)
    return Volume(array, geometry, tuple(f"1.2.3.{k}" for k in range(slices)),
                  "1.2.840.10008.5.1.4.1.1.2")


@pytest.fixture(scope="session")
def volume() -> VolumeFactory:
    """``volume(array, spacing, direction, origin)``: see :func:`make_volume`."""
    return make_volume


def tiny_onnx(path: Path, channels: int, patch: Sequence[int], seed: int = 0) -> Path:
    """One Conv3d (kernel 3) as ONNX: [N, 1, *patch] -> logits [N, channels, *patch].

    Channel 0 is a constant 0, channel 1 a local mean minus 2 (bone above ~200 HU), the other
    channels are small random filters well below: the net segments "bone" as channel 1.
    """
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.01, size=(channels, 1, 3, 3, 3)).astype(np.float32)
    weights[0] = 0.0
    weights[1] += 1.0 / 27
    bias = np.full(channels, -6.0, dtype=np.float32)
    bias[0], bias[1] = 0.0, -2.0
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "W", "B"], ["logits"], pads=[1] * 6)],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, *patch])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", channels, *patch])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def model_dir() -> Callable[..., Path]:
    """``model_dir(repo, **overrides)``: ``<repo>/vertebrae/`` with model.json and 1/model.onnx."""
    def make(repo: Path, **overrides: Any) -> Path:
        raw = spec_dict(**overrides)
        folder: Path = repo / raw["name"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.json").write_text(json.dumps(raw, indent=2))
        tiny_onnx(folder / raw["version"] / "model.onnx", len(raw["labels"]), raw["patch_size_zyx"])
        return folder
    return make
