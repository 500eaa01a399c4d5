"""The per-vertebra lesion type rule on constructed cases."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from risk.lesion_type import LesionTypeSettings, analyse, classify, vertebra_lesions
from spinemets import labels
from spinemets.geometry import Geometry
from spinemets.labelmaps import LabelMap

SETTINGS = LesionTypeSettings()
LYTIC, BLASTIC, MIXED = (labels.by_name(f"lesion_{k}").value for k in ("lytic", "blastic",
                                                                      "mixed"))


@pytest.mark.parametrize(("volumes", "expected"), [
    ({"lytic": 1.0}, "lytic"),
    ({"lytic": 0.85, "mixed": 0.15}, "lytic"),  # lytic >= 80 %
    ({"blastic": 0.9, "lytic": 0.1}, "blastic"),
    ({"lytic": 0.5, "blastic": 0.5}, "mixed"),  # two kinds together count as mixed
    ({"lytic": 0.7, "mixed": 0.3}, "mixed"),
    ({"mixed": 0.2}, "mixed"),
    ({"lytic": 0.0, "blastic": 0.0}, None),
    ({}, None),
])
def test_type_from_volume_shares(volumes: dict[str, float], expected: str | None) -> None:
    assert classify(volumes, SETTINGS) == expected


def test_the_dominant_share_is_a_setting() -> None:
    strict = LesionTypeSettings(dominant_share=0.9)
    assert classify({"lytic": 0.85, "blastic": 0.15}, strict) == "mixed"
    assert classify({"lytic": 0.85, "blastic": 0.15}, SETTINGS) == "lytic"


@pytest.mark.parametrize("bad", [{"dominant_share": 0.5}, {"dominant_share": 1.2},
                                 {"min_lesion_ml": -0.1}])
def test_settings_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        LesionTypeSettings.model_validate(bad)


def test_lesions_below_the_minimum_size_are_left_out() -> None:
    vertebra = np.ones((10, 10, 10), dtype=bool)
    lytic = np.zeros_like(vertebra)
    lytic[1:4, 1:4, 1:4] = True  # 27 voxels: 0.027 mL at 1 mm3
    lytic[6, 6, 6] = True  # 1 voxel
    blastic = np.zeros_like(vertebra)
    blastic[6, 7, 6] = True  # touches the single lytic voxel: one lesion of two voxels
    kept, count = vertebra_lesions(vertebra, {"lytic": lytic, "blastic": blastic}, 0.001,
                                   LesionTypeSettings(min_lesion_ml=0.01))
    assert count == 1
    assert int(kept["lytic"].sum()) == 27 and not kept["blastic"].any()
    kept, count = vertebra_lesions(vertebra, {"lytic": lytic, "blastic": blastic}, 0.001,
                                   LesionTypeSettings(min_lesion_ml=0.002))
    assert count == 2 and int(kept["blastic"].sum()) == 1


def _maps() -> tuple[LabelMap, LabelMap]:
    """L1 above L2 (z up), 2 mm voxels (0.008 mL): L1 lytic with a small blastic rim lesion,
    L2 a speck below the minimum, lesion voxels outside every vertebra."""
    shape = (20, 12, 12)
    geometry = Geometry((12, 12, 20), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    vertebrae = np.zeros(shape, dtype=np.uint8)
    vertebrae[11:19, 2:10, 2:10] = labels.vertebra("L1").value
    vertebrae[1:9, 2:10, 2:10] = labels.vertebra("L2").value
    lesions = np.zeros(shape, dtype=np.uint8)
    lesions[12:16, 3:7, 3:7] = LYTIC  # 64 voxels, 0.512 mL
    lesions[16, 3:7, 3:5] = BLASTIC  # 8 voxels touching it: the same lesion, 11 % blastic
    lesions[4, 4, 4] = MIXED  # 0.008 mL: below 0.1 mL
    lesions[0, 0:4, 0:4] = BLASTIC  # outside every vertebra
    lesions[18:20, 8:12, 8:12] = LYTIC  # half inside L1 (z 18), half outside
    names = {v: labels.by_value(v).name for v in (LYTIC, BLASTIC, MIXED)}
    return (LabelMap(vertebrae, geometry, {labels.vertebra(lv).value: f"vertebra_{lv}"
                                           for lv in ("L1", "L2")}, "vertebrae", "1"),
            LabelMap(lesions, geometry, names, "lesions", "1"))


def test_each_vertebra_gets_the_type_of_the_lesion_voxels_inside_it() -> None:
    l1, l2 = analyse(*_maps(), SETTINGS)
    assert (l1.level, l2.level) == ("L1", "L2")
    assert l1.type == "lytic" and l1.lesions == 1
    # The lytic voxels outside L1 are not counted, and the 2 x 2 x 1 part inside it is too
    # small to be a lesion of its own.
    assert l1.volume_ml == pytest.approx({"lytic": 0.512, "blastic": 0.064, "mixed": 0.0})
    assert l2.type is None and l2.lesions == 0
    assert l2.volume_ml == {"lytic": 0.0, "blastic": 0.0, "mixed": 0.0}


def test_masks_on_the_whole_grid_are_the_kept_voxels() -> None:
    vertebrae, lesions = _maps()
    l1 = analyse(vertebrae, lesions, SETTINGS)[0]
    lytic = l1.mask("lytic", vertebrae.array.shape)
    assert lytic.shape == vertebrae.array.shape
    expected = np.zeros(vertebrae.array.shape, dtype=bool)
    expected[12:16, 3:7, 3:7] = True
    np.testing.assert_array_equal(lytic, expected)
    assert (vertebrae.array[l1.mask("blastic", vertebrae.array.shape)]
            == labels.vertebra("L1").value).all()
