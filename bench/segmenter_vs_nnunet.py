"""The segmenter through Triton against nnU-Net's own ``nnUNetPredictor``: same model, same input.

The model is a folder that nnU-Net training leaves (``plans.json``, ``dataset.json``,
``fold_<f>/checkpoint_final.pth``); by default the project's nnU-Net fixture, a small model
trained by nnU-Net itself (:mod:`nnunet_tools.fixture`). ``import-nnunet`` turns it into a Triton
model folder, served by the embedded ``tritonserver`` (onnxruntime inside); the segmenter's
inference (:func:`segmenter.inference.segment`, with mirroring, as nnU-Net's default) calls it
over gRPC. nnU-Net's side is ``nnUNetPredictor.predict_single_npy_array`` on the same array
(:mod:`nnunet_tools.reference`), on the CPU. Both sides get the same number of threads
(``--threads``: torch's, and onnxruntime's intra-op threads in Triton).

Each side runs in its own child process, so that its peak memory (``ru_maxrss``) is its own;
Triton's is the peak resident memory (``VmHWM``) of ``tritonserver`` and of its Python backend
stub, read just before it stops. A patch is one sliding window, or one of its mirrors, through
every fold (the imported ONNX averages the folds in one graph; nnU-Net runs them one by one).
Writes JSON to ``bench/results/segmenter_vs_nnunet.json``.

``python bench/segmenter_vs_nnunet.py [--model-folder DIR] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The benchmark input: phantom seed, levels, column / row / slice spacing (mm), matrix.
PHANTOM = (9960, ("T11", "L3"), (1.5, 1.5, 2.0), 160)


def _input(path: Path) -> tuple[npt.NDArray[np.int16], tuple[float, float, float]]:
    data = np.load(path)
    spacing = tuple(float(s) for s in data["spacing_zyx"])
    return data["image"], (spacing[0], spacing[1], spacing[2])


def _peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_nnunet(folder: Path, image_path: Path, threads: int) -> dict[str, Any]:
    """nnU-Net's side, in this (child) process."""
    import torch

    from nnunet_tools.reference import nnunet_prediction, nnunet_predictor

    image, spacing = _input(image_path)
    folds = sorted(p.name.removeprefix("fold_") for p in folder.glob("fold_*"))
    predictor = nnunet_predictor(folder, folds, mirroring=True)
    patches = 0
    network = predictor.network
    forward = network.forward

    def counted(x: torch.Tensor) -> torch.Tensor:
        nonlocal patches
        patches += int(x.shape[0])
        result: torch.Tensor = forward(x)
        return result

    network.forward = counted
    started = time.perf_counter()
    labels = nnunet_prediction(predictor, image, spacing, threads=threads)
    seconds = time.perf_counter() - started
    patches //= len(folds)  # one patch: a window (or its mirror) through every fold
    return {"side": "nnUNetPredictor", "seconds": round(seconds, 2), "patches": patches,
            "patches_per_s": round(patches / seconds, 2), "peak_rss_mib": _peak_rss_mib(),
            "foreground_voxels": int((labels > 0).sum())}


