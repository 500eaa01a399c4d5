"""Applied compressive load per level and activity: a static sagittal equilibrium model.

SCIENCE.md 4 [D]. For level i and an activity (trunk flexion theta, load L held in both
hands):

- The body above the level's mid-height: head and neck, both arms (when the shoulders are
  above the level) and the trunk slices above, with the segment mass fractions of de Leva
  (J Biomech 1996, adjusted Zatsiorsky-Seluyanov parameters), by sex. De Leva's trunk
  segments are spread over the levels [D]: upper trunk (suprasternale-xiphion) T1-T9, middle
  trunk (xiphion-omphalion) T10-L3, lower trunk (omphalion-hip centres) L4-L5 for its
  configured share above the bottom of L5; within a segment equally per level.
- Upright geometry scaled by stature [D]: the spine from the top of T1 to the bottom of L5
  is a configured fraction of the height, its levels spaced like typical adult body and disc
  heights; head and shoulders at configured distances from T1; trunk, head and arm masses a
  configured distance in front of the vertebral body line.
- Rigid trunk flexion by theta about the level: each mass m_j at distance u_j along the trunk
  above it and a_j in front has the lever arm ``(u_j - u_i) sin(theta) + a_j cos(theta)``; the
  hands hang from the shoulders, ``hands_anterior_m`` in front of them.
- The extensors (erector spinae and multifidus) balance the flexion moment M along the spine
  with the moment arm r measured on the patient's CT: ``F_m = max(M, 0) / r``; compression
  ``C = (W_above + W_hand) cos(theta) + F_m``; shear ``(W_above + W_hand) sin(theta)``.
- Their force capacity is ``sigma_max * CSA`` (Burkhart et al. 2018: 100 N/cm2).

Body mass, stature and sex come from the header (PatientWeight, PatientSize, PatientSex) or
the configuration, and the result says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from risk.method_settings import Activity, LoadSettings, Sex
from risk.values import Measured, Missing
from spinemets import labels

G = 9.81  # m/s2

#: De Leva 1996, Table 4: segment mass as a fraction of body mass.
DE_LEVA_1996: dict[Sex, dict[str, float]] = {
    Sex.MALE: {"head": 0.0694, "upper_trunk": 0.1596, "middle_trunk": 0.1633,
               "lower_trunk": 0.1117, "upper_arm": 0.0271, "forearm": 0.0162,
               "hand": 0.0061},
    Sex.FEMALE: {"head": 0.0668, "upper_trunk": 0.1545, "middle_trunk": 0.1465,
                 "lower_trunk": 0.1247, "upper_arm": 0.0255, "forearm": 0.0138,
                 "hand": 0.0056},
}
#: Levels over which each trunk segment is spread [D].
TRUNK_SPANS = {"upper_trunk": labels.LEVELS[0:9], "middle_trunk": labels.LEVELS[9:15],
               "lower_trunk": labels.LEVELS[15:17]}
#: Typical adult vertebral body heights and discs below them, mm (T1..L5) [D]: only their
#: proportions are used, scaled to the patient's stature.
TYPICAL_BODY_MM = (15.0, 16.0, 16.5, 17.0, 17.5, 18.0, 19.0, 19.5, 20.5, 21.5, 22.0, 23.0,
                   24.0, 25.0, 26.0, 26.5, 27.0)
TYPICAL_DISC_BELOW_MM = (4.0, 4.0, 4.2, 4.4, 4.5, 4.8, 5.1, 5.4, 5.7, 6.0, 7.0, 8.0, 8.5, 9.0,
                         10.0, 10.5, 10.5)


@dataclass(frozen=True)
class BodyParameters:
    """Body mass, stature and sex of the patient, and where each came from."""

    mass_kg: float
    height_m: float
    sex: Sex
    mass_source: str
    height_source: str
    sex_source: str


@dataclass(frozen=True)
class Mass:
    """A mass element of the upright body: position along the trunk above the bottom of L5
    (m) and in front of the vertebral body line (m)."""

    name: str
    kg: float
    u_m: float
    anterior_m: float


@dataclass(frozen=True)
class LevelLoad:
    """Load on one vertebra during one activity."""

    level: str
    activity: str
    body_weight_above_n: float
    hand_load_n: float
    flexion_moment_nm: float
    moment_arm_m: Measured
    moment_arm_source: str
    muscle_force_n: Measured
    compression_n: Measured
    shear_n: float
    muscle_capacity_n: Measured
    #: Required extensor force over capacity (> 1: the activity is beyond the extensors).
    capacity_used: Measured


def _number(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def body_parameters(sources: Sequence[Dataset], settings: LoadSettings) -> BodyParameters:
    """Weight, stature and sex from the header (plausible values only) or the configuration."""
    ds = sources[0] if sources else Dataset()
    mass, height = _number(ds, "PatientWeight"), _number(ds, "PatientSize")
    mass_ok = mass is not None and 20.0 <= mass <= 300.0
    height_ok = height is not None and 1.0 <= height <= 2.5
    sex_text = str(ds.get("PatientSex") or "").upper()
    sex = {"M": Sex.MALE, "F": Sex.FEMALE}.get(sex_text)
    return BodyParameters(
        mass if mass_ok and mass is not None else settings.default_body_mass_kg,
        height if height_ok and height is not None else settings.default_body_height_m,
        sex if sex is not None else settings.default_sex,
        "DICOM PatientWeight" if mass_ok else "configuration",
        "DICOM PatientSize" if height_ok else "configuration",
        "DICOM PatientSex" if sex is not None else "configuration")


def level_positions(height_m: float, settings: LoadSettings) -> dict[str, float]:
    """Upright position of each level's centre along the trunk above the bottom of L5 (m)."""
    total = sum(TYPICAL_BODY_MM) + sum(TYPICAL_DISC_BELOW_MM[:-1])
    scale = settings.spine_length_fraction * height_m / (total / 1000.0)
    positions: dict[str, float] = {}
    u = 0.0
    for i in range(len(labels.LEVELS) - 1, -1, -1):
        body = TYPICAL_BODY_MM[i] / 1000.0 * scale
        positions[labels.LEVELS[i]] = u + body / 2
        u += body + (TYPICAL_DISC_BELOW_MM[i - 1] / 1000.0 * scale if i > 0 else 0.0)
    return positions


