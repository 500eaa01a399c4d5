"""Spinal Instability Neoplastic Score: the components a CT can give (Fisher et al., Spine 2010).

Per vertebra (SCIENCE.md 6):

- location: from the level (junctional 3, mobile 2, semi-rigid 1);
- bone lesion quality: lytic 2, mixed 1, blastic 0, from the vertebra's lesion type by the
  rule of :mod:`risk.lesion_type` (the type the SR reports; lytic and blastic lesions together
  make a mixed vertebra);
- alignment: translation 4 when the body centroid lies off the line through its neighbours'
  centroids by more than a threshold; kyphosis / scoliosis 2 when the body's sagittal
  (anterior lower) or coronal wedge angle reaches a threshold; otherwise 0. Whether a
  deformity is *de novo* needs a prior study: the CT only shows that it is there;
- vertebral body collapse: > 50 % 3, collapse below that 2 (height loss against the
  neighbours from the configured minimum), none but > 50 % of the body involved 1, none 0;
- posterolateral involvement: lesion in the posterior elements on both sides 3, one side 1,
  none 0;
- pain is clinical and always missing.

The partial total is the sum of the components present; the possible total adds the largest
score of every missing one, and the category (0-6 stable, 7-12 indeterminate, 13-18 unstable)
is given for that range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from risk.density import LesionBurden
from risk.method_settings import SinsSettings
from risk.values import Missing
from risk.vertebral_body import HeightLoss, VertebraGeometry
from spinemets import labels

MAXIMA = {"location": 3, "pain": 3, "bone_lesion": 2, "alignment": 4, "collapse": 3,
          "posterolateral": 3}
JUNCTIONAL = ("T1", "T2", "T11", "T12", "L1", "L5")
QUALITY = {"lytic": 2, "mixed": 1, "blastic": 0}
MOBILE = ("L2", "L3", "L4")


@dataclass(frozen=True)
class SinsComponent:
    """One SINS component: its score or why it is missing, and what it was derived from."""

    name: str
    score: int | Missing
    basis: str


@dataclass(frozen=True)
class Sins:
    """CT-derived SINS of one vertebra."""

    level: str
    applicable: bool  # False: a lesion segmentation shows no lesion in this vertebra
    components: tuple[SinsComponent, ...]
    partial_total: int
    missing: tuple[str, ...]
    possible_total: tuple[int, int]
    category: str


def category_of(total: int) -> str:
    if total <= 6:
        return "stable"
    if total <= 12:
        return "indeterminate"
    return "unstable"


def location(level: str) -> SinsComponent:
    if level in JUNCTIONAL:
        return SinsComponent("location", 3, f"{level}: junctional")
    if level in MOBILE:
        return SinsComponent("location", 2, f"{level}: mobile spine")
    return SinsComponent("location", 1, f"{level}: semi-rigid")


def bone_lesion(lesions: LesionBurden | Missing) -> SinsComponent:
    if isinstance(lesions, Missing):
        return SinsComponent("bone_lesion", lesions, "lesion type")
    kind = lesions.vertebra_type
    basis = "vertebra lesion type (" + ", ".join(lesions.types_present) + ")"
    if kind is None:
        return SinsComponent("bone_lesion", Missing("no-lesion", "no lesion in this vertebra"),
                             "vertebra lesion type")
    return SinsComponent("bone_lesion", QUALITY[kind], basis.replace("type (", f"type {kind} ("))


def translation_mm(level: str, geometries: Mapping[str, VertebraGeometry]) -> float | Missing:
    """Distance (mm) of the body centroid from the line through its neighbours' centroids."""
    i = labels.LEVELS.index(level)
    if not 0 < i < len(labels.LEVELS) - 1:
        return Missing("no-neighbours", "a neighbour on each side is needed")
    above, below = (geometries.get(labels.LEVELS[j]) for j in (i - 1, i + 1))
    if above is None or below is None or above.truncated or below.truncated:
        return Missing("no-neighbours", "a neighbour in view on each side is needed")
    a, b = above.frame.origin, below.frame.origin
    c = geometries[level].frame.origin
    direction = (a - b) / np.linalg.norm(a - b)
    offset = (c - b) - ((c - b) @ direction) * direction
    return float(np.linalg.norm(offset))


