"""Output channels of a foreign model -> names of the label catalogue, by name, never by value.

A channel's nnU-Net label name is looked up, in order, in the mapping file (foreign name ->
catalogue name, or ``null`` for a structure the project does not use), among the catalogue's
names (``vertebra_L1``) and among its display names, case-insensitively (``L1 vertebra``).
Channels found nowhere are an error, or background when the mapping (or ``--unmapped``) says
so. Label values are never used: they differ between datasets, models and even cases.

Mapping files are JSON (``mappings/*.json`` ship with the package and are named by their stem)::

    {"description": "...", "orientation": "RAS", "unmapped": "background",
     "labels": {"vertebrae_L1": "vertebra_L1", "liver": null}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from segmenter.spec import BACKGROUND
from spinemets import labels
from spinemets.errors import ModelError

BUILTIN = Path(__file__).resolve().parent / "mappings"

Unmapped = Literal["error", "background"]


class LabelMapping(BaseModel):
    """A mapping file: foreign label names to catalogue names (``None``: background)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    #: Array orientation the source's models were trained in (``import-nnunet``'s default).
    orientation: Literal["LPS", "RAS"] | None = None
    unmapped: Unmapped = "error"
    labels: dict[str, str | None] = {}

    @field_validator("labels")
    @classmethod
    def _catalogue(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        labels.check_names(target for target in value.values() if target is not None)
        return value

    @classmethod
    def load(cls, name_or_path: str) -> LabelMapping:
        """A built-in mapping by name (``totalsegmentator``) or a JSON file."""
        path = BUILTIN / f"{name_or_path}.json"
        if not path.is_file():
            path = Path(name_or_path)
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            known = ", ".join(sorted(p.stem for p in BUILTIN.glob("*.json")))
            raise ModelError(f"label mapping {name_or_path!r} is neither a file nor one of "
                             f"{known}", reason="bad-label-mapping") from None
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ModelError(f"label mapping {path} is invalid: {exc}",
                             reason="bad-label-mapping") from None


def _catalogue_name(foreign: str) -> str | None:
    """The catalogue entry called ``foreign`` or displayed so (case-insensitive), if any."""
    wanted = foreign.strip().casefold()
    for label in labels.CATALOGUE:
        if wanted in (label.name.casefold(), label.display.casefold()):
            return label.name
    return None


def channel_labels(channels: Mapping[int, str], mapping: LabelMapping,
                   unmapped: Unmapped | None = None) -> dict[str, str]:
    """``model.json`` labels: channel -> catalogue name (``background`` for dropped ones).

    ``channels`` maps each output channel to its nnU-Net label name; channel 0 must be
    ``background``. :class:`ModelError` lists every unmapped name when they are an error, and
    names a catalogue label claimed by two channels.
    """
    if channels.get(0) != BACKGROUND:
        raise ModelError(f"channel 0 is {channels.get(0)!r}, not 'background'",
                         reason="bad-labels")
    policy = unmapped or mapping.unmapped
    result = {"0": BACKGROUND}
    missing = []
    for channel, foreign in sorted(channels.items()):
        if channel == 0:
            continue
        if foreign in mapping.labels:
            target = mapping.labels[foreign]
        else:
            target = _catalogue_name(foreign)
            if target is None:
                missing.append(foreign)
        result[str(channel)] = BACKGROUND if target is None else target
    if missing and policy == "error":
        raise ModelError(f"labels {missing} match no catalogue name; map them in a label "
                         "mapping file (null drops a structure) or pass --unmapped background",
                         reason="unmapped-labels")
    used = [name for key, name in result.items() if key != "0" and name != BACKGROUND]
    twice = sorted({name for name in used if used.count(name) > 1})
    if twice:
        raise ModelError(f"catalogue labels {twice} are claimed by more than one channel",
                         reason="bad-labels")
    if not used:
        raise ModelError("no channel maps to a catalogue label", reason="unmapped-labels")
    return result