def spine_top(height_m: float, settings: LoadSettings) -> float:
    """Position of the top of T1 above the bottom of L5 (m)."""
    return settings.spine_length_fraction * height_m


def upper_body(body: BodyParameters, settings: LoadSettings) -> list[Mass]:
    """Mass elements of head, arms and trunk slices (the legs and pelvis are below L5)."""
    fractions = DE_LEVA_1996[body.sex]
    positions = level_positions(body.height_m, settings)
    top = spine_top(body.height_m, settings)
    masses = [
        Mass("head", fractions["head"] * body.mass_kg,
             top + settings.head_above_t1_fraction * body.height_m, settings.head_anterior_m),
        Mass("arms", 2 * (fractions["upper_arm"] + fractions["forearm"] + fractions["hand"])
             * body.mass_kg, top - settings.shoulder_below_t1_fraction * body.height_m,
             settings.arms_anterior_m),
    ]
    for segment, span in TRUNK_SPANS.items():
        share = fractions[segment] * body.mass_kg / len(span)
        if segment == "lower_trunk":
            share *= settings.lower_trunk_above_l5
        masses.extend(Mass(level, share, positions[level], settings.trunk_anterior_m)
                      for level in span)
    return masses


def above(masses: Sequence[Mass], level: str, u_level: float) -> list[Mass]:
    """Mass elements above a level's mid-height: the level's own slice counts half."""
    out = []
    for m in masses:
        if m.name == level:
            out.append(Mass(m.name, m.kg / 2, m.u_m, m.anterior_m))
        elif m.u_m > u_level:
            out.append(m)
    return out


def equilibrium(masses: Sequence[Mass], u_level: float, shoulder_u: float, activity: Activity,
                moment_arm_m: float | None) -> tuple[float, float, float, float | None,
                                                     float | None, float]:
    """Weight above, hand load, flexion moment, muscle force, compression and shear (SI).

    ``masses`` are those above the level; muscle force and compression are None without a
    moment arm. The hand load acts only below the shoulders.
    """
    theta = math.radians(activity.trunk_flexion_deg)
    sin, cos = math.sin(theta), math.cos(theta)
    weight = sum(m.kg for m in masses) * G
    moment = sum(m.kg * G * ((m.u_m - u_level) * sin + m.anterior_m * cos) for m in masses)
    hand = activity.hand_load_kg * G if shoulder_u > u_level else 0.0
    if hand:
        arms = next((m for m in masses if m.name == "arms"), None)
        anterior = arms.anterior_m if arms is not None else 0.0
        moment += hand * ((shoulder_u - u_level) * sin + anterior * cos
                          + activity.hands_anterior_m)
    shear = (weight + hand) * sin
    if moment_arm_m is None:
        return weight, hand, moment, None, None, shear
    force = max(moment, 0.0) / moment_arm_m
    return weight, hand, moment, force, (weight + hand) * cos + force, shear


def level_loads(level: str, body: BodyParameters, moment_arm: Measured, arm_source: str,
                extensor_csa_mm2: Measured, settings: LoadSettings) -> tuple[LevelLoad, ...]:
    """The load on one level for every configured activity."""
    masses = upper_body(body, settings)
    u_level = level_positions(body.height_m, settings)[level]
    shoulder = spine_top(body.height_m, settings) - (settings.shoulder_below_t1_fraction
                                                      * body.height_m)
    capacity: Measured = extensor_csa_mm2
    if not isinstance(extensor_csa_mm2, Missing):
        capacity = settings.muscle_max_stress_n_cm2 * extensor_csa_mm2 / 100.0
    out = []
    for activity in settings.activities:
        arm = None if isinstance(moment_arm, Missing) else moment_arm
        weight, hand, moment, force, compression, shear = equilibrium(
            above(masses, level, u_level), u_level, shoulder, activity, arm)
        used: Measured = capacity
        if not isinstance(capacity, Missing) and force is not None:
            used = force / capacity
        elif force is None and isinstance(moment_arm, Missing):
            used = moment_arm
        out.append(LevelLoad(
            level, activity.name, weight, hand, moment, moment_arm, arm_source,
            force if force is not None else moment_arm,
            compression if compression is not None else moment_arm, shear, capacity, used))
    return tuple(out)


def moment_arm_for(level: str, measured: Mapping[str, tuple[float, float]],
                   settings: LoadSettings, why_missing: Missing
                   ) -> tuple[Measured, str, Measured]:
    """Moment arm (m), its source and the extensor CSA (mm2) of a level.

    ``measured`` maps levels to (moment arm mm, CSA mm2) measured on the CT; without them the
    configured population fallback, if any, else missing.
    """
    if level in measured:
        arm_mm, csa = measured[level]
        return arm_mm / 1000.0, "CT: deep back muscles in the mid-body plane", csa
    fallback = settings.fallback_moment_arm_m
    if fallback is not None:
        thoracic = labels.LEVELS.index(level) < labels.LEVELS.index("L1")
        return (fallback[0] if thoracic else fallback[1],
                f"population default (configuration): {why_missing.detail}", why_missing)
    return why_missing, why_missing.detail, why_missing