def run_segmenter(grpc_url: str, model_dir: Path, image_path: Path) -> dict[str, Any]:
    """The segmenter's side, in this (child) process, against a running Triton."""
    from nnunet_tools.reference import axial_volume
    from segmenter.inference import segment
    from segmenter.spec import ModelSpec
    from segmenter.triton_client import TritonModel

    image, spacing = _input(image_path)
    spec = ModelSpec.load(model_dir / "model.json")
    model = TritonModel(grpc_url, spec, timeout=600)
    model.check()
    patches = 0

    def predict(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        nonlocal patches
        patches += len(batch)
        return model.predict(batch)

    started = time.perf_counter()
    labels = segment(axial_volume(image, spacing), spec, predict, mirror=True, workers=2,
                     postprocess_labels=False).array
    seconds = time.perf_counter() - started
    model.close()
    return {"side": "segmenter + Triton", "seconds": round(seconds, 2), "patches": patches,
            "patches_per_s": round(patches / seconds, 2), "peak_rss_mib": _peak_rss_mib(),
            "foreground_voxels": int((labels > 0).sum())}


def _peak_of(pid: int) -> float:
    """Peak resident memory (MiB) of ``pid`` and its children (Triton's backend stubs)."""
    pids = [pid] + [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _parent(int(p.name)) == pid]
    total = 0.0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return round(total, 1)


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _child(*arguments: str) -> dict[str, Any]:
    """Run this script as a child with ``arguments``; its last output line is its JSON."""
    done = subprocess.run([sys.executable, __file__, *arguments], check=True,
                          capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-folder", type=Path,
                        help="trained nnU-Net model folder (default: the project's fixture)")
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    parser.add_argument("--out", type=Path,
                        default=REPO_ROOT / "bench/results/segmenter_vs_nnunet.json")
    parser.add_argument("--side", choices=("nnunet", "segmenter"), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--grpc-url", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "nnunet":
        print(json.dumps(run_nnunet(args.model_folder, args.input, args.threads)))
        return
    if args.side == "segmenter":
        print(json.dumps(run_segmenter(args.grpc_url, args.model_dir, args.input)))
        return

    from nnunet_tools import fixture, source
    from nnunet_tools.importer import ImportOptions, import_model
    from nnunet_tools.label_mapping import LabelMapping
    from phantom.generator import generate
    from phantom.options import PhantomOptions
    from segmenter.orientation import Reorientation
    from spinemets.ports import free_port
    from stack.triton import TritonProcess, TritonSettings, write_config

    folder = args.model_folder or fixture.ensure()
    seed, levels, spacing, matrix = PHANTOM
    phantom = generate(PhantomOptions(seed=seed, levels=levels, spacing=spacing, matrix=matrix))
    reorientation = Reorientation.of(phantom.ct.geometry)
    image = np.ascontiguousarray(reorientation.to_canonical(phantom.ct.array))
    with tempfile.TemporaryDirectory(prefix="bench-nnunet-") as tmp:
        image_path = Path(tmp) / "input.npz"
        np.savez(image_path, image=image, spacing_zyx=np.asarray(reorientation.spacing_zyx))
        reference = _child("--side", "nnunet", "--model-folder", str(folder), "--input",
                           str(image_path), "--threads", str(args.threads))
        repo = Path(tmp) / "models"
        model_dir = repo / "vertebrae"
        import_model(source.load(folder), model_dir, ImportOptions(mapping=LabelMapping(),
                                                                   demo=True))
        write_config(model_dir, intra_op_threads=args.threads)
        settings = TritonSettings(model_repository=repo, http_port=free_port(),
                                  grpc_port=free_port(), metrics_port=free_port())
        with TritonProcess(settings, log_file=Path(tmp) / "triton.log") as triton:
            triton.wait_ready(300)
            ours = _child("--side", "segmenter", "--grpc-url", triton.grpc_url, "--model-dir",
                          str(model_dir), "--input", str(image_path))
            assert triton.process is not None
            ours["triton_peak_rss_mib"] = _peak_of(triton.process.pid)
    plans = json.loads((folder / "plans.json").read_text())
    report = {
        "model": {"folder": str(folder),
                  "patch_size": plans["configurations"]["3d_fullres"]["patch_size"]},
        "input": {"phantom": {"seed": seed, "levels": levels, "spacing": spacing,
                              "matrix": matrix}, "shape_zyx": list(image.shape)},
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                    "platform": platform.platform()},
        "threads": args.threads,
        "results": [reference, ours],
        "ratio_wall_segmenter_over_nnunet": round(ours["seconds"] / reference["seconds"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in report["results"]:
        print(f"{row['side']:20s} {row['seconds']:8.2f} s  {row['patches']:5d} patches  "
              f"{row['patches_per_s']:7.2f} patches/s  peak {row['peak_rss_mib']:.0f} MiB"
              + (f" (tritonserver {row['triton_peak_rss_mib']:.0f} MiB)"
                 if "triton_peak_rss_mib" in row else ""))
    print(f"wall time ratio segmenter + Triton / nnUNetPredictor: "
          f"{report['ratio_wall_segmenter_over_nnunet']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
