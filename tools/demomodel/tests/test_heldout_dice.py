"""Acceptance of the committed vertebra model on held-out phantoms (clinical grids, as served)."""

from __future__ import annotations

from pathlib import Path

import pytest

from demomodel import evaluate
from demomodel.data import EVALUATION_SEEDS

MODEL_DIR = Path(__file__).resolve().parents[3] / "triton-models" / "vertebrae"
SEEDS = (EVALUATION_SEEDS.start, EVALUATION_SEEDS.start + 1, EVALUATION_SEEDS.start + 2)


@pytest.fixture(scope="module")
def serve() -> evaluate.Serve:
    """The vertebra and lesion models beside ``MODEL_DIR``, loaded once for every seed."""
    return evaluate.served_maps(MODEL_DIR.parent)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.acceptance
@pytest.mark.parametrize("seed", SEEDS)
def test_every_level_in_view_is_segmented_identified_and_whole(seed: int,
                                                               serve: evaluate.Serve) -> None:
    """The vertebra map the default routing serves (vertebra and lesion models, lesion voxels
    touching a vertebra added to it): the model alone leaves pure lytic lesions out of their
    vertebra (docs/models.md)."""
    result = evaluate.evaluate_served(seed, serve)
    assert result.dice, "no level fully in view"
    low = {level: round(d, 3) for level, d in result.dice.items() if d < evaluate.DICE_TARGET}
    assert not low, f"Dice below {evaluate.DICE_TARGET}: {low}"
    assert set(result.identified) >= set(result.dice), "a level fully in view is misidentified"
    left_out = {level: round(c, 3) for level, c in result.lesion_coverage.items()
                if c < evaluate.LESION_COVERAGE_TARGET}
    assert not left_out, f"lesion voxels left out of their vertebra: {left_out}"
