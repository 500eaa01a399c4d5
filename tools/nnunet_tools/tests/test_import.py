"""``import-nnunet`` on model folders as nnU-Net writes them (randomly initialised networks).

The imported model, run by the segmenter (onnxruntime standing in for Triton), must agree with
nnU-Net's own predictor on at least 99.9 % of voxels, also for plans whose ``transpose_forward``
is not the identity and for anisotropic CTs; the trained model through Triton is in
test_equivalence.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from nnunet_tools import source
from nnunet_tools.__main__ import import_main
from nnunet_tools.importer import ImportOptions, import_model
from nnunet_tools.label_mapping import LabelMapping
from nnunet_tools.reference import axial_volume, nnunet_prediction, nnunet_predictor
from segmenter.inference import segment
from segmenter.spec import ModelSpec, NnUNetResampling
from spinemets import labels
from spinemets.errors import ModelError

#: Canonical (z, y, x) spacing and patch of the synthetic models.
SPACING = (3.0, 2.0, 2.0)
PATCH = (16, 24, 24)


def transposed(transpose: tuple[int, int, int]) -> tuple[list[float], list[int]]:
    """Spacing and patch in nnU-Net's transposed order (as its plans hold them)."""
    return [SPACING[a] for a in transpose], [PATCH[a] for a in transpose]


