"""Factor of risk and the CT-derived SINS components on constructed cases."""

from __future__ import annotations

from typing import Any

import pytest

from risk.density import LesionBurden
from risk.factor_of_risk import factors_of_risk
from risk.frames import frame_from
from risk.lesion_type import LesionTypeSettings, classify
from risk.loads import LevelLoad
from risk.method_settings import (
    FactorOfRiskSettings,
    RiskCategory,
    SinsSettings,
    StrengthMethod,
)
from risk.sins import score
from risk.spine import SpineAssessment
from risk.strength import VertebraStrength
from risk.values import Missing
from risk.vertebral_body import BodyHeights, HeightLoss, VertebraGeometry
from spinemets import labels

NO_LESION_MAP = Missing("no-lesion-segmentation", "no lesion segmentation for this series")


def strength(ctra: float | Missing, density_area: float | Missing = 4000.0
             ) -> VertebraStrength:
    return VertebraStrength("crawford2003", 0.008, 1.0, 0.0, 1.0, 1.0, 10, 900.0, ctra, 0.2,
                            density_area, "normal", ())


def load(activity: str, compression: float | Missing) -> LevelLoad:
    return LevelLoad("L1", activity, 400.0, 0.0, 10.0, 0.05, "test", 200.0, compression, 0.0,
                     3000.0, 0.1)


def test_phi_is_load_over_strength_with_configured_bands() -> None:
    bands = FactorOfRiskSettings(categories=(
        RiskCategory(name="low", min_phi=0.0), RiskCategory(name="moderate", min_phi=0.5),
        RiskCategory(name="high", min_phi=1.0)))
    loads = [load("a", 1000.0), load("b", 2500.0), load("c", 6000.0)]
    found = factors_of_risk(strength(5000.0), loads, bands)
    assert [f.phi for f in found] == pytest.approx([0.2, 0.5, 1.2])
    assert [f.category for f in found] == ["low", "moderate", "high"]
    density_area = bands.model_copy(update={"strength": StrengthMethod.DENSITY_AREA})
    assert factors_of_risk(strength(5000.0), loads[:1], density_area)[0].phi == \
        pytest.approx(0.25)
    with pytest.raises(ValueError, match="increasing"):
        FactorOfRiskSettings(categories=(RiskCategory(name="a", min_phi=1.0),
                                         RiskCategory(name="b", min_phi=0.5)))


def test_phi_is_missing_when_load_or_strength_is() -> None:
    no_arm = Missing("no-muscle-segmentation", "no muscle segmentation for this series")
    truncated = Missing("truncated", "vertebra cut by the border of the volume")
    (a,) = factors_of_risk(strength(5000.0), [load("a", no_arm)], FactorOfRiskSettings())
    (b,) = factors_of_risk(strength(truncated), [load("a", 900.0)], FactorOfRiskSettings())
    assert (a.phi, a.category, b.phi) == (no_arm, no_arm, truncated)


def geometry(level: str, centre: tuple[float, float, float], wedge: float = 0.0,
             coronal: float = 0.0) -> VertebraGeometry:
    heights = BodyHeights(25.0, 24.0, 25.0, 25.0, 25.0)
    return VertebraGeometry(level, False, frame_from(centre, (0.0, 0.0, 1.0)), "test", 1000,
                            40.0, 25.0, 15.0, 32.0, 44.0, heights, wedge, coronal)


def column(shift: float = 0.0, wedge: float = 0.0, coronal: float = 0.0
           ) -> dict[str, VertebraGeometry]:
    """T12, L1, L2 on a straight vertical line 35 mm apart; L1 moved ``shift`` mm forward."""
    return {"T12": geometry("T12", (0.0, 0.0, 35.0)),
            "L1": geometry("L1", (0.0, -shift, 0.0), wedge, coronal),
            "L2": geometry("L2", (0.0, 0.0, -35.0))}


def loss(maximum: float | Missing) -> HeightLoss:
    return HeightLoss(maximum, 0.0, 0.0, maximum, ("T12", "L2"), 1.0, 1.0)


def lesions(types: tuple[str, ...], body_fraction: float = 0.1, left: float = 0.0,
            right: float = 0.0) -> LesionBurden:
    """1 mL of each type in ``types``, typed by the rule of the SEG and SR."""
    volume = {k: (1.0 if k in types else 0.0) for k in ("lytic", "blastic", "mixed")}
    return LesionBurden(volume, volume, sum(volume.values()), body_fraction,
                        {k: body_fraction if k in types else 0.0 for k in volume}, types,
                        classify(volume, LesionTypeSettings()), left, right)


