"""Evaluation of the muscle and lesion demo models on held-out phantoms, as served.

Held-out phantoms (seeds in :data:`demomodel.data.EVALUATION_SEEDS`) lie on clinical grids drawn
by the generator and are segmented by :func:`segmenter.inference.segment` with an onnxruntime
``predict``, as in :mod:`demomodel.evaluate`. Metrics (``shared/SCIENCE.md`` section 8):

- muscles: Dice of each of the six muscles on the CT grid (a muscle absent from the truth but
  predicted scores 0);
- lesions: the vertebra model and the lesion model of the same model repository run as the
  segmenter runs them (:func:`segmenter.routing.segment_roles` with the default crop rule: the
  lesion model inside the box of the predicted vertebrae grown by 10 mm, lesion voxels touching
  a vertebra added to it). Dice of each type
  pooled over all phantoms (voxels of all cases together, since a phantom rarely holds every
  type), Dice of lesion versus no lesion, and per lesion (connected component of the true
  lesion voxels): detected when a predicted lesion voxel of any type overlaps it, typed when the
  most frequent predicted type inside it is its own type; predicted components overlapping no
  true lesion are false positives. F2 (recall-weighted, as in Edelmers et al. 2024) from
  detection recall and component precision. Each figure is given for the segmenter's lesion
  map ("raw") and for the lesion voxels inside the true vertebrae T1-L5 ("reported").
- the issue's lesion acceptance (:class:`LesionAcceptance`), on what the SEG and SR report:
  lesions of at least 5 mm (equivalent-sphere diameter) of the truth, and of the prediction
  inside the predicted vertebrae, give a lesion-wise F2; the type of every involved vertebra
  (:func:`risk.lesion_type.analyse` on the true maps gives a type) is compared with the type
  the same rule gives on the predicted maps.

``python -m demomodel.evaluate --model triton-models/lesions --phantoms 3`` runs this module.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

import phantom
from demomodel import data
from demomodel.evaluate import dice, onnx_predict, served_maps, torch_predict
from risk.lesion_type import LesionTypeSettings, analyse
from segmenter.inference import segment
from segmenter.sliding import sliding_window
from segmenter.spec import ModelSpec
from spinemets import labels
from spinemets.labelmaps import LabelMap

log = logging.getLogger(__name__)

LESION_TYPES = tuple(label.name for label in labels.in_group(labels.Group.LESION))
MUSCLES = tuple(label.name for label in labels.in_group(labels.Group.MUSCLE))
#: Acceptance of issue 3: mean Dice of every muscle over the held-out phantoms (SCIENCE.md 8
#: quotes Dice > 0.8 for published muscle models; the issue asks for 0.85 per structure).
MUSCLE_DICE_TARGET = 0.85
#: Acceptance of the lesion model, after the seed results of SCIENCE.md 8 (Edelmers et al.
#: 2024: lytic lesion Dice 0.71, F2 0.68): Dice of lesion versus no lesion, F2, share of lesions
#: detected and share of those given their own type.
LESION_TARGETS = {"dice_any": 0.70, "f2": 0.68, "detection_rate": 0.80, "type_accuracy": 0.80}
#: Acceptance of issue 3: lesion-wise F2 over lesions of at least MIN_LESION_DIAMETER_MM, and
#: the share of involved vertebrae given their true lesion type.
LESION_ACCEPTANCE = {"f2": 0.70, "vertebra_type_accuracy": 0.85}
MIN_LESION_DIAMETER_MM = 5.0


def validate_on_model_grid(model: torch.nn.Module, normalization: data.Normalization,
                           patch: tuple[int, int, int], cases: Sequence[data.Case],
                           channels: Sequence[str]) -> dict[str, float]:
    """Mean Dice per channel over ``cases`` on the model grid (argmax, no post-processing);
    a channel counts in a case when the truth or the prediction holds it."""
    per_label: dict[str, list[float]] = {}
    predict = torch_predict(model)
    for case in cases:
        probabilities = sliding_window(normalization.apply(case.image), patch, len(channels),
                                       predict)
        prediction = np.argmax(probabilities, axis=0)
        for channel, name in enumerate(channels[1:], start=1):
            truth, predicted = case.target == channel, prediction == channel
            if truth.any() or predicted.any():
                per_label.setdefault(name, []).append(dice(truth, predicted))
    return {name: float(np.mean(v)) for name, v in per_label.items()}


def evaluation_options(role: str, seed: int) -> phantom.PhantomOptions:
    """Held-out phantom ``seed`` of ``role`` on a clinical grid drawn by the generator; the
    lesion model's have 3-5 lesions, pedicle lesions in every other one."""
    if role == "lesions":
        return phantom.PhantomOptions(seed=seed, lesions=3 + seed % 3,
                                      posterior_lesions=seed % 2 == 0)
    return phantom.PhantomOptions(seed=seed)


