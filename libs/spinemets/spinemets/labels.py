"""The label catalogue: every structure the system segments, with its value, codes and colour.

This is the only code list of the project. Models map their output channels to catalogue
entries *by name* (never by value); the SEG writer, the SR writer and the reports read the
codes from here.

Values of vertebrae follow the VerSe numbering (Sekuboyina et al., Med Image Anal 2021):
8..19 = T1..T12, 20..24 = L1..L5, 26 = sacrum. SNOMED CT codes are those used by
TotalSegmentator's ``totalsegmentator_snomed_mapping.csv``; lesion types have no standard code
and use the project's private scheme (:mod:`spinemets.codes`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from spinemets.codes import PRIVATE_SCHEME, Code

ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED_STRUCTURE = Code("49755003", "SCT", "Morphologically Altered Structure")
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")


class Group(enum.StrEnum):
    """Kinds of structure, one per model role."""

    VERTEBRA = "vertebra"
    MUSCLE = "muscle"
    LESION = "lesion"
    OTHER_BONE = "other_bone"


@dataclass(frozen=True)
class Label:
    """One catalogue entry.

    ``category`` and ``type`` are the DICOM SEG Segmented Property Category / Type codes;
    ``modifier`` is the laterality (or ``None``).
    """

    name: str
    value: int
    display: str
    group: Group
    category: Code
    type: Code
    modifier: Code | None
    rgb: tuple[int, int, int]


_VERTEBRA_CODES: tuple[tuple[str, str], ...] = (
    ("T1", "64864005"),
    ("T2", "53733008"),
    ("T3", "1626008"),
    ("T4", "73071006"),
    ("T5", "56401006"),
    ("T6", "45296009"),
    ("T7", "62487009"),
    ("T8", "11068009"),
    ("T9", "82687006"),
    ("T10", "7610001"),
    ("T11", "12989004"),
    ("T12", "23215003"),
    ("L1", "66794005"),
    ("L2", "14293000"),
    ("L3", "36470004"),
    ("L4", "11994002"),
    ("L5", "49668003"),
)

#: Vertebral levels handled by the system, cranial to caudal.
LEVELS: tuple[str, ...] = tuple(level for level, _ in _VERTEBRA_CODES)

#: VerSe value of T1; level i (0-based in :data:`LEVELS`) has value ``FIRST_VERTEBRA + i``.
FIRST_VERTEBRA = 8


def _vertebra_rgb(i: int) -> tuple[int, int, int]:
    """Alternating warm / cool colours so that neighbouring levels are told apart."""
    palette = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (204, 121, 167))
    return palette[i % len(palette)]


def _build() -> tuple[Label, ...]:
    labels = [
        Label(
            name=f"vertebra_{level}",
            value=FIRST_VERTEBRA + i,
            display=f"{level} vertebra",
            group=Group.VERTEBRA,
            category=ANATOMICAL_STRUCTURE,
            type=Code(code, "SCT", f"{level} vertebra"),
            modifier=None,
            rgb=_vertebra_rgb(i),
        )
        for i, (level, code) in enumerate(_VERTEBRA_CODES)
    ]
    labels.append(
        Label("sacrum", 26, "Sacrum", Group.OTHER_BONE, ANATOMICAL_STRUCTURE,
              Code("54735007", "SCT", "Sacrum"), None, (100, 216, 54))
    )
    muscles = (
        ("deep_back_muscle", "Deep muscle of back", "244849004", 101, (241, 126, 57)),
        ("psoas_major", "Psoas major muscle", "64038003", 103, (230, 115, 46)),
        ("quadratus_lumborum", "Quadratus lumborum muscle", "6001004", 105, (200, 100, 150)),
    )
    for name, meaning, code, value, rgb in muscles:
        for offset, (side, modifier) in enumerate((("left", LEFT), ("right", RIGHT))):
            shade = tuple(int(c * (1.0 - 0.25 * offset)) for c in rgb)
            labels.append(
                Label(
                    name=f"{name}_{side}",
                    value=value + offset,
                    display=f"{meaning}, {side}",
                    group=Group.MUSCLE,
                    category=ANATOMICAL_STRUCTURE,
                    type=Code(code, "SCT", meaning),
                    modifier=modifier,
                    rgb=(shade[0], shade[1], shade[2]),
                )
            )
    lesions = (("lytic", 201, (220, 20, 60)), ("blastic", 202, (65, 105, 225)),
               ("mixed", 203, (148, 0, 211)))
    for kind, value, rgb in lesions:
        labels.append(
            Label(
                name=f"lesion_{kind}",
                value=value,
                display=f"{kind.capitalize()} metastatic lesion",
                group=Group.LESION,
                category=MORPHOLOGICALLY_ALTERED_STRUCTURE,
                type=NEOPLASM,
                modifier=PRIVATE_SCHEME[f"lesion_{kind}"],
                rgb=rgb,
            )
        )
    return tuple(labels)


CATALOGUE: tuple[Label, ...] = _build()
_BY_NAME = {label.name: label for label in CATALOGUE}
_BY_VALUE = {label.value: label for label in CATALOGUE}


def by_name(name: str) -> Label:
    """Return the catalogue entry called ``name``; :class:`KeyError` names unknown labels."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"label {name!r} is not in the label catalogue") from None


def check_names(names: Iterable[str]) -> None:
    """:class:`ValueError` naming the first of ``names`` not in the catalogue (for validators of
    configuration and model files, which report a ``ValueError`` with the field it came from)."""
    for name in names:
        try:
            by_name(name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None


def by_value(value: int) -> Label:
    """Return the catalogue entry with label-map value ``value``."""
    try:
        return _BY_VALUE[value]
    except KeyError:
        raise KeyError(f"label value {value} is not in the label catalogue") from None


def vertebra(level: str) -> Label:
    """Return the entry of vertebral level ``level`` ("T1" .. "L5")."""
    return by_name(f"vertebra_{level}")


def in_group(group: Group) -> tuple[Label, ...]:
    """All entries of one group, in catalogue order."""
    return tuple(label for label in CATALOGUE if label.group is group)
