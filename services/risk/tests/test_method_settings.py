"""Method settings: the repository's configuration documents the defaults; bad values stop."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from risk.settings import Settings
from spinemets.config import load_section, read_raw
from spinemets.errors import ConfigError

CONFIG = Path(__file__).resolve().parents[3] / "config" / "spinemets.yaml"


def test_the_configuration_file_spells_out_the_default_methods() -> None:
    settings = load_section(Settings, "risk", read_raw(CONFIG, {}))
    assert settings.methods == Settings().methods


@pytest.mark.parametrize(("override", "named"), [
    ("methods: {strength: {modulus_law: linear}}", "risk.methods.strength.modulus_law"),
    ("methods: {strength: {yield_strain: 0.5}}", "risk.methods.strength.yield_strain"),
    ("methods: {loads: {activities: [{name: Run Fast}]}}", "risk.methods.loads.activities"),
    ("methods: {factor_of_risk: {categories: [{name: a, min_phi: 1}, {name: b, min_phi: 0}]}}",
     "risk.methods.factor_of_risk"),
    ("methods: {calibration: {phantoms: [{manufacturer: X, kvp: 120, "
     "slope_hu_per_mg_cm3: -1}]}}", "risk.methods.calibration.phantoms"),
])
def test_a_bad_method_setting_is_named(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_section(Settings, "risk", {"risk": yaml.safe_load(override)})