def muscle_dice(truth: npt.NDArray[np.integer], prediction: npt.NDArray[np.integer]
                ) -> dict[str, float]:
    """Dice of every muscle present in the truth or the prediction (catalogue values)."""
    scores = {}
    for name in MUSCLES:
        value = labels.by_name(name).value
        t, p = truth == value, prediction == value
        if t.any() or p.any():
            scores[name] = dice(t, p)
    return scores


def _f2(recall: float | None, precision: float | None) -> float:
    return 5 * precision * recall / (4 * precision + recall) if recall and precision else 0.0


@dataclass
class LesionScore:
    """Voxel counts per type and lesion-wise counts, additive over phantoms."""

    overlap: dict[str, int] = field(default_factory=dict)  # type -> |truth & prediction|
    total: dict[str, int] = field(default_factory=dict)  # type -> |truth| + |prediction|
    lesions: int = 0
    detected: int = 0
    typed: int = 0
    predicted_components: int = 0
    false_positives: int = 0

    def add(self, other: LesionScore) -> None:
        for name in (*LESION_TYPES, "any"):
            self.overlap[name] = self.overlap.get(name, 0) + other.overlap.get(name, 0)
            self.total[name] = self.total.get(name, 0) + other.total.get(name, 0)
        self.lesions += other.lesions
        self.detected += other.detected
        self.typed += other.typed
        self.predicted_components += other.predicted_components
        self.false_positives += other.false_positives

    def dice(self, name: str) -> float | None:
        """Pooled Dice of a lesion type (or ``"any"``); None when neither side has one."""
        total = self.total.get(name, 0)
        return 2 * self.overlap[name] / total if total else None

    @property
    def detection_rate(self) -> float | None:
        return self.detected / self.lesions if self.lesions else None

    @property
    def type_accuracy(self) -> float | None:
        return self.typed / self.detected if self.detected else None

    @property
    def precision(self) -> float | None:
        """Share of predicted components that touch a true lesion."""
        if not self.predicted_components:
            return None
        return 1 - self.false_positives / self.predicted_components

    @property
    def f2(self) -> float:
        return _f2(self.detection_rate, self.precision)

    def summary(self) -> dict[str, object]:
        """Pooled Dice per type and of any lesion, detection, typing, false positives, F2."""
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)
        return {
            "dice": {name: rounded(self.dice(name)) for name in (*LESION_TYPES, "any")
                     if self.dice(name) is not None},
            "lesions": self.lesions, "detected": self.detected,
            "detection_rate": rounded(self.detection_rate),
            "type_accuracy": rounded(self.type_accuracy),
            "predicted_components": self.predicted_components,
            "false_positives": self.false_positives,
            "precision": rounded(self.precision), "f2": round(self.f2, 4),
        }


