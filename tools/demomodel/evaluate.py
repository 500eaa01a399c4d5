"""Evaluation of the demo model on held-out phantoms, through the segmenter's own inference.

Phantom seed ranges (:mod:`demomodel.data`): training 1_000_000.., validation 2_000_000..,
held-out evaluation 3_000_000.. — disjoint from each other and from the small seeds the test
suites use. Evaluation phantoms are generated on clinical grids drawn by the generator (in-plane
pixels 0.6-1.0 mm, slices 1-3 mm, a random cranio-caudal field of view) and segmented by
:func:`segmenter.inference.segment` with an onnxruntime ``predict``, so the figures include
resampling, sliding window and post-processing exactly as served.

Metrics (:file:`shared/SCIENCE.md` section 8): Dice per level on the CT grid, reported for the
levels fully inside the field of view; identification as in VerSe: a level is identified when
the predicted label of that level has its centroid closest to the true centroid among all
predicted vertebrae, and less than 20 mm from it. Lesion coverage: per level holding lesion
voxels, the share of them the vertebra model labels as that level (a metastasis is part of its
vertebra, and the risk service types a vertebra's lesions from the lesion voxels inside its
label). Each figure is given for the model's own map, or with ``--served`` for the map the
default routing serves: the vertebra and lesion models run as the segmenter runs them
(:func:`served_maps`), the lesion voxels touching a vertebra added to it
(``extend_reference``), which is what the SEG carries when a rule asks for both roles.

``python -m demomodel.evaluate --model triton-models/vertebrae --phantoms 3 [--served]``; for
the muscle and lesion models (``--model triton-models/muscles``) the metrics of
:mod:`demomodel.role_eval`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
from scipy import ndimage

import phantom
from demomodel import data
from demomodel.data import EVALUATION_SEEDS
from demomodel.roles import ROLES
from segmenter.inference import segment
from segmenter.routing import segment_roles
from segmenter.settings import Settings
from segmenter.sliding import Predict, sliding_window
from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

log = logging.getLogger(__name__)

#: VerSe identification: the matched predicted centroid must lie closer than this (mm).
IDENTIFICATION_DISTANCE_MM = 20.0
#: Acceptance threshold on the Dice of every fully visible level.
DICE_TARGET = 0.90
#: Acceptance threshold on the share of a level's lesion voxels labelled as that level.
LESION_COVERAGE_TARGET = 0.90

LEVEL_VALUES = {labels.vertebra(lv).value: lv for lv in labels.LEVELS}


@dataclass(frozen=True)
class CaseScore:
    """Scores of one segmented volume."""

    dice: dict[str, float]  # level -> Dice, levels fully inside the volume
    present: tuple[str, ...]  # levels with at least one voxel inside the volume
    identified: tuple[str, ...]
    #: level -> share of its true lesion voxels labelled as that level (levels with lesions)
    lesion_coverage: dict[str, float] = field(default_factory=dict)


def dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    """Dice coefficient of two masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


Box = tuple[slice, ...]


def _boxes(array: npt.NDArray[np.integer]) -> dict[str, Box]:
    """Bounding box of every vertebra level present in a catalogue-valued map."""
    found = ndimage.find_objects(array, max_label=max(LEVEL_VALUES))
    return {level: box for value, level in LEVEL_VALUES.items()
            if (box := found[value - 1]) is not None}


def _union(a: Box, b: Box | None) -> Box:
    if b is None:
        return a
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b,
                                                                                   strict=True))


def _centroid(array: npt.NDArray[np.integer], box: Box, value: int,
              spacing: Sequence[float]) -> npt.NDArray[np.float64]:
    """Centroid (mm along the array axes) of the voxels of ``value`` inside ``box``."""
    voxels = np.argwhere(array[box] == value) + np.array([s.start for s in box])
    return np.asarray(voxels.mean(axis=0) * np.asarray(spacing), dtype=np.float64)


