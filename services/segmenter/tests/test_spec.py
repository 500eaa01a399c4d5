"""model.json: validation with errors that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.errors import ModelError


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(raw))
    return path


def valid() -> dict[str, Any]:
    return {
        "name": "vertebrae", "version": "1", "role": "vertebrae", "title": "demo", "demo": True,
        "architecture": "PlainConvUNet", "orientation": "LPS",
        "spacing_zyx": [2.0, 1.5, 1.5], "patch_size_zyx": [64, 96, 96],
        "normalization": {"scheme": "CTNormalization", "mean": 250.0, "std": 300.0,
                          "lower": -1000.0, "upper": 1500.0},
        "labels": {"0": "background", "1": "vertebra_T12", "2": "vertebra_L1", "3": "sacrum"},
        "input": {"name": "input", "datatype": "FP32"},
        "output": {"name": "logits", "datatype": "FP32"},
        "mirror_axes": [2],
        "training": {"epochs": 3, "script": "tools/demomodel/train.py"},
    }


def test_a_valid_description_loads(tmp_path: Path) -> None:
    spec = ModelSpec.load(write(tmp_path, valid()))
    assert spec.num_channels == 4
    assert spec.patch_size_zyx == (64, 96, 96) and spec.spacing_zyx == (2.0, 1.5, 1.5)
    assert spec.channel_values == (0, labels.vertebra("T12").value, labels.vertebra("L1").value,
                                   labels.by_name("sacrum").value)
    assert spec.label_names == {labels.vertebra("T12").value: "vertebra_T12",
                                labels.vertebra("L1").value: "vertebra_L1", 26: "sacrum"}
    assert spec.mirror_axes == (2,)


@pytest.mark.parametrize(("change", "field"), [
    ({"labels": {"0": "background", "2": "vertebra_L1"}}, "without gaps"),
    ({"labels": {"0": "vertebra_L1", "1": "background"}}, "channel 0 must be"),
    ({"labels": {"0": "background", "1": "vertebra_X9"}}, "not in the label catalogue"),
    ({"labels": {"0": "background", "01": "sacrum"}}, "not an output channel"),
    ({"labels": {"0": "background", "1": "sacrum", "2": "sacrum"}}, "two channels"),
    ({"patch_size_zyx": [64, 0, 96]}, "patch_size_zyx"),
    ({"spacing_zyx": [2.0, -1.0, 1.0]}, "spacing_zyx"),
    ({"orientation": "RAI"}, "orientation"),
    ({"normalization": {"scheme": "CTNormalization", "mean": 0, "std": 1, "lower": 5,
                        "upper": 1}}, "lower"),
    ({"normalization": {"scheme": "ZScore", "mean": 0, "std": 1, "lower": 0, "upper": 1}},
     "normalization.scheme"),
    ({"output": {"name": "logits", "datatype": "FP16"}}, "output.datatype"),
    ({"mirror_axes": [0, 3]}, "mirror"),
    ({"version": "v1"}, "version"),
    ({"decision": "threshold"}, "decision"),
    ({"decision": "foreground-first", "averaging": "logits"}, "foreground-first needs softmax"),
    ({"decision": "foreground-first",
      "labels": {"0": "background", "1": "sacrum", "2": "background"}}, "only background"),
])
def test_invalid_descriptions_name_the_problem(tmp_path: Path, change: dict[str, Any],
                                               field: str) -> None:
    path = write(tmp_path, {**valid(), **change})
    with pytest.raises(ModelError, match=field) as info:
        ModelSpec.load(path)
    assert info.value.reason == "bad-model-spec" and str(path) in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found") as info:
        ModelSpec.load(tmp_path / "absent.json")
    assert info.value.reason == "missing-model-spec"
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelSpec.load(tmp_path / "model.json")