def lesion_score(truth: npt.NDArray[np.integer], prediction: npt.NDArray[np.integer]
                 ) -> LesionScore:
    """Voxel and lesion-wise counts of one phantom (catalogue values on one grid)."""
    score = LesionScore()
    values = {name: labels.by_name(name).value for name in LESION_TYPES}
    for name, value in values.items():
        t, p = truth == value, prediction == value
        score.overlap[name] = int(np.logical_and(t, p).sum())
        score.total[name] = int(t.sum()) + int(p.sum())
    t_any, p_any = truth > 0, prediction > 0
    score.overlap["any"] = int(np.logical_and(t_any, p_any).sum())
    score.total["any"] = int(t_any.sum()) + int(p_any.sum())
    true_components, score.lesions = ndimage.label(t_any)
    order = list(values.values())
    for box, number in zip(ndimage.find_objects(true_components), range(1, score.lesions + 1),
                           strict=True):
        inside = true_components[box] == number
        found = prediction[box][inside]
        found = found[found > 0]
        if found.size:
            score.detected += 1
            kinds, counts = np.unique(found, return_counts=True)
            true_kind = np.bincount(truth[box][inside], minlength=max(order) + 1)[order]
            if int(kinds[np.argmax(counts)]) == order[int(np.argmax(true_kind))]:
                score.typed += 1
    predicted_components, score.predicted_components = ndimage.label(p_any)
    touching = np.unique(predicted_components[t_any & p_any])
    score.false_positives = score.predicted_components - int((touching > 0).sum())
    return score


def muscle_scores(model: Path, phantoms: int, first_seed: int) -> dict[str, list[float]]:
    """Dice of each muscle on every held-out phantom, served by the model folder ``model``."""
    spec = ModelSpec.load(model / "model.json")
    predict = onnx_predict(model / spec.version / "model.onnx")
    per_label: dict[str, list[float]] = {}
    for seed in range(first_seed, first_seed + phantoms):
        generated = phantom.generate(evaluation_options("muscles", seed))
        scores = muscle_dice(generated.muscles.array, segment(generated.ct, spec, predict).array)
        log.info("seed %d: Dice %s", seed, {k: round(v, 3) for k, v in scores.items()})
        for name, value in scores.items():
            per_label.setdefault(name, []).append(value)
    return per_label


@dataclass
class LesionAcceptance:
    """Lesion-wise counts over lesions of at least 5 mm, and per-vertebra types; additive."""

    lesions: int = 0  # true lesions of at least the minimum diameter
    detected: int = 0  # ... overlapped by a predicted lesion of at least the minimum diameter
    predicted: int = 0  # predicted lesions of at least the minimum diameter (as reported)
    false_positives: int = 0  # ... overlapping no true lesion
    #: (true type, predicted type or "none") -> involved vertebrae
    types: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, other: LesionAcceptance) -> None:
        self.lesions += other.lesions
        self.detected += other.detected
        self.predicted += other.predicted
        self.false_positives += other.false_positives
        for key, count in other.types.items():
            self.types[key] = self.types.get(key, 0) + count

    @property
    def recall(self) -> float | None:
        return self.detected / self.lesions if self.lesions else None

    @property
    def precision(self) -> float | None:
        return 1 - self.false_positives / self.predicted if self.predicted else None

    @property
    def f2(self) -> float:
        return _f2(self.recall, self.precision)

    @property
    def vertebrae(self) -> int:
        return sum(self.types.values())

    @property
    def vertebra_type_accuracy(self) -> float | None:
        right = sum(n for (true, predicted), n in self.types.items() if true == predicted)
        return right / self.vertebrae if self.vertebrae else None

    def summary(self) -> dict[str, object]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)
        return {
            "min_diameter_mm": MIN_LESION_DIAMETER_MM, "lesions": self.lesions,
            "detected": self.detected, "recall": rounded(self.recall),
            "predicted": self.predicted, "false_positives": self.false_positives,
            "precision": rounded(self.precision), "f2": round(self.f2, 4),
            "involved_vertebrae": self.vertebrae,
            "vertebra_type_accuracy": rounded(self.vertebra_type_accuracy),
            "vertebra_types": {f"{true}->{predicted}": n
                               for (true, predicted), n in sorted(self.types.items())},
        }


def _lesions_of_size(mask: npt.NDArray[np.bool_], voxel_mm3: float, diameter_mm: float
                     ) -> tuple[npt.NDArray[np.int32], list[int]]:
    """Connected components of ``mask`` and the numbers of those whose equivalent-sphere
    diameter is at least ``diameter_mm``."""
    components, count = ndimage.label(mask)
    sizes = np.bincount(components.ravel(), minlength=count + 1) * voxel_mm3
    diameters = np.cbrt(6 * sizes / np.pi)
    return components, [n for n in range(1, count + 1) if diameters[n] >= diameter_mm]


