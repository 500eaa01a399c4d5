"""Acceptance of the committed muscle and lesion models on held-out phantoms (served inference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from demomodel import role_eval
from demomodel.data import EVALUATION_SEEDS

MODELS = Path(__file__).resolve().parents[3] / "triton-models"
PHANTOMS = 3

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.acceptance]


def test_every_muscle_has_a_dice_above_the_target() -> None:
    per_label = role_eval.muscle_scores(MODELS / "muscles", PHANTOMS, EVALUATION_SEEDS.start)
    assert set(per_label) == set(role_eval.MUSCLES)
    means = {name: float(np.mean(values)) for name, values in per_label.items()}
    low = {name: round(d, 3) for name, d in means.items() if d < role_eval.MUSCLE_DICE_TARGET}
    assert not low, f"mean Dice below {role_eval.MUSCLE_DICE_TARGET}: {low}"


def test_reported_lesions_are_detected_typed_and_delineated() -> None:
    """The lesion voxels inside the vertebrae, which the SEG and SR report."""
    _, score = role_eval.lesion_scores(MODELS / "lesions", PHANTOMS, EVALUATION_SEEDS.start)
    targets = role_eval.LESION_TARGETS
    summary = score.summary()
    assert score.lesions >= PHANTOMS * 3
    assert (score.detection_rate or 0.0) >= targets["detection_rate"], summary
    assert (score.type_accuracy or 0.0) >= targets["type_accuracy"], summary
    assert (score.dice("any") or 0.0) >= targets["dice_any"], summary
    assert score.f2 >= targets["f2"], summary
