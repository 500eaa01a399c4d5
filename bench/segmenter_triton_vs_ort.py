"""Patches per second: the embedded Triton server vs onnxruntime in-process, same model, same input.

Runs the model of ``--model-dir`` (default ``triton-models/vertebrae``; its ``model.json``,
``config.pbtxt`` and ``1/model.onnx``). Without an exported model, ``--stand-in`` exports the demo
network's architecture (tools/demomodel/network.py) with random weights, which costs the same.

Direct: one ``InferenceSession`` in this process, ``session.run`` on batches of B patches.
Triton: the segmenter's own client (:class:`segmenter.triton_client.TritonModel`), K threads
each sending batches of B, so the dynamic batcher can group them. Both use onnxruntime's CPU
provider with the same intra-op thread count. Writes JSON to ``bench/results/``.

``python bench/segmenter_triton_vs_ort.py --stand-in --patches 16``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from demomodel.data import CHANNELS
from demomodel.network import NetworkConfig, build
from segmenter.spec import ModelSpec
from segmenter.triton_client import TritonModel
from spinemets.ports import free_port
from stack.triton import TritonProcess, TritonSettings, write_config

REPO_ROOT = Path(__file__).resolve().parents[1]


def stand_in(folder: Path) -> None:
    """Export the demo architecture with random weights into ``folder`` (model.json, ONNX)."""
    config = NetworkConfig((160, 64, 64), (8, 16, 32, 64, 128, 128), len(CHANNELS))
    torch.manual_seed(0)
    model = build(config).eval()
    (folder / "1").mkdir(parents=True)
    torch.onnx.export(model, (torch.zeros(1, 1, *config.patch_size_zyx),),
                      str(folder / "1" / "model.onnx"), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    description = {
        "name": folder.name, "version": "1", "role": folder.name,
        "title": "Stand-in with random weights (benchmark only)", "demo": True,
        "architecture": config.describe(), "orientation": "LPS",
        "spacing_zyx": [2.0, 2.0, 2.0], "patch_size_zyx": list(config.patch_size_zyx),
        "normalization": {"scheme": "CTNormalization", "mean": 0.0, "std": 1.0,
                          "lower": -1000.0, "upper": 1500.0},
        "labels": {str(c): name for c, name in enumerate(CHANNELS)},
        "input": {"name": "input", "datatype": "FP32"},
        "output": {"name": "logits", "datatype": "FP32"},
    }
    (folder / "model.json").write_text(json.dumps(description, indent=2))


def transport_only(folder: Path) -> None:
    """Replace the network by one 1x1x1 convolution with the same input and output shapes.

    What is left of a Triton call is transport: the logits travel through the Python backend's
    shared memory and gRPC, which the in-process session skips.
    """
    spec = ModelSpec.load(folder / "model.json")
    shape: list[str | int] = ["N", 1, *spec.patch_size_zyx]
    weights = np.ones((spec.num_channels, 1, 1, 1, 1), np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "W"], ["logits"])], "transport",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["N", spec.num_channels, *spec.patch_size_zyx])],
        [numpy_helper.from_array(weights, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "1" / "model.onnx")


def patches(spec: ModelSpec, count: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(count, 1, *spec.patch_size_zyx)).astype(np.float32)


def direct(model_dir: Path, data: npt.NDArray[np.float32], batch: int,
           threads: int) -> dict[str, Any]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    session.run(["logits"], {"input": data[:batch]})  # warm-up
    started = time.perf_counter()
    for first in range(0, len(data), batch):
        session.run(["logits"], {"input": data[first:first + batch]})
    seconds = time.perf_counter() - started
    return {"path": "onnxruntime", "batch": batch, "concurrency": 1, "patches": len(data),
            "seconds": round(seconds, 3), "patches_per_s": round(len(data) / seconds, 3)}


def via_triton(model: TritonModel, data: npt.NDArray[np.float32], batch: int,
               concurrency: int) -> dict[str, Any]:
    model.predict(data[:batch])  # warm-up
    batches = [data[first:first + batch] for first in range(0, len(data), batch)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(model.predict, batches))
    seconds = time.perf_counter() - started
    return {"path": "triton", "batch": batch, "concurrency": concurrency, "patches": len(data),
            "seconds": round(seconds, 3), "patches_per_s": round(len(data) / seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "triton-models/vertebrae")
    parser.add_argument("--stand-in", action="store_true",
                        help="benchmark the demo architecture with random weights")
    parser.add_argument("--transport-only", action="store_true",
                        help="same shapes, trivial network: measures transport alone")
    parser.add_argument("--patches", type=int, default=16, help="patches per measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    parser.add_argument("--out", type=Path,
                        default=REPO_ROOT / "bench/results/segmenter_triton_vs_ort.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp:
        repo = Path(tmp) / "models"
        folder = repo / "vertebrae"
        if args.stand_in:
            stand_in(folder)
        else:
            shutil.copytree(args.model_dir, folder)
        if args.transport_only:
            transport_only(folder)
        write_config(folder, max_batch_size=max(args.batches), intra_op_threads=args.threads)
        spec = ModelSpec.load(folder / "model.json")
        data = patches(spec, args.patches)
        results = [direct(folder, data, b, args.threads) for b in args.batches]
        settings = TritonSettings(model_repository=repo, http_port=free_port(),
                                  grpc_port=free_port(), metrics_port=free_port())
        with TritonProcess(settings, log_file=Path(tmp) / "triton.log") as triton:
            triton.wait_ready(300)
            model = TritonModel(triton.grpc_url, spec, timeout=600)
            model.check()
            results += [via_triton(model, data, b, k)
                        for b in args.batches for k in args.concurrency]
            model.close()
    report = {
        "model": {"name": spec.name, "title": spec.title, "patch_size_zyx": spec.patch_size_zyx,
                  "channels": spec.num_channels, "stand_in": args.stand_in,
                  "transport_only": args.transport_only},
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                    "platform": platform.platform(), "onnxruntime": ort.__version__},
        "intra_op_threads": args.threads,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in results:
        print(f"{row['path']:12s} batch {row['batch']:2d} concurrency {row['concurrency']}: "
              f"{row['patches_per_s']:8.2f} patches/s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
