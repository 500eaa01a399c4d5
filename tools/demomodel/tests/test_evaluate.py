"""The evaluation metrics: Dice of fully visible levels, VerSe identification, lesion coverage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from demomodel import evaluate

L1, L2, L3 = 20, 21, 22
SPACING = (2.0, 1.0, 1.0)
VERTEBRA_MODEL = Path(__file__).resolve().parents[3] / "triton-models" / "vertebrae"


def spine() -> npt.NDArray[np.uint8]:
    """L1 and L2 inside the grid, L3 cut by its lower border (z = 0 is inferior)."""
    truth = np.zeros((40, 20, 20), dtype=np.uint8)
    truth[26:36, 5:15, 5:15] = L1
    truth[13:23, 5:15, 5:15] = L2
    truth[0:10, 5:15, 5:15] = L3
    return truth


def test_a_perfect_prediction_scores_one_and_identifies_everything() -> None:
    result = evaluate.score(spine(), spine(), SPACING)
    assert result.dice == {"L1": 1.0, "L2": 1.0}  # L3 touches the border: no Dice
    assert result.present == result.identified == ("L1", "L2", "L3")


def test_swapped_levels_are_neither_overlapping_nor_identified() -> None:
    prediction = spine()
    prediction[spine() == L1], prediction[spine() == L2] = L2, L1
    result = evaluate.score(spine(), prediction, SPACING)
    assert result.dice == {"L1": 0.0, "L2": 0.0}
    assert result.identified == ("L3",)


def test_a_shrunken_level_has_the_dice_of_its_overlap() -> None:
    prediction = spine()
    prediction[26:31][prediction[26:31] == L1] = 0  # half of L1 missed
    result = evaluate.score(spine(), prediction, SPACING)
    assert result.dice["L1"] == pytest.approx(2 * 500 / (1000 + 500))
    assert "L1" in result.identified  # centroid moved 5 mm, still the closest


def test_a_far_centroid_is_not_identified() -> None:
    prediction = spine()
    prediction[prediction == L1] = 0
    prediction[36:40, 5:15, 5:15] = L1  # a sliver 13 mm above the true centre: identified
    assert "L1" in evaluate.score(spine(), prediction, SPACING).identified
    prediction[prediction == L1] = 0
    prediction[38:40, 0:2, 0:2] = L1  # a corner island 20.5 mm from it: not identified
    result = evaluate.score(spine(), prediction, SPACING)
    assert "L1" not in result.identified
    assert result.dice["L1"] == 0.0


def test_summary_rates() -> None:
    perfect = evaluate.score(spine(), spine(), SPACING)
    empty = evaluate.score(spine(), np.zeros_like(spine()), SPACING)
    summary = evaluate.summarise([perfect, empty])
    assert summary["identification_rate"] == 0.5
    assert summary["identification_rate_fully_visible"] == 0.5
    assert summary["min_dice"] == 0.0
    assert summary["dice_per_level"] == {"L1": 0.5, "L2": 0.5}


def test_lesion_coverage_is_the_share_of_lesion_voxels_kept_in_their_vertebra() -> None:
    lesions = np.zeros(spine().shape, dtype=bool)
    lesions[28:32, 8:12, 8:12] = True  # 64 voxels in L1
    lesions[15:17, 8:10, 8:10] = True  # 8 voxels in L2
    prediction = spine()
    prediction[28:30, 8:12, 8:12] = 0  # half of the L1 lesion left out of L1 (lytic bone)
    prediction[15:17, 8:10, 8:10] = L1  # the L2 lesion labelled as another level
    result = evaluate.score(spine(), prediction, SPACING, lesions)
    assert result.lesion_coverage == {"L1": 0.5, "L2": 0.0}
    assert evaluate.score(spine(), spine(), SPACING, lesions).lesion_coverage == {"L1": 1.0,
                                                                                  "L2": 1.0}
    summary = evaluate.summarise([result])
    assert summary["min_lesion_coverage"] == 0.0 and summary["levels_with_lesions"] == 2
    assert evaluate.score(spine(), prediction, SPACING).lesion_coverage == {}  # no lesion map


def test_a_model_of_another_role_is_refused_not_scored_as_muscles(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = json.loads((VERTEBRA_MODEL / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**spec, "role": "spine_v2"}))
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(tmp_path)])
    assert "role 'spine_v2' has no held-out evaluation" in capsys.readouterr().err
