"""Acceptance of the committed model on held-out phantoms (clinical grids, served inference)."""

from __future__ import annotations

from pathlib import Path

import pytest

from demomodel import evaluate
from demomodel.data import EVALUATION_SEEDS
from segmenter.spec import ModelSpec

MODEL_DIR = Path(__file__).resolve().parents[3] / "triton-models" / "vertebrae"
SEEDS = (EVALUATION_SEEDS.start, EVALUATION_SEEDS.start + 1, EVALUATION_SEEDS.start + 2)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.acceptance
@pytest.mark.parametrize("seed", SEEDS)
def test_every_level_in_view_is_segmented_identified_and_whole(seed: int) -> None:
    spec = ModelSpec.load(MODEL_DIR / "model.json")
    predict = evaluate.onnx_predict(MODEL_DIR / spec.version / "model.onnx")
    result = evaluate.evaluate_phantom(seed, spec, predict)
    assert result.dice, "no level fully in view"
    low = {level: round(d, 3) for level, d in result.dice.items() if d < evaluate.DICE_TARGET}
    assert not low, f"Dice below {evaluate.DICE_TARGET}: {low}"
    assert set(result.identified) >= set(result.dice), "a level fully in view is misidentified"
    left_out = {level: round(c, 3) for level, c in result.lesion_coverage.items()
                if c < evaluate.LESION_COVERAGE_TARGET}
    assert not left_out, f"lesion voxels left out of their vertebra: {left_out}"
