"""Factor of risk: applied load / strength, per vertebra and activity (SCIENCE.md 5).

``Phi = compression / failure load`` (Hayes; Whealan et al. 2000); Phi >= 1 means failure is
expected. No validated clinical cut-off exists for metastatic spines (Anderson et al. 2026),
so categories are only the configured bands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from risk.loads import LevelLoad
from risk.method_settings import FactorOfRiskSettings, RiskCategory, StrengthMethod
from risk.strength import VertebraStrength
from risk.values import Measured, Missing


@dataclass(frozen=True)
class FactorOfRisk:
    """Phi of one vertebra during one activity."""

    level: str
    activity: str
    strength_method: str
    load_n: Measured
    strength_n: Measured
    phi: Measured
    category: str | Missing


def category(phi: float, categories: Sequence[RiskCategory]) -> str | Missing:
    """The configured band holding ``phi`` (the last whose ``min_phi`` it reaches)."""
    found = [c.name for c in categories if phi >= c.min_phi]
    if not found:
        return Missing("no-category", "no configured category holds this value")
    return found[-1]


def factors_of_risk(strength: VertebraStrength, loads: Sequence[LevelLoad],
                    settings: FactorOfRiskSettings) -> tuple[FactorOfRisk, ...]:
    """Phi for every activity of one vertebra."""
    failure = (strength.ctra_failure_load_n if settings.strength is StrengthMethod.CTRA
               else strength.density_area_failure_load_n)
    out = []
    for load in loads:
        compression = load.compression_n
        phi: Measured
        if isinstance(compression, Missing):
            phi = compression
        elif isinstance(failure, Missing):
            phi = failure
        elif failure <= 0:
            phi = Missing("no-strength", "estimated strength is zero")
        else:
            phi = compression / failure
        out.append(FactorOfRisk(
            load.level, load.activity, settings.strength.value, compression, failure, phi,
            phi if isinstance(phi, Missing) else category(phi, settings.categories)))
    return tuple(out)
