"""Segmentation time of the three roles with and without cropping, in one run, on one phantom.

The phantom is the whole-pipeline test's (tests/e2e.py: full spine, 1 x 1 x 2.5 mm, 320 mm field
of view) with lesions added. The committed models (triton-models/) run in this process through
onnxruntime with the segmenter's own inference (:func:`segmenter.routing.segment_roles`), first
with no crop rule, then with the crop rules of config/spinemets.yaml (``segmenter.crops``); the
two runs alternate ``--repeats`` times and the median is kept. Also written:

- how the cropped maps agree with the whole-volume ones inside the box (share of all voxels and
  of the voxels either labels), their Dice with the truth there, and what lies outside it; and
  how many voxels ``extend_reference`` added to the reference map (lesions to vertebrae);
- the margin each muscle's truth needs around the vertebrae T1-L5 on ``--margin-phantoms``
  held-out phantoms (the millimetres by which it leaves the vertebrae's box along each axis),
  which a muscle crop rule would have to cover.

``nice -n 10 .venv/bin/python bench/roles.py`` writes ``bench/results/roles.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import phantom
from demomodel.data import EVALUATION_SEEDS
from demomodel.evaluate import dice, onnx_predict
from segmenter.crop import CropRule, array_spacing, box_around, group_box, patch_extent
from segmenter.inference import segment
from segmenter.routing import segment_roles
from segmenter.settings import Settings
from segmenter.sliding import Predict
from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.config import load_section, read_raw
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

REPO_ROOT = Path(__file__).resolve().parents[1]
ROLES = ("vertebrae", "muscles", "lesions")
VERTEBRA_VALUES = [label.value for label in labels.in_group(labels.Group.VERTEBRA)]


def pipeline_phantom(seed: int, lesions: int) -> phantom.Phantom:
    """The whole-pipeline test's phantom (tests/e2e.py) with ``lesions`` lesions."""
    return phantom.generate(phantom.PhantomOptions(seed=seed, full_spine=True,
                                                   spacing=(1.0, 1.0, 2.5), matrix=320,
                                                   lesions=lesions))


class Runner:
    """Runs one role's committed model on a volume and keeps the seconds of every run."""

    def __init__(self, specs: Mapping[str, ModelSpec], predicts: Mapping[str, Predict]) -> None:
        self.specs, self.predicts = specs, predicts
        self.seconds: dict[str, float] = {}

    def __call__(self, role: str, volume: Volume) -> LabelMap:
        started = time.perf_counter()
        result = segment(volume, self.specs[role], self.predicts[role])
        self.seconds[role] = time.perf_counter() - started
        return result


def timed(volume: Volume, specs: Mapping[str, ModelSpec], predicts: Mapping[str, Predict],
          crops: Mapping[str, CropRule]) -> tuple[dict[str, float], list[LabelMap]]:
    """Seconds per role and in all, and the maps, of one run of the three roles."""
    runner = Runner(specs, predicts)
    started = time.perf_counter()
    maps = segment_roles(volume, list(ROLES), specs, crops, runner)
    return {**runner.seconds, "total": time.perf_counter() - started}, maps


def agreement(cropped: LabelMap, whole: LabelMap, reference: LabelMap, truth: LabelMap,
              rule: CropRule, spec: ModelSpec) -> dict[str, Any]:
    """How a cropped map agrees with the whole-volume map inside its box; what lies outside."""
    box = group_box(reference, rule.group, rule.margin_mm,
                    patch_extent(reference.geometry, spec))
    assert box is not None
    outside = np.ones(whole.array.shape, dtype=bool)
    outside[box] = False
    inside_c, inside_w = cropped.array[box], whole.array[box]
    labelled = (inside_c > 0) | (inside_w > 0)
    return {
        "box_shape": [s.stop - s.start for s in box], "volume_shape": list(whole.array.shape),
        "box_share_of_volume": round(inside_c.size / whole.array.size, 4),
        "agreement_in_box": round(float(np.mean(inside_c == inside_w)), 6),
        "agreement_on_labelled_voxels_in_box": round(float(np.mean(
            inside_c[labelled] == inside_w[labelled])), 4) if labelled.any() else None,
        "labelled_voxels_in_box": {"cropped": int((inside_c > 0).sum()),
                                   "whole": int((inside_w > 0).sum())},
        "labelled_voxels_outside_box": {"cropped": int((cropped.array[outside] > 0).sum()),
                                        "whole": int((whole.array[outside] > 0).sum()),
                                        "truth": int((truth.array[outside] > 0).sum())},
        "labelled_dice_with_truth_in_box": {
            "cropped": round(dice(inside_c > 0, truth.array[box] > 0), 4),
            "whole": round(dice(inside_w > 0, truth.array[box] > 0), 4)},
    }


