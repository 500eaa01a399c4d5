"""The tables of the visual report, as text: per level on page 1, change since the prior on 2.

Every cell is formatted here, so the pages and the tests read the same strings. A missing
value is an em dash with a footnote number; each distinct reason gets one footnote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from risk.factor_of_risk import FactorOfRisk
from risk.spine import SpineAssessment, VertebraAssessment
from risk.values import Measured, Missing
from spinemets.v1 import longitudinal_pb2

DASH = "—"
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
#: Footnote of a strength of lower confidence (SCIENCE.md 3).
LOWER_CONFIDENCE = ("lower confidence: blastic or mixed lesion (the density-modulus laws come "
                    "from non-metastatic bone)")

#: Columns of the per-level table (page 1).
LEVEL_COLUMNS = ("Level", "vBMD\nmg/cm³", "Lesion\n(% of body)", "Height\nloss", "Strength\nkN",
                 "Load\nN", "Factor of\nrisk Φ", "SINS partial\n(possible)")
#: Columns of the change table (page 2), before any further columns.
CHANGE_COLUMNS = ("Level", "Dice", "HD95\nmm", "Registration", "Lesions\nprior mL",
                  "Lesions\nnow mL", "Change\nmL", "Change\n%", "New", "Resolved", "Growing")


class Notes:
    """Footnotes of one table, numbered in order of first use."""

    def __init__(self) -> None:
        self._texts: list[str] = []

    def mark(self, text: str) -> str:
        """The superscript number of footnote ``text`` (added if new)."""
        if text not in self._texts:
            self._texts.append(text)
        return str(self._texts.index(text) + 1).translate(_SUPERSCRIPT)

    def missing(self, value: Missing) -> str:
        """An em dash with the footnote of why ``value`` is missing."""
        return DASH + self.mark(f"{value.reason}: {value.detail}" if value.detail
                                else value.reason)

    @property
    def texts(self) -> tuple[str, ...]:
        """The footnotes, each prefixed with its number."""
        return tuple(f"{str(n).translate(_SUPERSCRIPT)} {text}"
                     for n, text in enumerate(self._texts, start=1))


@dataclass(frozen=True)
class Table:
    """Column titles, rows of cell texts and the numbered footnotes."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...]


def number(value: Measured, spec: str, notes: Notes, scale: float = 1.0) -> str:
    """``value * scale`` formatted with ``spec``, or a dash and footnote when missing."""
    if isinstance(value, Missing):
        return notes.missing(value)
    return format(value * scale, spec)


def vbmd(value: Measured, notes: Notes) -> str:
    """Trabecular vBMD, mg/cm3, as the table shows it."""
    return number(value, ".0f", notes)


def chosen_activity(spine: SpineAssessment, configured: str | None) -> str:
    """``configured``, or the activity with the highest compression at any level (the first
    configured one when no load is known)."""
    if configured is not None:
        return configured
    names = [a.name for a in spine.methods.loads.activities]

    def highest(name: str) -> float:
        known = [f.load_n for v in spine.vertebrae for f in v.factors_of_risk
                 if f.activity == name and not isinstance(f.load_n, Missing)]
        return max(known, default=float("-inf"))

    return max(names, key=highest)


def factor_of(vertebra: VertebraAssessment, activity: str) -> FactorOfRisk:
    """The vertebra's factor of risk during ``activity``."""
    [found] = [f for f in vertebra.factors_of_risk if f.activity == activity]
    return found


def percent(value: Measured, notes: Notes) -> str:
    """A fraction as a whole per cent, or a dash and footnote when missing."""
    return number(value, ".0f", notes, 100) + ("" if isinstance(value, Missing) else "%")


def _lesion(vertebra: VertebraAssessment, notes: Notes) -> str:
    burden = vertebra.lesions
    if isinstance(burden, Missing):
        return notes.missing(burden)
    if burden.vertebra_type is None:
        return "none"
    return f"{burden.vertebra_type} ({percent(burden.body_fraction, notes)})"