def lesion_acceptance(true_vertebrae: LabelMap, true_lesions: LabelMap, vertebrae: LabelMap,
                      lesions: LabelMap, settings: LesionTypeSettings | None = None
                      ) -> LesionAcceptance:
    """Lesion-wise and per-vertebra counts of one phantom (all maps on one grid).

    The predicted lesions are the lesion voxels inside the predicted vertebrae T1-L5, as the
    SEG and SR report them; a true lesion is detected when a predicted lesion of the minimum
    size overlaps it. Vertebra types follow :func:`risk.lesion_type.analyse` on both sides.
    """
    settings = settings or LesionTypeSettings()
    voxel = true_lesions.geometry.voxel_volume_mm3
    levels = [label.value for label in labels.in_group(labels.Group.VERTEBRA)]
    reported = (lesions.array > 0) & np.isin(vertebrae.array, levels)
    score = LesionAcceptance()
    truth, true_kept = _lesions_of_size(true_lesions.array > 0, voxel, MIN_LESION_DIAMETER_MM)
    found, found_kept = _lesions_of_size(reported, voxel, MIN_LESION_DIAMETER_MM)
    found_any = np.isin(found, found_kept)
    score.lesions, score.predicted = len(true_kept), len(found_kept)
    score.detected = len(set(np.unique(truth[found_any])) & set(true_kept))
    touching = set(np.unique(found[truth > 0]))
    score.false_positives = sum(1 for n in found_kept if n not in touching)
    predicted_types = {v.level: v.type for v in analyse(vertebrae, lesions, settings)}
    for vertebra in analyse(true_vertebrae, true_lesions, settings):
        if vertebra.type is not None:
            key = (vertebra.type, predicted_types.get(vertebra.level) or "none")
            score.types[key] = score.types.get(key, 0) + 1
    return score


@dataclass
class LesionEvaluation:
    """The lesion figures over held-out phantoms: voxel and lesion counts of the segmenter's
    lesion map, of its voxels inside the true vertebrae, and the issue's acceptance."""

    raw: LesionScore = field(default_factory=LesionScore)
    reported: LesionScore = field(default_factory=LesionScore)
    acceptance: LesionAcceptance = field(default_factory=LesionAcceptance)

    def summary(self) -> dict[str, object]:
        return {"raw": self.raw.summary(), "reported": self.reported.summary(),
                "acceptance": self.acceptance.summary()}


def lesion_scores(model: Path, phantoms: int, first_seed: int) -> LesionEvaluation:
    """Lesion figures over the held-out phantoms, for the lesion model folder ``model`` and the
    vertebra model beside it (``model/../vertebrae``)."""
    evaluation = LesionEvaluation()
    levels = [labels.vertebra(level).value for level in labels.LEVELS]
    serve = served_maps(model.parent)
    for seed in range(first_seed, first_seed + phantoms):
        generated = phantom.generate(evaluation_options("lesions", seed))
        vertebrae, lesions = serve(generated.ct)
        prediction = lesions.array
        inside = np.isin(generated.vertebrae.array, levels)
        raw = lesion_score(generated.lesions.array, prediction)
        reported = lesion_score(generated.lesions.array, np.where(inside, prediction, 0))
        acceptance = lesion_acceptance(generated.vertebrae, generated.lesions, vertebrae,
                                       lesions)
        log.info("seed %d: %s", seed, acceptance.summary())
        evaluation.raw.add(raw)
        evaluation.reported.add(reported)
        evaluation.acceptance.add(acceptance)
    return evaluation


def run(model: Path, phantoms: int, first_seed: int) -> dict[str, object]:
    """The summary of the muscle or lesion model in folder ``model`` on held-out phantoms."""
    if ModelSpec.load(model / "model.json").role == "lesions":
        return lesion_scores(model, phantoms, first_seed).summary()
    per_label = muscle_scores(model, phantoms, first_seed)
    return {"dice_per_label": {name: round(float(np.mean(per_label[name])), 4)
                               for name in MUSCLES if name in per_label},
            "min_dice": round(min((v for vs in per_label.values() for v in vs), default=0.0), 4)}