def muscle_margins(seeds: Sequence[int]) -> dict[str, Any]:
    """Per axis, the largest distance (mm) a muscle's truth leaves the vertebrae's box."""
    needed: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in
                                      (label.name for label in
                                       labels.in_group(labels.Group.MUSCLE))}
    for seed in seeds:
        generated = phantom.generate(phantom.PhantomOptions(seed=seed))
        spacing = array_spacing(generated.ct.geometry)
        box = box_around(np.isin(generated.vertebrae.array, VERTEBRA_VALUES), spacing, 0.0,
                         (0.0, 0.0, 0.0))
        assert box is not None
        for name, margins in needed.items():
            mask = generated.muscles.mask(name)
            if not mask.any():
                continue
            for axis in range(3):
                occupied = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
                beyond = max(box[axis].start - int(occupied[0]),
                             int(occupied[-1]) + 1 - box[axis].stop, 0)
                margins[axis] = max(margins[axis], beyond * spacing[axis])
    return {"axes": ["slice", "row", "column"], "phantoms": list(seeds),
            "per_muscle_mm": {k: [round(v, 1) for v in m] for k, m in needed.items()},
            "max_mm": [round(max(m[a] for m in needed.values()), 1) for a in range(3)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "triton-models")
    parser.add_argument("--seed", type=int, default=9001)
    parser.add_argument("--lesions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--margin-phantoms", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/roles.json")
    args = parser.parse_args()

    crops = load_section(Settings, "segmenter", read_raw()).crops
    specs = {role: ModelSpec.load(args.models / role / "model.json") for role in ROLES}
    predicts = {role: onnx_predict(args.models / role / specs[role].version / "model.onnx",
                                   args.threads) for role in ROLES}
    generated = pipeline_phantom(args.seed, args.lesions)
    volume = generated.ct
    runs: dict[str, list[dict[str, float]]] = {"whole": [], "cropped": []}
    maps: dict[str, list[LabelMap]] = {}
    for _ in range(args.repeats):
        for name, rules in (("whole", {}), ("cropped", crops)):
            seconds, maps[name] = timed(volume, specs, predicts, rules)
            runs[name].append(seconds)
            print(name, {k: round(v, 1) for k, v in seconds.items()}, flush=True)
    median = {name: {key: round(statistics.median(r[key] for r in rs), 2) for key in rs[0]}
              for name, rs in runs.items()}
    whole = dict(zip(ROLES, maps["whole"], strict=True))
    cropped = dict(zip(ROLES, maps["cropped"], strict=True))
    result = {
        "phantom": {"seed": args.seed, "full_spine": True, "spacing_mm": [1.0, 1.0, 2.5],
                    "matrix": 320, "lesions": args.lesions,
                    "shape": list(volume.array.shape)},
        "crops": {role: rule.model_dump(mode="json") for role, rule in crops.items()},
        "seconds_median": median,
        "seconds_runs": runs,
        "ratio_to_vertebrae_only": {
            name: round(m["total"] / m["vertebrae"], 2) for name, m in median.items()},
        "crop_agreement": {
            role: agreement(cropped[role], whole[role], whole[rule.around],
                            getattr(generated, role), rule, specs[role])
            for role, rule in crops.items()},
        "reference_voxels_added": {
            rule.around: int((cropped[rule.around].array != whole[rule.around].array).sum())
            for rule in crops.values() if rule.extend_reference},
        "muscle_margin_needed": muscle_margins(
            range(EVALUATION_SEEDS.start, EVALUATION_SEEDS.start + args.margin_phantoms)),
        "predict": "onnxruntime CPU in-process, segmenter.inference.segment",
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("seconds_median", "ratio_to_vertebrae_only",
                                              "crop_agreement", "muscle_margin_needed")},
                     indent=2))


if __name__ == "__main__":
    main()
