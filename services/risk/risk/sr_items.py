"""Content of a measurement group that highdicom's templates do not build on their own.

:class:`Content` collects what goes into one TID 1411 / TID 1501 group: numeric measurements
(TID 300) with their concept modifiers, coded qualitative evaluations (TID 1411 row 16) and
text qualitative evaluations (row 17, "coded questions with text answers").

- A modifier is a ``(concept, value)`` pair written as a HAS CONCEPT MOD CODE item under the
  NUM (TID 300 row 2, ``$ModType`` / ``$ModValue``): dcmqi's tid1500reader reports them as
  ``measurementModifiers``, so e.g. the three "Height" or "Compressive load" items of a group
  stay apart.
- A parameter is a number the measurement was derived from, written as an INFERRED FROM NUM
  item under it (TID 300 row 9, ``$DerivationParameter``; dcmqi reports them as
  ``measurementDerivationParameters``): the calibration coefficients of a vBMD, the body
  weight, height and extensor moment arm of a compressive load.
- A value that is missing (:class:`~risk.values.Missing`) cannot be a NUM: highdicom's
  Measurement needs a number, and a NUM without Measured Value would leave its concept
  unexplained. It becomes a TEXT item with the measurement's concept name and modifiers and
  the value ``missing (<reason>): <detail>`` (:func:`missing_text`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from risk.objects import concept
from risk.values import Measured, Missing
from spinemets import codes

#: A concept modifier: (concept name, coded value).
Modifier = tuple[codes.Code, codes.Code]
#: Significant digits kept in a NUM's Numeric Value (DS, at most 16 characters).
DS_DIGITS = 12


def ds_value(value: float) -> float:
    """``value`` to :data:`DS_DIGITS` significant digits, so that its DS string fits 16
    characters: pydicom writes 9.999999999999998 as "10.00000000000000", 17 characters, which
    dciodvfy rejects."""
    return float(f"{value:.{DS_DIGITS}g}")


def measurement(name: codes.Code, value: float, unit: codes.Code,
                derivation: codes.Code | None = None) -> hd.sr.Measurement:
    """A NUM measurement (TID 300) whose value fits its DS (:func:`ds_value`)."""
    return hd.sr.Measurement(name=concept(name), value=ds_value(value), unit=concept(unit),
                             derivation=None if derivation is None else concept(derivation))


def missing_text(missing: Missing) -> str:
    """The TEXT value that stands for a missing measurement."""
    return f"missing ({missing.reason})" + (f": {missing.detail}" if missing.detail else "")


def _modify(item: Dataset, modifiers: Sequence[Modifier]) -> None:
    """Put ``modifiers`` first among the children of ``item``."""
    found = [hd.sr.CodeContentItem(name=concept(name), value=concept(value),
                                   relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD)
             for name, value in modifiers]
    if found:
        item.ContentSequence = DicomSequence([*found, *item.get("ContentSequence", [])])


@dataclass(frozen=True)
class Parameter:
    """A derivation parameter: a number (with its unit) the measurement was derived from."""

    name: codes.Code
    value: float
    unit: codes.Code
    derivation: codes.Code | None = None

    def item(self) -> hd.sr.NumContentItem:
        """The INFERRED FROM NUM item of this parameter."""
        found = hd.sr.NumContentItem(
            name=concept(self.name), value=ds_value(self.value), unit=concept(self.unit),
            relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM)
        if self.derivation is not None:
            _modify(found, [(codes.DERIVATION, self.derivation)])
        return found


@dataclass
class Content:
    """Measurements and evaluations of one measurement group, in the order they are added."""

    measurements: list[hd.sr.Measurement] = field(default_factory=list)
    evaluations: list[hd.sr.QualitativeEvaluation] = field(default_factory=list)
    texts: list[hd.sr.TextContentItem] = field(default_factory=list)

    def number(self, name: codes.Code, value: Measured, unit: codes.Code, *,
               modifiers: Sequence[Modifier] = (), derivation: codes.Code | None = None,
               parameters: Sequence[Parameter] = ()) -> None:
        """A NUM (TID 300), or the reason it is missing as TEXT."""
        if isinstance(value, Missing):
            self.text(name, missing_text(value), modifiers)
            return
        found = measurement(name, float(value), unit, derivation)
        item = found[0]
        _modify(item, modifiers)
        if parameters:
            item.ContentSequence = DicomSequence([*item.get("ContentSequence", []),
                                                  *(p.item() for p in parameters)])
        self.measurements.append(found)

    def code(self, name: codes.Code, value: codes.Code | Missing,
             modifiers: Sequence[Modifier] = ()) -> None:
        """A coded evaluation (CODE), or the reason it is missing as TEXT."""
        if isinstance(value, Missing):
            self.text(name, missing_text(value), modifiers)
            return
        evaluation = hd.sr.QualitativeEvaluation(concept(name), concept(value))
        _modify(evaluation[0], modifiers)
        self.evaluations.append(evaluation)

    def text(self, name: codes.Code, value: str, modifiers: Sequence[Modifier] = ()) -> None:
        """A text evaluation (TEXT, CONTAINS)."""
        item = hd.sr.TextContentItem(name=concept(name), value=value,
                                     relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        _modify(item, modifiers)
        self.texts.append(item)

    def extend(self, other: Content) -> None:
        """Add everything of ``other`` after this content's items."""
        self.measurements += other.measurements
        self.evaluations += other.evaluations
        self.texts += other.texts

    def append_texts(self, group: Sequence[Dataset]) -> None:
        """Append the text items to a group built from :attr:`measurements` and
        :attr:`evaluations` (highdicom's templates take only those)."""
        group[0].ContentSequence.extend(self.texts)
