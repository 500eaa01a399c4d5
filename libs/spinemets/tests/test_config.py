"""Configuration: YAML file, environment overrides, validation naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from spinemets.config import CommonSettings, Section, load_section, read_raw
from spinemets.errors import ConfigError


class Example(Section):
    port: int = Field(1, ge=1, le=65535)
    names: tuple[str, ...] = ()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_environment_overrides_file_values(tmp_path: Path) -> None:
    path = write(tmp_path, "example:\n  port: 1000\n")
    raw = read_raw(path, {"SPINEMETS__EXAMPLE__PORT": "2000",
                          "SPINEMETS__EXAMPLE__NAMES": "[a, b]", "OTHER": "x"})
    settings = load_section(Example, "example", raw)
    assert settings.port == 2000
    assert settings.names == ("a", "b")


def test_bad_value_is_named(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, "example:\n  port: 70000\n"), {})
    with pytest.raises(ConfigError, match=r"example\.port"):
        load_section(Example, "example", raw)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, "example:\n  prot: 1\n"), {})
    with pytest.raises(ConfigError, match=r"example\.prot"):
        load_section(Example, "example", raw)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_raw(tmp_path / "absent.yaml", {})
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_raw(write(tmp_path, "a: [\n"), {})


def test_project_config_file_is_valid() -> None:
    raw = read_raw(Path(__file__).parents[3] / "config/spinemets.yaml", {})
    common = load_section(CommonSettings, "common", raw)
    assert common.log_level == "INFO"