def score(truth: npt.NDArray[np.integer], prediction: npt.NDArray[np.integer],
          spacing: Sequence[float], lesions: npt.NDArray[np.bool_] | None = None) -> CaseScore:
    """Dice per fully visible level, VerSe identification and lesion coverage, on one grid.

    ``truth`` and ``prediction`` hold catalogue values on the same grid of ``spacing``
    (mm per array axis); ``lesions`` marks the true lesion voxels. A level is fully visible
    when its true mask does not touch the border of the grid.
    """
    true_boxes, predicted_boxes = _boxes(truth), _boxes(prediction)
    predicted = {level: _centroid(prediction, box, labels.vertebra(level).value, spacing)
                 for level, box in predicted_boxes.items()}
    dices: dict[str, float] = {}
    identified: list[str] = []
    for level, box in true_boxes.items():
        value = labels.vertebra(level).value
        if all(s.start > 0 and s.stop < n for s, n in zip(box, truth.shape, strict=True)):
            union = _union(box, predicted_boxes.get(level))
            dices[level] = dice(truth[union] == value, prediction[union] == value)
        if predicted:
            centre = _centroid(truth, box, value, spacing)
            distances = {p: float(np.linalg.norm(c - centre)) for p, c in predicted.items()}
            closest = min(distances, key=lambda p: distances[p])
            if closest == level and distances[level] < IDENTIFICATION_DISTANCE_MM:
                identified.append(level)
    return CaseScore(dices, tuple(lv for lv in labels.LEVELS if lv in true_boxes),
                     tuple(lv for lv in labels.LEVELS if lv in identified),
                     {} if lesions is None else lesion_coverage(truth, prediction, lesions))


def lesion_coverage(truth: npt.NDArray[np.integer], prediction: npt.NDArray[np.integer],
                    lesions: npt.NDArray[np.bool_]) -> dict[str, float]:
    """Per level holding true lesion voxels: the share of them ``prediction`` labels as it."""
    in_lesion, predicted = truth[lesions], prediction[lesions]
    return {level: float(np.mean(predicted[in_lesion == value] == value))
            for value, level in LEVEL_VALUES.items() if np.any(in_lesion == value)}