def phantom_ct(spacing_zyx: tuple[float, float, float], shape: tuple[int, int, int]
               ) -> npt.NDArray[np.int16]:
    """Soft tissue with three bone blocks stacked along z and some noise (HU)."""
    rng = np.random.default_rng(3)
    image = rng.normal(30.0, 25.0, shape)
    z = shape[0]
    for n in range(3):
        image[(4 + 10 * n) * z // 36:(11 + 10 * n) * z // 36, shape[1] // 3:2 * shape[1] // 3,
              shape[2] // 3:2 * shape[2] // 3] += 600 + 150 * n
    return image.astype(np.int16)


def parse(path: Path) -> Any:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture
def model_folder(tmp_path: Path, make_model: Callable[..., Path],
                 make_plans: Callable[..., dict[str, Any]]) -> Path:
    spacing, patch = transposed((2, 0, 1))
    return make_model(tmp_path, make_plans(spacing, patch, (2, 0, 1)))


def test_import_writes_a_triton_model_directory(model_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "triton-models" / "vertebrae"
    spec = import_model(source.load(model_folder), out,
                        ImportOptions(mapping=LabelMapping(), tensorrt="FP16"))
    assert sorted(p.name for p in out.iterdir()) == ["1", "config.pbtxt", "configs",
                                                      "model.json"]
    assert spec == ModelSpec.load(out / "model.json")
    assert spec.spacing_zyx == SPACING and spec.patch_size_zyx == PATCH
    assert spec.labels == {"0": "background", "1": "vertebra_L1", "2": "vertebra_L2",
                           "3": "vertebra_L3"}
    assert spec.normalization.lower == 60.0 and spec.normalization.upper == 1100.0
    assert spec.normalization.mean == 420.0 and spec.normalization.std == 210.0
    assert isinstance(spec.resampling, NnUNetResampling) and spec.averaging == "logits"
    assert spec.resampling.data.order == 3 and spec.resampling.probabilities.order == 1
    assert spec.mirror_axes == (0, 1, 2) and not spec.demo
    provenance = json.loads((out / "model.json").read_text())["nnunet"]
    assert provenance["folds"] == ["0", "1"] and provenance["transpose_forward"] == [2, 0, 1]
    production, cpu = parse(out / "config.pbtxt"), parse(out / "configs" / "cpu.pbtxt")
    for config in (production, cpu):
        assert config.backend == "onnxruntime" and config.max_batch_size == 8
        assert list(config.input[0].dims) == [1, *PATCH]
        assert list(config.output[0].dims) == [4, *PATCH]
        assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert production.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert cpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    [accelerator] = production.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert not cpu.optimization.execution_accelerators.gpu_execution_accelerator
    graph = onnx.load(str(out / "1" / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_the_segmenter_agrees_with_nnunet(model_folder: Path, tmp_path: Path) -> None:
    """Transposed plans, both folds, mirroring on and off, an isotropic and an anisotropic CT."""
    out = tmp_path / "vertebrae"
    spec = import_model(source.load(model_folder), out, ImportOptions(mapping=LabelMapping()))
    session = ort.InferenceSession(str(out / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])

    def predict(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(session.run(["logits"], {"input": batch})[0])

    values = np.asarray(spec.channel_values)
    for spacing, shape, mirroring in [((2.0, 1.5, 1.5), (54, 48, 48), False),
                                      ((3.5, 1.0, 1.0), (30, 64, 60), True)]:
        image = phantom_ct(spacing, shape)
        predictor = nnunet_predictor(model_folder, ["0", "1"], mirroring)
        theirs = values[nnunet_prediction(predictor, image, spacing)]
        ours = segment(axial_volume(image, spacing), spec, predict, mirror=mirroring,
                       postprocess_labels=False).array
        assert np.mean(ours == theirs) >= 0.999, (spacing, mirroring)
        assert len(np.unique(theirs)) >= 3  # not a blank map


def test_the_command_line(model_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "muscles"
    assert import_main([str(model_folder.parent), "--configuration", "3d_fullres", "--out",
                        str(out), "--folds", "1", "--no-mirroring", "--orientation", "RAS",
                        "--demo", "--title", "Synthetic"]) == 0
    spec = ModelSpec.load(out / "model.json")
    assert spec.name == spec.role == "muscles" and spec.orientation == "RAS"
    assert spec.mirror_axes == () and spec.demo and spec.title == "Synthetic"
    assert json.loads((out / "model.json").read_text())["nnunet"]["folds"] == ["1"]
    assert import_main([str(model_folder.parent), "--configuration", "2d", "--out",
                        str(out)]) == 2
    assert ModelSpec.load(out / "model.json").title == "Synthetic"  # a failed import kept it


def test_foreign_label_names_follow_the_mapping(tmp_path: Path,
                                                make_model: Callable[..., Path]) -> None:
    folder = make_model(tmp_path, labels={"background": 0, "vertebrae_L2": 1, "liver": 2,
                                          "vertebrae_L1": 3}, folds=(0,))
    out = tmp_path / "vertebrae"
    spec = import_model(source.load(folder), out,
                        ImportOptions(mapping=LabelMapping.load("totalsegmentator")))
    assert spec.labels == {"0": "background", "1": "vertebra_L2", "2": "background",
                           "3": "vertebra_L1"}
    assert spec.orientation == "RAS"
    assert spec.channel_values == (0, labels.vertebra("L2").value, 0,
                                   labels.vertebra("L1").value)
    with pytest.raises(ModelError, match=r"\['liver'\]"):
        import_model(source.load(folder), tmp_path / "strict",
                     ImportOptions(mapping=LabelMapping.load("totalsegmentator"),
                                   unmapped="error"))
    assert not (tmp_path / "strict").exists() and not (tmp_path / ".strict.importing").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"normalization_schemes": ["ZScoreNormalization"]}, "normalization_schemes"),
    ({"previous_stage": "3d_lowres"}, "cascade"),
    ({"resampling_fn_data": "resample_torch_fornnunet"}, "resampling_fn_data"),
    ({"resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 3, "order_z": 0}},
     "resampling_fn_probabilities_kwargs.order 3"),
])
def test_models_the_segmenter_cannot_reproduce_are_refused(
        tmp_path: Path, make_model: Callable[..., Path],
        make_plans: Callable[..., dict[str, Any]], change: dict[str, Any], message: str) -> None:
    folder = make_model(tmp_path, make_plans(), folds=(0,))
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"].update(change)
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ModelError, match=message) as info:
        source.load(folder)
    assert info.value.reason == "unsupported-nnunet-model"


def test_region_based_models_are_refused(tmp_path: Path, make_model: Callable[..., Path],
                                         make_plans: Callable[..., dict[str, Any]]) -> None:
    folder = make_model(tmp_path, make_plans(), folds=(0,), mirror_axes=None)
    dataset = json.loads((folder / "dataset.json").read_text())
    dataset["labels"] = {"background": 0, "vertebra_L1": [1, 2], "lesion_lytic": 2}
    dataset["regions_class_order"] = [1, 2]
    (folder / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(ModelError, match="region-based"):
        source.load(folder)


def test_missing_folds_and_configurations_are_named(tmp_path: Path,
                                                    make_model: Callable[..., Path]) -> None:
    folder = make_model(tmp_path, folds=(0,))
    with pytest.raises(ModelError, match="fold_3") as info:
        source.load(folder, folds=["3"])
    assert info.value.reason == "bad-nnunet-folder"
    with pytest.raises(ModelError, match="for '3d_lowres'"):
        source.load(folder.parent, "3d_lowres")
