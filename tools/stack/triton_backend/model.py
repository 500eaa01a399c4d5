"""Triton Python-based backend ``onnxruntime``: runs ``<version>/model.onnx`` with onnxruntime.

:mod:`stack.triton` installs this file as ``<backend-directory>/onnxruntime/model.py`` of the
embedded ``tritonserver``, so a ``config.pbtxt`` saying ``backend: "onnxruntime"`` is served by
this file there and by Triton's native ONNX Runtime backend in production, unchanged. It honours
the native backend's ``intra_op_thread_count`` and ``inter_op_thread_count`` parameters and its
``default_model_filename``. Runs in the ``.venv-triton`` interpreter (numpy < 2, onnxruntime).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One onnxruntime session per model instance; every request answered exactly once."""

    def initialize(self, args: dict[str, str]) -> None:
        """Parse the model config once and open the ONNX file of the loaded version."""
        config = json.loads(args["model_config"])
        self.inputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"]))
                       for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(parameters.get("inter_op_thread_count", "0"))
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        have_in = {i.name for i in self.session.get_inputs()}
        have_out = {o.name for o in self.session.get_outputs()}
        wanted_in = {name for name, _ in self.inputs}
        if wanted_in != have_in or not set(self.outputs) <= have_out:
            raise pb_utils.TritonModelException(
                f"{path} has inputs {sorted(have_in)} and outputs {sorted(have_out)}; the model "
                f"config declares inputs {sorted(wanted_in)} and outputs {self.outputs}")

    def _feeds(self, request: Any) -> dict[str, npt.NDArray[Any]]:
        feeds: dict[str, npt.NDArray[Any]] = {}
        for name, dtype in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"request lacks input {name!r}")
            feeds[name] = tensor.as_numpy().astype(dtype, copy=False)
        return feeds

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run the requests the dynamic batcher grouped as one onnxruntime call.

        A request that cannot be read gets its own error response; a failing run fails every
        request of the call.
        """
        responses: list[Any] = [None] * len(requests)
        batch: list[tuple[int, dict[str, npt.NDArray[Any]]]] = []
        for n, request in enumerate(requests):
            try:
                batch.append((n, self._feeds(request)))
            except ValueError as exc:
                responses[n] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        if batch:
            sizes = [len(next(iter(feeds.values()))) for _, feeds in batch]
            joined = {name: np.concatenate([feeds[name] for _, feeds in batch])
                      for name, _ in self.inputs}
            try:
                results = self.session.run(self.outputs, joined)
            except Exception as exc:  # onnxruntime raises several unrelated types
                error = pb_utils.TritonError(f"onnxruntime failed: {exc}")
                for n, _ in batch:
                    responses[n] = pb_utils.InferenceResponse(error=error)
                return responses
            bounds = np.cumsum([0, *sizes])
            for (n, _), lo, hi in zip(batch, bounds[:-1], bounds[1:], strict=True):
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value[lo:hi]))
                           for name, value in zip(self.outputs, results, strict=True)]
                responses[n] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
