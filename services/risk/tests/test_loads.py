"""The static sagittal load model: an analytic case, the SCIENCE.md anchors, its inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from risk.loads import (
    DE_LEVA_1996,
    BodyParameters,
    G,
    Mass,
    above,
    body_parameters,
    equilibrium,
    level_loads,
    level_positions,
    moment_arm_for,
    upper_body,
)
from risk.method_settings import Activity, LoadSettings, Sex
from risk.values import Missing

ADULT = BodyParameters(70.0, 1.75, Sex.MALE, "test", "test", "test")
BODY_WEIGHT = 70.0 * G
#: Extensor (erector spinae) moment arm at L4 of an adult, m.
L4_MOMENT_ARM = 0.055
#: Wilke et al. 1999 (L4-L5, one 70 kg man), MPa; adult L4-L5 disc area range, mm2. The
#: nucleus pressure is about 1.5 times the mean axial stress (Nachemson), so the compressive
#: force is pressure * area / 1.5.
WILKE = {"standing": 0.5, "standing flexed": 1.1, "lifting 20 kg, round back": 2.3}
DISC_AREA_MM2 = (1500.0, 2000.0)


def wilke_range(pressure_mpa: float) -> tuple[float, float]:
    return (pressure_mpa * DISC_AREA_MM2[0] / 1.5, pressure_mpa * DISC_AREA_MM2[1] / 1.5)


def l4(activity: Activity) -> float:
    settings = LoadSettings(activities=(activity,))
    (load,) = level_loads("L4", ADULT, L4_MOMENT_ARM, "test", 2000.0, settings)
    assert isinstance(load.compression_n, float)
    return load.compression_n


def test_a_single_mass_in_flexion_has_the_textbook_answer() -> None:
    """10 kg, 0.3 m up the trunk, 30 degrees of flexion, 5 cm extensor moment arm."""
    mass = Mass("block", 10.0, 0.4, 0.0)
    weight, hand, moment, force, compression, shear = equilibrium(
        [mass], 0.1, 0.0, Activity(name="bend", trunk_flexion_deg=30), 0.05)
    assert (weight, hand) == (10 * G, 0.0)
    assert moment == pytest.approx(10 * G * 0.3 * 0.5)
    assert force == pytest.approx(moment / 0.05)
    assert compression == pytest.approx(10 * G * math.cos(math.radians(30)) + moment / 0.05)
    assert shear == pytest.approx(10 * G * 0.5)
    # A hand load below the shoulders adds its weight and its moment; above, nothing.
    hold = Activity(name="hold", hand_load_kg=5.0, hands_anterior_m=0.3)
    with_hands = equilibrium([mass], 0.1, 0.5, hold, 0.05)
    assert with_hands[1] == pytest.approx(5 * G)
    assert with_hands[2] == pytest.approx(5 * G * 0.3)
    assert equilibrium([mass], 0.6, 0.5, hold, 0.05)[1] == 0.0


@pytest.mark.parametrize(("task", "activity"), [
    ("standing", Activity(name="standing")),
    ("standing flexed", Activity(name="flexed", trunk_flexion_deg=30)),
    ("lifting 20 kg, round back", Activity(name="lift", trunk_flexion_deg=45,
                                           hand_load_kg=20)),
])
def test_l4_compression_of_a_70_kg_adult_lands_in_wilke_s_range(task: str,
                                                                 activity: Activity) -> None:
    low, high = wilke_range(WILKE[task])
    assert low <= l4(activity) <= high


def test_l4_load_at_20_degrees_flexion_is_near_185_percent_body_weight() -> None:
    """Front Bioeng Biotechnol 2021: L4-L5 joint reaction about 185 % body weight."""
    ratio = l4(Activity(name="flexed", trunk_flexion_deg=20)) / BODY_WEIGHT
    assert ratio == pytest.approx(1.85, rel=0.2)


def test_loads_grow_caudally_and_with_the_task() -> None:
    settings = LoadSettings()
    levels = list(level_positions(ADULT.height_m, settings))[::-1]  # T1 .. L5
    compressions = {level: [load.compression_n for load in level_loads(
        level, ADULT, 0.05, "test", 2000.0, settings)] for level in levels}
    for task in range(len(settings.activities)):
        column = [compressions[level][task] for level in levels]
        assert column == sorted(column), settings.activities[task].name
    for level in levels[3:]:  # below the shoulders every task adds load
        assert compressions[level] == sorted(compressions[level]), level


def test_weight_above_follows_de_leva() -> None:
    settings = LoadSettings()
    masses = upper_body(ADULT, settings)
    fractions = DE_LEVA_1996[Sex.MALE]
    arms = 2 * (fractions["upper_arm"] + fractions["forearm"] + fractions["hand"])
    above_l5 = sum(m.kg for m in masses) / ADULT.mass_kg
    assert above_l5 == pytest.approx(fractions["head"] + arms + fractions["upper_trunk"]
                                     + fractions["middle_trunk"]
                                     + settings.lower_trunk_above_l5 * fractions["lower_trunk"])
    u = level_positions(ADULT.height_m, settings)
    at_t12 = sum(m.kg for m in above(masses, "T12", u["T12"])) / ADULT.mass_kg
    assert fractions["head"] + arms + fractions["upper_trunk"] < at_t12 < above_l5


def test_body_parameters_come_from_the_header_or_the_configuration(
        make_headers: Callable[..., Any]) -> None:
    settings = LoadSettings(default_body_mass_kg=65.0, default_body_height_m=1.6)
    found = body_parameters(make_headers(PatientWeight=92.5, PatientSize=1.83, PatientSex="F"),
                            settings)
    assert (found.mass_kg, found.height_m, found.sex) == (92.5, 1.83, Sex.FEMALE)
    assert found.mass_source == "DICOM PatientWeight"
    absent = body_parameters(make_headers(PatientSize=183), settings)  # cm, not m: implausible
    assert (absent.mass_kg, absent.height_m, absent.sex) == (65.0, 1.6, Sex.MALE)
    assert (absent.mass_source, absent.height_source) == ("configuration", "configuration")
    heavier = level_loads("L2", found, 0.05, "test", 2000.0, LoadSettings())
    lighter = level_loads("L2", absent, 0.05, "test", 2000.0, LoadSettings())
    assert all(h.body_weight_above_n > k.body_weight_above_n
               for h, k in zip(heavier, lighter, strict=True))


def test_without_a_moment_arm_compression_is_missing_unless_a_fallback_is_configured() -> None:
    why = Missing("no-muscle-segmentation", "no muscle segmentation for this series")
    arm, source, csa = moment_arm_for("L3", {}, LoadSettings(), why)
    assert arm == why and csa == why
    loads = level_loads("L3", ADULT, arm, source, csa, LoadSettings())
    assert all(load.compression_n == why and load.body_weight_above_n > 0 for load in loads)
    fallback = LoadSettings(fallback_moment_arm_m=(0.045, 0.055))
    arm, source, _ = moment_arm_for("T8", {}, fallback, why)
    assert arm == 0.045 and source.startswith("population default")
    arm, source, csa = moment_arm_for("L3", {"L3": (61.0, 3000.0)}, LoadSettings(), why)
    assert (arm, csa) == (0.061, 3000.0) and source.startswith("CT")


def test_extensor_capacity_flags_an_activity_beyond_the_muscles() -> None:
    lift = LoadSettings(activities=(Activity(name="lift", trunk_flexion_deg=60,
                                             hand_load_kg=20),))
    (weak,) = level_loads("L4", ADULT, 0.05, "test", 500.0, lift)  # 5 cm2 of extensors
    (strong,) = level_loads("L4", ADULT, 0.05, "test", 5000.0, lift)
    assert weak.muscle_capacity_n == pytest.approx(500.0)  # 100 N/cm2 * 5 cm2
    assert weak.capacity_used > 1 > strong.capacity_used