def torch_predict(model: torch.nn.Module) -> Predict:
    """``predict`` running a torch network in float32 without gradients."""
    def predict(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            logits: npt.NDArray[np.float32] = model(torch.from_numpy(batch)).float().numpy()
        return logits
    return predict


def onnx_predict(path: Path, threads: int = 2) -> Predict:
    """``predict`` running an ONNX model with onnxruntime on the CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    def predict(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(session.run(["logits"], {"input": batch})[0], dtype=np.float32)
    return predict


def validate_on_model_grid(model: torch.nn.Module, normalization: data.Normalization,
                           patch: tuple[int, int, int], cases: Sequence[data.Case],
                           spacing_zyx: Sequence[float]) -> dict[str, float]:
    """Mean Dice per level over ``cases`` already on the model grid (argmax, no post-processing)."""
    lut = np.asarray([0, *(labels.by_name(n).value for n in data.CHANNELS[1:])], dtype=np.uint8)
    per_level: dict[str, list[float]] = {}
    predict = torch_predict(model)
    for case in cases:
        probabilities = sliding_window(normalization.apply(case.image), patch,
                                       len(data.CHANNELS), predict)
        prediction = lut[np.argmax(probabilities, axis=0)]
        result = score(lut[case.target], prediction, spacing_zyx)
        for level, value in result.dice.items():
            per_level.setdefault(level, []).append(value)
    return {level: float(np.mean(v)) for level, v in per_level.items()}


def evaluation_options(seed: int) -> phantom.PhantomOptions:
    """Held-out phantom ``seed`` on a clinical grid drawn by the generator (pixels 0.6-1 mm,
    slices 1-3 mm, 320-480 mm field of view, a random run of at least six units), 0-2 lesions."""
    return phantom.PhantomOptions(seed=seed, lesions=seed % 3)


#: ``serve(volume)``: its vertebra and lesion maps, as :func:`served_maps` makes them.
Serve = Callable[[Volume], tuple[LabelMap, LabelMap]]


def served_maps(repository: Path) -> Serve:
    """The vertebra and lesion models of ``repository`` (onnxruntime, loaded once), run as the
    segmenter runs them: the lesion model inside its default crop, the lesion voxels touching
    a vertebra added to the vertebra map."""
    roles = ["vertebrae", "lesions"]
    specs = {role: ModelSpec.load(repository / role / "model.json") for role in roles}
    predicts = {role: onnx_predict(repository / role / specs[role].version / "model.onnx")
                for role in roles}
    crops = Settings().crops

    def serve(volume: Volume) -> tuple[LabelMap, LabelMap]:
        vertebrae, lesions = segment_roles(
            volume, roles, specs, crops,
            lambda role, part: segment(part, specs[role], predicts[role]))
        return vertebrae, lesions

    return serve


def evaluate_phantom(seed: int, spec: ModelSpec, predict: Predict) -> CaseScore:
    """Segment held-out phantom ``seed`` with :func:`segmenter.inference.segment` and score it."""
    generated = phantom.generate(evaluation_options(seed))
    return _score_phantom(generated, segment(generated.ct, spec, predict).array)


def evaluate_served(seed: int, serve: Serve) -> CaseScore:
    """Score the vertebra map of held-out phantom ``seed`` as served with the lesion model
    (``serve`` from :func:`served_maps`)."""
    generated = phantom.generate(evaluation_options(seed))
    return _score_phantom(generated, serve(generated.ct)[0].array)


def _score_phantom(generated: phantom.Phantom, prediction: npt.NDArray[np.integer]) -> CaseScore:
    spacing = generated.ct.geometry.spacing
    return score(generated.vertebrae.array, prediction, (spacing[2], spacing[1], spacing[0]),
                 generated.lesions.array > 0)


def summarise(scores: Sequence[CaseScore]) -> dict[str, object]:
    """Mean Dice per level, the worst Dice, identification rates (all levels present, and
    levels fully in view) and the worst lesion coverage over all cases."""
    per_level: dict[str, list[float]] = {}
    for case in scores:
        for level, value in case.dice.items():
            per_level.setdefault(level, []).append(value)
    present = sum(len(c.present) for c in scores)
    identified = sum(len(c.identified) for c in scores)
    visible = sum(len(c.dice) for c in scores)
    visible_identified = sum(len(set(c.dice) & set(c.identified)) for c in scores)
    coverage = [v for c in scores for v in c.lesion_coverage.values()]
    return {
        "dice_per_level": {lv: round(float(np.mean(per_level[lv])), 4)
                           for lv in labels.LEVELS if lv in per_level},
        "min_dice": round(min((v for c in scores for v in c.dice.values()), default=0.0), 4),
        "identification_rate": round(identified / present, 4) if present else None,
        "levels_present": present,
        "levels_identified": identified,
        "identification_rate_fully_visible": round(visible_identified / visible, 4)
        if visible else None,
        "min_lesion_coverage": round(min(coverage), 4) if coverage else None,
        "levels_with_lesions": len(coverage),
    }


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description="Evaluate a demo model on held-out phantoms.")
    parser.add_argument("--model", type=Path, default=Path("triton-models/vertebrae"))
    parser.add_argument("--phantoms", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=EVALUATION_SEEDS.start)
    parser.add_argument("--served", action="store_true",
                        help="vertebrae: score the map served with the lesion model beside it "
                        "(the default routing) instead of the model's own")
    args = parser.parse_args(argv)
    if args.first_seed not in EVALUATION_SEEDS:
        parser.error(f"evaluation seeds must lie in {EVALUATION_SEEDS}")
    spec = ModelSpec.load(args.model / "model.json")
    if spec.role != "vertebrae" and spec.role not in ROLES:
        parser.error(f"{args.model}: role {spec.role!r} has no held-out evaluation "
                     f"({', '.join(('vertebrae', *ROLES))})")
    if spec.role != "vertebrae":
        from demomodel import role_eval  # imports this module
        print(json.dumps(role_eval.run(args.model, args.phantoms, args.first_seed), indent=2))
        return
    if args.served:
        serve = served_maps(args.model.parent)
    else:
        predict = onnx_predict(args.model / spec.version / "model.onnx")
    scores = []
    for seed in range(args.first_seed, args.first_seed + args.phantoms):
        case = (evaluate_served(seed, serve) if args.served
                else evaluate_phantom(seed, spec, predict))
        missed = sorted(set(case.present) - set(case.identified))
        log.info("seed %d: Dice %s; missed %s; lesion coverage %s", seed,
                 {k: round(v, 3) for k, v in case.dice.items()}, missed,
                 {k: round(v, 3) for k, v in case.lesion_coverage.items()})
        scores.append(case)
    print(json.dumps(summarise(scores), indent=2))


if __name__ == "__main__":
    main()