def _strength(vertebra: VertebraAssessment, factor: FactorOfRisk, notes: Notes) -> str:
    text = number(factor.strength_n, ".1f", notes, 1e-3)
    if vertebra.strength.confidence == "lower" and not isinstance(factor.strength_n, Missing):
        text += notes.mark(LOWER_CONFIDENCE)
    return text


def _sins(vertebra: VertebraAssessment, notes: Notes) -> str:
    s = vertebra.sins
    if not s.applicable:
        return "n/a" + notes.mark("SINS applies to a vertebra with a lesion")
    low, high = s.possible_total
    return f"{s.partial_total} ({low}–{high})"


def level_table(spine: SpineAssessment, activity: str) -> Table:
    """One row per vertebra, cranial to caudal, for ``activity``."""
    notes = Notes()
    rows = []
    for v in spine.vertebrae:
        factor = factor_of(v, activity)
        rows.append((v.level, vbmd(v.density.vbmd_mg_cm3, notes), _lesion(v, notes),
                     percent(v.height_loss.maximum, notes),
                     _strength(v, factor, notes), number(factor.load_n, ".0f", notes),
                     number(factor.phi, ".2f", notes), _sins(v, notes)))
    return Table(LEVEL_COLUMNS, tuple(rows), notes.texts)


#: Further per-level change columns: level -> column title -> text (or why it is missing).
ExtraColumns = Mapping[str, Mapping[str, str | Missing]]


def _change_cells(change: longitudinal_pb2.VertebraChange | None, omitted: str,
                  notes: Notes) -> tuple[str, ...]:
    if change is None:
        why = Missing("no-lesion-change", omitted or "no lesion change for this vertebra")
        return tuple(notes.missing(why) for _ in range(7))
    relative = (f"{change.change_percent:+.0f}" if change.HasField("change_percent")
                else notes.missing(Missing("no-prior-lesion", "no lesion volume in the prior")))
    return (f"{change.prior_ml:.2f}", f"{change.current_ml:.2f}", f"{change.change_ml:+.2f}",
            relative, str(change.new_lesions), str(change.resolved_lesions),
            str(change.growing_lesions))


def change_table(longitudinal: longitudinal_pb2.Longitudinal,
                 extra: ExtraColumns | None = None) -> Table:
    """One row per registered vertebra: registration quality, lesion change and the
    ``extra`` columns (in order of first appearance; a level without one shows a dash)."""
    notes = Notes()
    changes = {c.level: c for c in longitudinal.changes}
    extra = extra or {}
    titles: list[str] = []
    for columns in extra.values():
        titles += [t for t in columns if t not in titles]
    rows = []
    for r in longitudinal.registrations:
        quality = ("failed" + notes.mark(r.problem or "registration failed") if r.failed
                   else "ok" if r.refined
                   else "ok" + notes.mark("refinement lost overlap: initial alignment kept"))
        further = extra.get(r.level, {})
        cells = [further.get(t, Missing("not-computed", "not computed for this vertebra"))
                 for t in titles]
        rows.append((r.level, f"{r.dice:.2f}", f"{r.hd95_mm:.1f}", quality,
                     *_change_cells(changes.get(r.level), longitudinal.changes_omitted, notes),
                     *(c if isinstance(c, str) else notes.missing(c) for c in cells)))
    for s in longitudinal.skipped:
        notes.mark(f"{s.level} not compared: {s.reason}")
    return Table((*CHANGE_COLUMNS, *titles), tuple(rows), notes.texts)


def study_date(value: str) -> str:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD; other text as it is."""
    text = value.strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def activity_text(spine: SpineAssessment, name: str) -> str:
    """What the activity is, e.g. "flexion_30_5kg: trunk flexion 30°, 5 kg in the hands"."""
    [a] = [a for a in spine.methods.loads.activities if a.name == name]
    parts = [f"trunk flexion {a.trunk_flexion_deg:g}°" if a.trunk_flexion_deg else "upright"]
    if a.hand_load_kg:
        parts.append(f"{a.hand_load_kg:g} kg in the hands")
    return f"{name}: {', '.join(parts)}"
