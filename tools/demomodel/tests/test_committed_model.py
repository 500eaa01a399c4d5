"""The committed demo model: model.json follows the contract and the ONNX file serves it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from demomodel import data, export
from segmenter.spec import ModelSpec
from spinemets import labels

MODEL_DIR = Path(__file__).resolve().parents[3] / "triton-models" / "vertebrae"


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return ModelSpec.load(MODEL_DIR / "model.json")


@pytest.fixture(scope="module")
def session(spec: ModelSpec) -> ort.InferenceSession:
    return ort.InferenceSession(str(MODEL_DIR / spec.version / "model.onnx"),
                                providers=["CPUExecutionProvider"])


def test_model_json_is_a_valid_demo_spec(spec: ModelSpec) -> None:
    assert spec.demo is True
    assert spec.title == export.TITLE
    assert "not for clinical use" in spec.title
    assert spec.orientation == "LPS"
    assert spec.labels["0"] == "background"
    names = [spec.labels[str(c)] for c in range(1, spec.num_channels)]
    assert names == [labels.vertebra(lv).name for lv in labels.LEVELS] + ["sacrum"]
    assert spec.channel_values[1:] == (*range(8, 25), 26)
    assert spec.input.name == "input" and spec.output.name == "logits"


@pytest.mark.acceptance
def test_model_json_records_normalisation_and_provenance(spec: ModelSpec) -> None:
    raw = json.loads((MODEL_DIR / "model.json").read_text())
    assert spec.normalization.model_dump(exclude={"scheme"}) == {
        "lower": data.NORMALIZATION.lower, "upper": data.NORMALIZATION.upper,
        "mean": data.NORMALIZATION.mean, "std": data.NORMALIZATION.std}
    training = raw["training"]
    assert training["script"] == "tools/demomodel/train.py"
    # The model's own run may only give resumed weights a new graph (versions 6 and 8).
    assert training.get("total_iterations", training["iterations"]) > 0
    train_seeds = range(*training["phantom_seeds"]["train"])
    assert set(train_seeds) <= set(data.TRAIN_SEEDS)
    assert 0.0 <= training["validation_mean_dice"] <= 1.0


def test_onnx_is_small(spec: ModelSpec) -> None:
    assert (MODEL_DIR / spec.version / "model.onnx").stat().st_size < 20 * 1024 * 1024


def test_onnx_io_matches_spec(spec: ModelSpec, session: ort.InferenceSession) -> None:
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == spec.input.name and out.name == spec.output.name
    assert inp.type == out.type == "tensor(float)"
    assert inp.shape[1:] == [1, *spec.patch_size_zyx]
    assert out.shape[1:] == [spec.num_channels, *spec.patch_size_zyx]
    assert isinstance(inp.shape[0], str)  # dynamic batch axis


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runs_any_batch(spec: ModelSpec, session: ort.InferenceSession, batch: int) -> None:
    x = np.random.default_rng(batch).normal(size=(batch, 1, *spec.patch_size_zyx))
    (logits,) = session.run(["logits"], {"input": x.astype(np.float32)})
    assert logits.shape == (batch, spec.num_channels, *spec.patch_size_zyx)
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
