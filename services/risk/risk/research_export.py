"""JSON export of a :class:`~risk.spine.SpineAssessment` for research use.

The same numbers as the DICOM objects, in plain JSON: every field named with its unit, every
missing value as ``{"missing": reason, "detail": sentence}``, and the methods and settings
the numbers depend on (calibration record, modulus law, yield strain, activities, anthropometric
table), under a schema version. It holds no patient name, ID or birth date; the body mass,
stature and sex used by the load model are included because the loads depend on them. The
risk service stores it as the ``risk`` section of each outbox entry's ``measurements.json``;
:func:`write` writes it as a file of its own.

Its ``change`` section (a follow-up only; ``null`` otherwise) holds the change of every
vertebra since the prior study (:mod:`risk.change_over_time`): the prior's UIDs, each study's
calibration, the strength method and activities, per level the registrar's verdict and each
quantity's ``prior``, ``current``, ``change`` and ``percent`` (of the prior; ``null`` where not
reported), and the levels assessed in one study only; or why the change is missing.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from risk.change_over_time import SpineChange
from risk.frames import Frame
from risk.loads import DE_LEVA_1996
from risk.spine import SpineAssessment
from risk.values import Missing
from spinemets import labels

SCHEMA = "spinemets.risk.v1"


def to_json(value: Any) -> Any:
    """Plain JSON data of a result object (dataclasses, Missing, frames, enums, numbers)."""
    if isinstance(value, Missing):
        return {"missing": value.reason, "detail": value.detail}
    if isinstance(value, Frame):
        return {"origin_lps_mm": to_json(value.origin), "axis_lps": to_json(value.axes[:, 2]),
                "posterior_lps": to_json(value.axes[:, 1]), "left_lps": to_json(value.axes[:, 0])}
    if isinstance(value, labels.Label):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [to_json(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def change_section(change: SpineChange | Missing) -> dict[str, Any]:
    """The ``change`` section: the change since the prior study, or why it is missing."""
    if isinstance(change, Missing):
        return {"missing": change.reason, "detail": change.detail}
    return {
        "prior": {"study_instance_uid": change.prior_study_uid,
                  "series_instance_uid": change.prior_series_uid},
        "calibration": {"prior": change.prior_calibration,
                        "current": change.current_calibration},
        "strength_method": change.strength_method,
        "activities": [a.name for a in change.activities],
        "levels": to_json(change.levels),
        "not_compared": to_json(change.not_compared),
    }


def document(assessment: SpineAssessment,
             change: SpineChange | Missing | None = None) -> dict[str, Any]:
    """The export document of one series' assessment and, for a follow-up, its ``change``
    since the prior study."""
    body = assessment.body
    return {
        "schema": SCHEMA,
        "inputs": {"muscle_segmentation": assessment.has_muscle_segmentation,
                   "lesion_segmentation": assessment.has_lesion_segmentation},
        "calibration": to_json(assessment.calibration),
        "body": to_json(body),
        "anthropometry": {"table": "de Leva, J Biomech 1996 (adjusted Zatsiorsky-Seluyanov)",
                          "mass_fractions": to_json(DE_LEVA_1996[body.sex])},
        "methods": {**assessment.methods.model_dump(mode="json"),
                    "lesion_types": assessment.lesion_types.model_dump(mode="json")},
        "vertebrae": [to_json(v) for v in assessment.vertebrae],
        "muscles": to_json(assessment.muscles),
        "change": None if change is None else change_section(change),
    }


def write(assessment: SpineAssessment, path: Path) -> None:
    """Write the export document to ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(document(assessment), fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
