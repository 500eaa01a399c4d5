"""Configuration: one YAML file, environment-variable overrides, validated at start-up.

The file (default ``config/spinemets.yaml``, or the path in ``SPINEMETS_CONFIG``) has one section
per service plus ``common``. Any value can be overridden by an environment variable
``SPINEMETS__<SECTION>__<KEY>[__<KEY>...]``, e.g. ``SPINEMETS__LISTENER__PORT=11112``; the value
is parsed as YAML, so numbers, booleans and lists work. Each service validates its section with
its own pydantic model and refuses to start on a bad value, naming it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from spinemets.errors import ConfigError

ENV_PREFIX = "SPINEMETS__"
DEFAULT_PATH = Path("config/spinemets.yaml")

Model = TypeVar("Model", bound=BaseModel)


class Section(BaseModel):
    """Base of every settings model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class BaselineRule(Section):
    """Which earlier study of the patient is a follow-up's baseline (``common.baseline``): one
    rule for the registrar's history and the listener's search in the PACS
    (:func:`spinemets.baseline.choose`)."""

    #: The earliest earlier study, the most recent one, or the most recent radiotherapy-planning
    #: study (Study or Series Description matching ``planning_description``, case-insensitive;
    #: without one, ``planning_fallback``).
    policy: Literal["earliest", "most_recent", "planning"] = "most_recent"
    planning_description: Annotated[str, AfterValidator(_regex)] = (
        r"\b(RT|radiotherap\w*|planning|simulation)\b")
    planning_fallback: Literal["earliest", "most_recent", "none"] = "most_recent"


class CommonSettings(Section):
    """Settings shared by every service."""

    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    #: Key of the patient pseudonym (HMAC). Set it per site; never commit a production key.
    pseudonym_key: str = Field("change-me", min_length=8)
    #: Directory holding each service's state (spool, databases, outbox).
    data_dir: Path = Path(".work")
    #: The baseline a follow-up is compared with (the registrar and the listener).
    baseline: BaselineRule = BaselineRule()


def config_path() -> Path:
    """The configuration file in use."""
    return Path(os.environ.get("SPINEMETS_CONFIG", str(DEFAULT_PATH)))


def read_raw(path: Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the YAML file and apply environment overrides; no validation yet."""
    path = path or config_path()
    environ = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of sections")
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(keys)} does not name a setting")
            node = child
        node[keys[-1]] = yaml.safe_load(text)
    return raw


def load_section(model: type[Model], section: str, raw: Mapping[str, Any]) -> Model:
    """Validate one section; the error names every bad setting as ``section.key``."""
    try:
        return model.model_validate(raw.get(section) or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{section}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash or controls


def _ae_title(value: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError("an AE title has 1-16 printable characters, no backslash, not all spaces")
    return value.strip()


#: A DICOM Application Entity title, validated (PS3.5 AE value representation).
AETitle = Annotated[str, AfterValidator(_ae_title)]
#: A TCP port; 0 binds any free port (tests).
Port = Annotated[int, Field(ge=0, le=65535)]