def alignment(level: str, geometries: Mapping[str, VertebraGeometry],
              settings: SinsSettings) -> SinsComponent:
    g = geometries[level]
    shift = translation_mm(level, geometries)
    if isinstance(shift, Missing):
        return SinsComponent("alignment", shift, "translation against the neighbours")
    if shift > settings.translation_mm:
        return SinsComponent("alignment", 4, f"translation {shift:.1f} mm")
    sagittal, coronal = g.wedge_sagittal_deg, g.wedge_coronal_deg
    if isinstance(sagittal, Missing) or isinstance(coronal, Missing):
        missing = sagittal if isinstance(sagittal, Missing) else coronal
        assert isinstance(missing, Missing)
        return SinsComponent("alignment", missing, "wedge angles")
    if sagittal >= settings.kyphosis_wedge_deg:
        return SinsComponent("alignment", 2, f"kyphotic wedge {sagittal:.1f} deg "
                             "(de novo not assessed)")
    if abs(coronal) >= settings.scoliosis_wedge_deg:
        return SinsComponent("alignment", 2, f"coronal wedge {coronal:.1f} deg "
                             "(de novo not assessed)")
    return SinsComponent("alignment", 0, f"translation {shift:.1f} mm, wedge {sagittal:.1f} / "
                         f"{coronal:.1f} deg")


def collapse(loss: HeightLoss, lesions: LesionBurden | Missing,
             settings: SinsSettings) -> SinsComponent:
    worst = loss.maximum
    if isinstance(worst, Missing):
        return SinsComponent("collapse", worst, "height loss against the neighbours")
    if worst > 0.5:
        return SinsComponent("collapse", 3, f"height loss {worst:.0%}")
    if worst >= settings.collapse_min_loss:
        return SinsComponent("collapse", 2, f"height loss {worst:.0%}")
    if isinstance(lesions, Missing):
        return SinsComponent("collapse", lesions, f"height loss {worst:.0%}; body involvement "
                             "unknown")
    involved = lesions.body_fraction
    if isinstance(involved, Missing):
        return SinsComponent("collapse", involved, "body involvement")
    score = 1 if involved > 0.5 else 0
    return SinsComponent("collapse", score, f"height loss {worst:.0%}, "
                         f"{involved:.0%} of the body involved")


def posterolateral(lesions: LesionBurden | Missing, settings: SinsSettings) -> SinsComponent:
    if isinstance(lesions, Missing):
        return SinsComponent("posterolateral", lesions, "posterior-element lesions")
    left, right = lesions.posterior_left_ml, lesions.posterior_right_ml
    if isinstance(left, Missing) or isinstance(right, Missing):
        missing = left if isinstance(left, Missing) else right
        assert isinstance(missing, Missing)
        return SinsComponent("posterolateral", missing, "posterior elements not separated")
    sides = [side for side, ml in (("left", left), ("right", right))
             if ml >= settings.posterolateral_min_ml and ml > 0]
    score = {0: 0, 1: 1, 2: 3}[len(sides)]
    basis = (f"posterior-element lesion {', '.join(sides)}" if sides
             else "no posterior-element lesion")
    return SinsComponent("posterolateral", score, basis)


def score(level: str, geometries: Mapping[str, VertebraGeometry], loss: HeightLoss,
          lesions: LesionBurden | Missing, settings: SinsSettings) -> Sins:
    """The CT-derived SINS of one vertebra."""
    applicable = isinstance(lesions, Missing) or lesions.vertebra_type is not None
    pain = SinsComponent("pain", Missing("clinical", "pain is a clinical input"), "clinical")
    components = (location(level), pain, bone_lesion(lesions),
                  alignment(level, geometries, settings), collapse(loss, lesions, settings),
                  posterolateral(lesions, settings))
    present = [c.score for c in components if not isinstance(c.score, Missing)]
    missing = tuple(c.name for c in components if isinstance(c.score, Missing))
    partial = int(sum(present))
    possible = (partial, partial + sum(MAXIMA[name] for name in missing))
    low, high = category_of(possible[0]), category_of(possible[1])
    return Sins(level, applicable, components, partial, missing, possible,
                low if low == high else f"{low} to {high}")
