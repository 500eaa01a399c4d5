"""The embedded server's set-up: config.pbtxt from model.json, backend directory, environment."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from segmenter.spec import ModelSpec
from spinemets.errors import ConfigError, ModelError
from stack.triton import (
    TritonInstall,
    TritonSettings,
    prepare_backends,
    render_config,
    server_command,
    write_config,
)

MODEL_JSON: dict[str, Any] = {
    "name": "vertebrae", "version": "1", "role": "vertebrae", "title": "demo", "demo": True,
    "orientation": "LPS", "spacing_zyx": [2.0, 2.0, 2.0], "patch_size_zyx": [48, 64, 80],
    "normalization": {"scheme": "CTNormalization", "mean": 0.0, "std": 1.0, "lower": -1000.0,
                      "upper": 1500.0},
    "labels": {"0": "background", "1": "vertebra_L1", "2": "vertebra_L2"},
    "input": {"name": "input", "datatype": "FP32"}, "output": {"name": "logits",
                                                              "datatype": "FP32"},
}


def test_config_takes_names_dims_and_types_from_model_json() -> None:
    text = render_config(ModelSpec.model_validate(MODEL_JSON), max_batch_size=6,
                         intra_op_threads=2)
    assert 'name: "vertebrae"' in text and 'backend: "onnxruntime"' in text
    assert "max_batch_size: 6" in text
    tensors = re.findall(r'name: "(\w+)"\s+data_type: (\w+)\s+dims: \[ ([\d, ]+) \]', text)
    assert tensors == [("input", "TYPE_FP32", "1, 48, 64, 80"),
                       ("logits", "TYPE_FP32", "3, 48, 64, 80")]
    assert re.search(r"dynamic_batching \{\s+max_queue_delay_microseconds: \d+", text)
    assert re.search(r"count: 1\s+kind: KIND_CPU", text)
    assert re.search(r'key: "intra_op_thread_count"\s+value: \{ string_value: "2" \}', text)


def test_write_config_requires_the_folder_to_carry_the_model_name(tmp_path: Path) -> None:
    folder = tmp_path / "vertebrae"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps(MODEL_JSON))
    assert write_config(folder).read_text() == render_config(ModelSpec.model_validate(MODEL_JSON))
    other = tmp_path / "spine"
    other.mkdir()
    (other / "model.json").write_text(json.dumps(MODEL_JSON))
    with pytest.raises(ModelError, match="folder of that name"):
        write_config(other)


@pytest.fixture
def install() -> TritonInstall:
    try:
        return TritonInstall.locate(TritonSettings().venv)
    except ConfigError as exc:
        pytest.skip(f"no embedded Triton: {exc}")


def test_backend_directory_holds_copies_and_our_backend(install: TritonInstall,
                                                        tmp_path: Path) -> None:
    backends = prepare_backends(install, tmp_path / "backends")
    python = backends / "python"
    for name in ("libtriton_python.so", "triton_python_backend_utils.py",
                 "triton_python_backend_stub"):
        assert (python / name).is_file() and not (python / name).is_symlink()
    assert os.access(python / "triton_python_backend_stub", os.X_OK)
    assert "class TritonPythonModel" in (backends / "onnxruntime" / "model.py").read_text()
    assert prepare_backends(install, tmp_path / "backends") == backends  # idempotent


def test_environment_and_command(install: TritonInstall, tmp_path: Path) -> None:
    env = install.environment({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    libraries = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert libraries == [str(install.python_libdir), str(install.libs), "/opt/lib"]
    assert (install.python_libdir / f"libpython{install.python_version}.so.1.0").exists()
    assert env["PATH"].split(os.pathsep)[0] == str(install.venv / "bin")
    settings = TritonSettings(model_repository=tmp_path, grpc_port=18001, http_port=18000,
                              metrics_port=18002)
    command = server_command(install, settings, tmp_path / "backends")
    assert command[0] == str(install.binary)
    assert f"--model-repository={tmp_path.resolve()}" in command
    assert "--grpc-port=18001" in command and "--disable-auto-complete-config" in command


def test_gpu_config_with_tensorrt_and_the_embedded_servers_cpu_config(install: TritonInstall,
                                                                       tmp_path: Path) -> None:
    """Imported models: config.pbtxt for GPU (optionally TensorRT), configs/cpu.pbtxt embedded."""
    spec = ModelSpec.model_validate(MODEL_JSON)
    text = render_config(spec, kind="KIND_GPU", tensorrt="FP16")
    assert re.search(r"count: 1\s+kind: KIND_GPU", text)
    assert re.search(r'gpu_execution_accelerator: \[\s+\{\s+name: "tensorrt"', text)
    assert 'parameters { key: "precision_mode" value: "FP16" }' in text
    assert "tensorrt" not in render_config(spec, kind="KIND_GPU")
    with pytest.raises(ValueError, match="GPU instances"):
        render_config(spec, tensorrt="FP16")
    command = server_command(install, TritonSettings(model_repository=tmp_path), tmp_path)
    assert "--model-config-name=cpu" in command
