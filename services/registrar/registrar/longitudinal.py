"""Comparison of a study with its prior: per-vertebra registration, then lesion change.

The entry point the Pair RPC calls once it holds both studies' CT and label maps; pure
computation on arrays and geometries (no gRPC, no DICOM).
"""

from __future__ import annotations

from dataclasses import dataclass

from registrar.change import VertebraChange, lesion_changes
from registrar.registration import Registration, register_vertebrae
from registrar.settings import ChangeSettings, RegistrationSettings
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap


@dataclass(frozen=True)
class Scan:
    """One study as the registrar compares it: the CT and the label maps on its grid."""

    ct: Volume
    vertebrae: LabelMap
    lesions: LabelMap | None = None  # None: no lesion segmentation, no lesion change


@dataclass(frozen=True)
class Comparison:
    """The per-vertebra transforms and quality, and the lesion change of each vertebra."""

    registration: Registration
    changes: tuple[VertebraChange, ...]


def compare(prior: Scan | None, current: Scan, registration: RegistrationSettings,
            change: ChangeSettings) -> Comparison | None:
    """Register ``prior`` onto ``current`` vertebra by vertebra and measure lesion change.

    ``None`` when there is no prior: the current study is a baseline, nothing to compare.
    """
    if prior is None:
        return None
    result = register_vertebrae(prior.ct, prior.vertebrae, current.ct, current.vertebrae,
                                registration)
    if prior.lesions is None or current.lesions is None:
        return Comparison(result, ())
    return Comparison(result, lesion_changes(prior.lesions, prior.vertebrae, current.lesions,
                                             current.vertebrae, result, change))
