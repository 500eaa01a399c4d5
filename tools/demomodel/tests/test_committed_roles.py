"""The committed muscle and lesion models: model.json, ONNX, and a run of the served inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from scipy import ndimage

import phantom
from demomodel import evaluate, export, roles
from segmenter.crop import group_box, patch_extent
from segmenter.inference import segment
from segmenter.routing import segment_roles
from segmenter.settings import Settings
from segmenter.sliding import Predict
from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

MODELS = Path(__file__).resolve().parents[3] / "triton-models"
ROLES = ("muscles", "lesions")


@pytest.fixture(scope="module", params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def spec_of(role: str) -> ModelSpec:
    return ModelSpec.load(MODELS / role / "model.json")


def predict_of(role: str) -> Predict:
    """The committed ONNX of ``role`` (its model.json's version folder), run by onnxruntime."""
    return evaluate.onnx_predict(MODELS / role / spec_of(role).version / "model.onnx")


def test_model_json_maps_the_channels_to_the_catalogue(role: str) -> None:
    spec = spec_of(role)
    config = roles.ROLES[role]
    assert spec.name == spec.role == role and spec.demo is True
    assert spec.title == export.TITLE and "not for clinical use" in spec.title
    assert [spec.labels[str(c)] for c in range(spec.num_channels)] == list(
        config.target.channels)
    group = labels.Group.MUSCLE if role == "muscles" else labels.Group.LESION
    assert spec.channel_values[1:] == tuple(label.value for label in labels.in_group(group))
    assert spec.spacing_zyx == config.spacing_zyx
    assert spec.patch_size_zyx == config.patch_size_zyx
    assert spec.mirror_axes == (() if role == "muscles" else (2,))  # muscles are lateral
    config_text = (MODELS / role / "config.pbtxt").read_text()
    assert f'name: "{role}"' in config_text and "not for clinical use" in config_text


def test_onnx_is_small_and_matches_the_spec(role: str) -> None:
    spec = spec_of(role)
    path = MODELS / role / spec.version / "model.onnx"
    assert path.stat().st_size < export.MAX_ONNX_BYTES
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == (spec.input.name, spec.output.name)
    assert inp.type == out.type == "tensor(float)"
    assert inp.shape[1:] == [1, *spec.patch_size_zyx]
    assert out.shape[1:] == [spec.num_channels, *spec.patch_size_zyx]
    assert isinstance(inp.shape[0], str)  # dynamic batch axis


def test_muscles_are_found_on_their_side_of_a_small_phantom() -> None:
    """Served inference on a small lumbar phantom: every muscle overlaps its true self."""
    spec = spec_of("muscles")
    generated = phantom.generate(phantom.PhantomOptions(seed=5, levels=("L1", "L4"),
                                                        spacing=(2.0, 2.0, 3.0), matrix=200))
    result = segment(generated.ct, spec, predict_of("muscles"))
    assert result.demo and set(result.labels.values()) <= set(spec.labels.values())
    for label in labels.in_group(labels.Group.MUSCLE):
        score = evaluate.dice(generated.muscles.mask(label.name), result.mask(label.name))
        assert score > 0.5, f"{label.name}: Dice {score:.2f}"


def test_lesions_of_a_small_phantom_are_detected() -> None:
    """Served inference on a small phantom with two lesions: both are found, inside bone."""
    spec = spec_of("lesions")
    generated = phantom.generate(phantom.PhantomOptions(seed=6, levels=("L1", "L3"),
                                                        spacing=(1.5, 1.5, 2.0), matrix=140,
                                                        lesions=2))
    result = segment(generated.ct, spec, predict_of("lesions"))
    assert result.demo and set(result.labels.values()) <= set(spec.labels.values())
    truth = generated.lesions.array > 0
    found = result.array > 0
    components, count = ndimage.label(truth)
    assert count == 2
    for number in (1, 2):
        assert found[components == number].any(), f"lesion {number} missed"
    assert np.mean(generated.vertebrae.array[found] > 0) > 0.9


@pytest.mark.slow  # 35-45 s: make test-slow (the end-to-end tests run the cropped routing)
def test_lesions_cropped_to_the_vertebrae_match_the_whole_volume_run() -> None:
    """The served routing: vertebrae first, lesions inside their box grown by 10 mm. Inside the
    box the map is the whole-volume one up to the sliding window's and the resampling's
    placement (the box has its own model grid); outside it is empty, and no lesion is there."""
    generated = phantom.generate(phantom.PhantomOptions(seed=6, levels=("L1", "L3"),
                                                        spacing=(1.2, 1.2, 2.0), matrix=180,
                                                        lesions=2))
    roles = ["vertebrae", "lesions"]
    specs = {role: spec_of(role) for role in roles}
    predicts = {role: predict_of(role) for role in roles}

    def run(role: str, volume: Volume) -> LabelMap:
        return segment(volume, specs[role], predicts[role])

    rule = Settings().crops["lesions"].model_copy(update={"extend_reference": False})
    vertebrae, cropped = segment_roles(generated.ct, roles, specs, {"lesions": rule}, run)
    whole = run("lesions", generated.ct)
    box = group_box(vertebrae, labels.Group.VERTEBRA, rule.margin_mm,
                    patch_extent(generated.ct.geometry, specs["lesions"]))
    assert box is not None
    assert cropped.array[box].size < 0.5 * cropped.array.size
    outside = np.ones(cropped.array.shape, dtype=bool)
    outside[box] = False
    assert not cropped.array[outside].any() and not generated.lesions.array[outside].any()
    assert np.mean(cropped.array[box] == whole.array[box]) >= 0.999
    labelled = (cropped.array[box] > 0) | (whole.array[box] > 0)
    assert np.mean(cropped.array[box][labelled] == whole.array[box][labelled]) >= 0.9