def scores(level: str = "L1", geometries: dict[str, VertebraGeometry] | None = None,
           height_loss: HeightLoss | None = None,
           burden: LesionBurden | Missing = NO_LESION_MAP) -> dict[str, int | Missing]:
    sins = score(level, geometries or column(), height_loss or loss(0.0), burden,
                 SinsSettings())
    return {c.name: c.score for c in sins.components}


def test_location_scores_every_level() -> None:
    expected = {**dict.fromkeys(("T1", "T2", "T11", "T12", "L1", "L5"), 3),
                **dict.fromkeys(("L2", "L3", "L4"), 2),
                **dict.fromkeys(labels.LEVELS[2:10], 1)}
    for level in labels.LEVELS:
        g = {level: geometry(level, (0.0, 0.0, 0.0))}
        assert scores(level, g)["location"] == expected[level], level


def test_bone_lesion_quality() -> None:
    assert scores(burden=lesions(("lytic",)))["bone_lesion"] == 2
    assert scores(burden=lesions(("blastic",)))["bone_lesion"] == 0
    assert scores(burden=lesions(("mixed",)))["bone_lesion"] == 1
    assert scores(burden=lesions(("lytic", "blastic")))["bone_lesion"] == 1
    assert isinstance(scores()["bone_lesion"], Missing)  # no lesion map
    assert scores(burden=lesions(()))["bone_lesion"] == Missing(
        "no-lesion", "no lesion in this vertebra")


def test_alignment_from_centroids_and_wedge() -> None:
    assert scores(geometries=column())["alignment"] == 0
    assert scores(geometries=column(shift=7.0))["alignment"] == 4
    assert scores(geometries=column(shift=3.0))["alignment"] == 0
    assert scores(geometries=column(wedge=15.0))["alignment"] == 2
    assert scores(geometries=column(coronal=-12.0))["alignment"] == 2
    alone = {"L1": column()["L1"]}
    assert isinstance(scores(geometries=alone)["alignment"], Missing)


def test_collapse_from_height_loss_and_involvement() -> None:
    assert scores(height_loss=loss(0.6))["collapse"] == 3
    assert scores(height_loss=loss(0.3))["collapse"] == 2
    assert scores(height_loss=loss(0.1), burden=lesions(("lytic",), 0.6))["collapse"] == 1
    assert scores(height_loss=loss(0.1), burden=lesions(("lytic",), 0.2))["collapse"] == 0
    # Without a lesion map, "no collapse" cannot tell 1 from 0.
    assert isinstance(scores(height_loss=loss(0.1))["collapse"], Missing)
    assert isinstance(scores(height_loss=loss(Missing("no-reference", "")))["collapse"],
                      Missing)


def test_posterolateral_involvement() -> None:
    assert scores(burden=lesions(("lytic",), left=0.3, right=0.2))["posterolateral"] == 3
    assert scores(burden=lesions(("lytic",), right=0.2))["posterolateral"] == 1
    assert scores(burden=lesions(("lytic",), left=0.01))["posterolateral"] == 0  # < 0.05 mL
    assert isinstance(scores()["posterolateral"], Missing)


def test_partial_total_names_what_is_missing_and_bounds_the_category() -> None:
    full = score("L1", column(shift=7.0), loss(0.6), lesions(("lytic",), 0.7, 0.3, 0.3),
                 SinsSettings())
    assert full.missing == ("pain",)
    assert full.partial_total == 3 + 2 + 4 + 3 + 3
    assert full.possible_total == (15, 18)
    assert full.category == "unstable"
    partial = score("T6", {"T6": geometry("T6", (0.0, 0.0, 0.0))}, loss(0.0), NO_LESION_MAP,
                    SinsSettings())
    assert set(partial.missing) == {"pain", "bone_lesion", "alignment", "collapse",
                                    "posterolateral"}
    assert partial.partial_total == 1
    assert partial.possible_total == (1, 1 + 3 + 2 + 4 + 3 + 3)
    assert partial.category == "stable to unstable"
    assert partial.applicable
    assert not score("L1", column(), loss(0.0), lesions(()), SinsSettings()).applicable


def test_sins_of_the_phantom_lesions(lesion_phantom: Any,
                                     lesion_assessment: SpineAssessment) -> None:
    truth = {les["level"]: les for les in lesion_phantom.phantom.truth["lesions"]}
    assert len(truth) == 3
    quality = {"lytic": 2, "mixed": 1, "blastic": 0}
    for v in lesion_assessment.vertebrae:
        if v.level not in truth:
            continue
        found = {c.name: c.score for c in v.sins.components}
        lesion = truth[v.level]
        assert found["bone_lesion"] == quality[lesion["type"]]
        assert found["posterolateral"] == (1 if lesion["site"] == "pedicle" else 0)
        assert "pain" in v.sins.missing
        assert v.sins.partial_total == sum(s for s in found.values()
                                           if not isinstance(s, Missing))
