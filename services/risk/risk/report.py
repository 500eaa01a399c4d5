"""The visual report a radiologist reads in the PACS: an Encapsulated PDF and its pages as
Secondary Capture images (for viewers without PDF support), each in its own series.

Page 1: the sagittal reformat with each level coloured by its factor of risk for one activity
(``risk.report.activity``, default the one with the highest load), lesion outlines, and a
per-level table (trabecular vBMD, lesion type and share of the body, height loss, strength,
load, factor of risk, partial SINS); missing values are dashes with their reasons as footnotes.
Page 2, for a follow-up compared with its prior: registration quality and lesion change per
vertebra, plus any further change columns the caller passes.

The pages carry the patient's name, ID, birth date and sex in their header, as a clinical
report does (``risk.report.show_patient``; the objects say Burned In Annotation YES); they are
never logged. Results of a demo model carry the demo disclaimer across the top of every page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

from risk.calibration import Calibration
from risk.lesion_type import VertebraLesions
from risk.method_settings import CalibrationMethod, StrengthMethod
from risk.provenance import DEMO_DISCLAIMER, Provenance
from risk.report_dicom import encapsulated_pdf, secondary_captures
from risk.report_figure import (
    ChangePage,
    Header,
    LevelMark,
    LevelPage,
    RiskColours,
    render,
)
from risk.report_sagittal import reformat
from risk.report_table import (
    LEVEL_COLUMNS,
    ExtraColumns,
    activity_text,
    change_table,
    chosen_activity,
    factor_of,
    level_table,
    study_date,
)
from risk.settings import Settings
from risk.spine import SpineAssessment
from risk.values import known
from spinemets import logs
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap
from spinemets.v1 import longitudinal_pb2

log = logging.getLogger(__name__)

TITLE = "Vertebral fracture risk report"
STRENGTH_METHODS = {StrengthMethod.CTRA: "CT rigidity analysis",
                    StrengthMethod.DENSITY_AREA: "density × area"}
PHI_COLUMN = LEVEL_COLUMNS[6]
METHOD_NOTES = (
    "Factor of risk Φ = compression load during the activity / vertebral strength; Φ ≥ 1: "
    "failure expected. The categories are configured: no validated clinical cut-off exists "
    "for metastatic spines.",
    "Height loss: the largest of anterior, middle and posterior body height loss against the "
    "undeformed neighbouring levels. SINS partial: sum of the CT-derived components "
    "(location, lesion quality, alignment, collapse, posterolateral involvement); in brackets "
    "the range the full score can take (pain is a clinical input).",
)


def _person(name: object) -> str:
    pn = PersonName(str(name))
    parts = [p for p in (pn.family_name, pn.given_name) if p]
    return ", ".join(parts) if parts else str(name)


def _patient_line(source: Dataset) -> str:
    """Name, ID, birth date and sex of the patient (empty parts left out)."""
    parts = [_person(source.get("PatientName", "")) or "name unknown"]
    for label, keyword in (("ID", "PatientID"), ("born", "PatientBirthDate"),
                           ("sex", "PatientSex")):
        value = str(source.get(keyword, "") or "")
        if value:
            parts.append(f"{label} {study_date(value) if keyword.endswith('Date') else value}")
    return " · ".join(parts)


def _calibration_text(c: Calibration) -> str:
    if c.method is CalibrationMethod.UNCALIBRATED:
        return (f"uncalibrated (nominal {c.slope_hu_per_mg_cm3:g} HU per mg/cm³ "
                f"{c.material.value}): vBMD approximate")
    kvp = f", {c.kvp:g} kVp" if c.kvp is not None else ""
    kernel = f", kernel {c.kernel}" if c.kernel else ""
    source = f"; {c.source}" if c.source else ""
    return f"{c.method.value} ({c.material.value}{kvp}{kernel}{source})"


def _header(source: Dataset, spine: SpineAssessment, provenance: Provenance, activity: str,
            show_patient: bool) -> Header:
    study = [f"Study {study_date(str(source.get('StudyDate', '') or '')) or 'date unknown'}"]
    if source.get("StudyDescription"):
        study.append(str(source.StudyDescription))
    series = " ".join(str(source.get(k)) for k in ("SeriesNumber", "SeriesDescription")
                      if source.get(k) not in (None, ""))
    if series:
        study.append(f"Series {series}")
    models = dict.fromkeys([(provenance.model_name, provenance.model_version),
                            *provenance.models])
    body = spine.body
    lines = (
        " · ".join(study),
        "Models: " + ", ".join(f"{name} {version}" for name, version in models)
        + (" (demo)" if provenance.demo else "")
        + f" · Calibration: {_calibration_text(spine.calibration)}",
        f"Loads and Φ for {activity_text(spine, activity)} · Body {body.mass_kg:.0f} kg "
        f"({body.mass_source}), {body.height_m:.2f} m ({body.height_source}), "
        f"{body.sex.value} ({body.sex_source}) · Strength: "
        f"{STRENGTH_METHODS[spine.methods.factor_of_risk.strength]}, modulus law "
        f"{spine.methods.strength.modulus_law.value}",
    )
    warning = DEMO_DISCLAIMER[0].upper() + DEMO_DISCLAIMER[1:] if provenance.demo else None
    return Header(TITLE, lines, _patient_line(source) if show_patient else None, warning)


def _change_page(header: Header, longitudinal: longitudinal_pb2.Longitudinal,
                 extra: ExtraColumns | None) -> ChangePage:
    table = change_table(longitudinal, extra)
    date = study_date(longitudinal.prior_study_date)
    title = f"Change since {date}" if date else "Change since the prior study"
    notes = (f"Prior study {longitudinal.prior.study_instance_uid}, series "
             f"{longitudinal.prior.series_instance_uid}; each vertebra registered rigidly "
             "on its own. Dice and HD95: overlap of the registered vertebra masks.",
             *table.notes)
    return ChangePage(header, title, table, notes)


def build_report(sources: Sequence[Dataset], volume: Volume, vertebra_map: LabelMap,
                 lesions: Sequence[VertebraLesions], spine: SpineAssessment,
                 provenance: Provenance, settings: Settings,
                 longitudinal: longitudinal_pb2.Longitudinal | None = None,
                 change_columns: ExtraColumns | None = None) -> list[Dataset]:
    """The Encapsulated PDF and the Secondary Capture pages of ``spine``, assessed on
    ``volume`` and ``vertebra_map`` (on its grid) with the kept ``lesions`` of each vertebra
    (:func:`risk.lesion_type.analyse`). ``change_columns`` adds per-level columns to the
    change page. None when the report is disabled, when no vertebra was assessed, or when
    drawing it fails (logged: the report must not hold back the SEG and SR)."""
    if not settings.report.enabled or not spine.vertebrae:
        return []
    try:
        return _report(sources[0], volume, vertebra_map, lesions, spine, provenance, settings,
                       longitudinal, change_columns)
    except Exception:
        log.exception("visual report failed", extra=logs.fields(reason="report-failed"))
        return []


def _report(source: Dataset, volume: Volume, vertebra_map: LabelMap,
            lesions: Sequence[VertebraLesions], spine: SpineAssessment, provenance: Provenance,
            settings: Settings, longitudinal: longitudinal_pb2.Longitudinal | None,
            change_columns: ExtraColumns | None) -> list[Dataset]:
    config = settings.report
    activity = chosen_activity(spine, config.activity)
    header = _header(source, spine, provenance, activity, config.show_patient)
    colours = RiskColours(config.colour_map, config.phi_range,
                          tuple((c.name, c.min_phi)
                                for c in spine.methods.factor_of_risk.categories))
    marks = tuple(LevelMark(v.level, float(v.geometry.frame.origin[1]),
                            float(v.geometry.frame.origin[2]),
                            known(factor_of(v, activity).phi))
                  for v in spine.vertebrae)
    sagittal = reformat(volume, vertebra_map, lesions,
                        [v.geometry.frame.origin for v in spine.vertebrae])
    table = level_table(spine, activity)
    centre, width = config.window_hu
    caption = (f"Sagittal reformat through the vertebral body centroids, anterior left, head "
               f"up; bone window {width:g}/{centre:g} HU. Fill and outline: Φ for {activity}.")
    pages: list[LevelPage | ChangePage] = [LevelPage(
        header, sagittal, marks, table, PHI_COLUMN, colours, config.window_hu, caption,
        (*METHOD_NOTES, *table.notes))]
    if longitudinal is not None:
        pages.append(_change_page(header, longitudinal, change_columns))
    rendered = render(pages, config.sc_dpi, {
        "Title": TITLE, "Author": settings.equipment.manufacturer,
        "Creator": f"{settings.equipment.model_name} {settings.equipment.software_version}"})
    pdf = encapsulated_pdf(rendered.pdf, TITLE, source, volume.slice_instance_uids,
                           volume.sop_class_uid, provenance, settings.equipment,
                           config.pdf_series_number,
                           provenance.describe("Fracture risk report (PDF)"))
    images = secondary_captures(rendered.pages, source, provenance, settings.equipment,
                                config.sc_series_number,
                                provenance.describe("Fracture risk report (images)"), TITLE)
    log.info("visual report rendered", extra=logs.fields(
        pages=len(pages), pdf_bytes=len(rendered.pdf), activity=activity))
    return [pdf, *images]
