"""The visual report on a phantom with lesions and a wedge fracture: DICOM conformance, what the
PDF pages show (rendered by poppler), the Secondary Capture pages, the change page."""

from __future__ import annotations

import colorsys
import dataclasses
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from phantom import PhantomOptions, generate, write_dicom_series
from risk import lesion_type
from risk import report as report_module
from risk.lesion_type import VertebraLesions
from risk.provenance import Provenance
from risk.report import build_report
from risk.report_figure import RiskColours
from risk.report_sagittal import reformat
from risk.report_table import Notes, chosen_activity, factor_of, percent, vbmd
from risk.settings import ReportSettings, Settings
from risk.spine import SpineAssessment, VertebraAssessment, assess_spine
from risk.values import Missing
from spinemets import labels, logs
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap
from spinemets.v1 import longitudinal_pb2, volume_pb2

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DEMO = "Phantom-trained demo model, not for clinical use"
PATIENT_ID, PATIENT_NAME = "RPT-0042", "Tester^Report"
DPI = 100  # rendering of the PDF pages for the checks

if shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None:
    pytest.skip("poppler-utils (pdftoppm, pdftotext) is not installed", allow_module_level=True)


@dataclass(frozen=True)
class Case:
    """A phantom T12-L4 (lytic and mixed lesions, 40 % wedge fracture of L2), written as a
    DICOM series, and everything the report is built from."""

    headers: Sequence[Dataset]
    volume: Volume
    vertebrae: LabelMap
    lesions: tuple[VertebraLesions, ...]
    spine: SpineAssessment
    settings: Settings
    fractured: str

    def provenance(self, demo: bool) -> Provenance:
        first = self.headers[0]
        return Provenance(str(first.StudyInstanceUID), str(first.SeriesInstanceUID),
                          "vertebrae", "3", demo)

    def vertebra(self, level: str) -> VertebraAssessment:
        [found] = [v for v in self.spine.vertebrae if v.level == level]
        return found


@dataclass(frozen=True)
class Report:
    """The objects of one report, the PDF taken out of its DICOM object, and poppler's view."""

    pdf_object: Dataset
    pages: Sequence[Dataset]
    pdf: Path
    png: list[npt.NDArray[np.uint8]]  # RGB per page at DPI
    text: list[str]  # per page


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    ph = generate(PhantomOptions(seed=31, levels=("T12", "L4"), spacing=(1.0, 1.0, 1.0),
                                 matrix=170, lesions=3, compression="L2",
                                 compression_fraction=0.4, compression_wedge=True,
                                 max_rotation_deg=4))
    files = write_dicom_series(ph, tmp_path_factory.mktemp("ct"), patient_id=PATIENT_ID,
                               patient_name=PATIENT_NAME, patient_sex="F",
                               patient_birth_date="19580412", patient_weight_kg=61.0,
                               patient_size_m=1.64, study_date="20240315",
                               accession_number="ACC-7")
    headers = [dcmread(f, stop_before_pixels=True) for f in files]
    settings = Settings()
    spine = assess_spine(ph.ct, ph.vertebrae, ph.muscles, ph.lesions, headers, settings.methods,
                         settings.lesion_types)
    kept = lesion_type.analyse(ph.vertebrae, ph.lesions, settings.lesion_types)
    return Case(headers, ph.ct, ph.vertebrae, kept, spine, settings,
                ph.truth["compression"]["level"])


def comparison() -> longitudinal_pb2.Longitudinal:
    """The phantom compared with a prior of 2023-12-01: L2's lesions grew, L4 failed."""
    def registration(level: str, failed: bool = False) -> longitudinal_pb2.VertebraRegistration:
        return longitudinal_pb2.VertebraRegistration(
            level=level, prior_to_current=np.eye(4).ravel().tolist(), dice=0.61 if failed
            else 0.93, hd95_mm=4.5 if failed else 1.2, failed=failed,
            problem="Dice 0.61 below 0.80" if failed else "", refined=True)
    return longitudinal_pb2.Longitudinal(
        prior=volume_pb2.SeriesRef(study_instance_uid="1.2.826.0.1.3680043.10.99.1",
                                   series_instance_uid="1.2.826.0.1.3680043.10.99.1.1"),
        prior_study_date="20231201",
        registrations=[registration(level, level == "L4")
                       for level in ("T12", "L1", "L2", "L3", "L4")],
        skipped=[longitudinal_pb2.SkippedVertebra(level="T11", reason="truncated-in-prior")],
        changes=[longitudinal_pb2.VertebraChange(level=level, prior_ml=prior, current_ml=now,
                                                 change_ml=now - prior,
                                                 change_percent=(100 * (now - prior) / prior
                                                                 if prior else None),
                                                 new_lesions=int(not prior and now > 0),
                                                 growing_lesions=int(now > prior > 0))
                 for level, prior, now in (("T12", 0.8, 0.8), ("L1", 0.0, 0.0),
                                           ("L2", 1.25, 2.0), ("L3", 0.0, 0.4),
                                           ("L4", 0.0, 0.0))])


def poppler(pdf: Path) -> tuple[list[npt.NDArray[np.uint8]], list[str]]:
    """Each page rendered with ``pdftoppm -png`` (RGB) and its text (``pdftotext``)."""
    subprocess.run(["pdftoppm", "-png", "-r", str(DPI), str(pdf), str(pdf.with_suffix(""))],
                   check=True)
    pngs = sorted(pdf.parent.glob(f"{pdf.stem}-*.png"))
    images = [np.rint(matplotlib.image.imread(p)[..., :3] * 255).astype(np.uint8) for p in pngs]
    texts = [subprocess.run(["pdftotext", "-layout", "-f", str(n), "-l", str(n), str(pdf), "-"],
                            capture_output=True, text=True, check=True).stdout
             for n in range(1, len(pngs) + 1)]
    return images, texts


def make_report(case: Case, folder: Path, demo: bool = True,
                longitudinal: longitudinal_pb2.Longitudinal | None = None) -> Report:
    objects = build_report(case.headers, case.volume, case.vertebrae, case.lesions, case.spine,
                           case.provenance(demo), case.settings, longitudinal)
    folder.mkdir(parents=True, exist_ok=True)
    for n, ds in enumerate(objects):
        ds.save_as(folder / f"{n}.dcm", enforce_file_format=True)
    first, *pages = [dcmread(folder / f"{n}.dcm") for n in range(len(objects))]
    pdf = folder / "report.pdf"
    pdf.write_bytes(bytes(first.EncapsulatedDocument)[:int(first.EncapsulatedDocumentLength)])
    png, text = poppler(pdf)
    return Report(first, pages, pdf, png, text)


@pytest.fixture(scope="module")
def report(case: Case, tmp_path_factory: pytest.TempPathFactory) -> Report:
    return make_report(case, tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def follow_up(case: Case, tmp_path_factory: pytest.TempPathFactory) -> Report:
    return make_report(case, tmp_path_factory.mktemp("follow-up"), longitudinal=comparison())


def test_pdf_and_secondary_captures_conform(report: Report,
                                            dciodvfy: Callable[[Path], list[str]]) -> None:
    folder = report.pdf.parent
    assert dciodvfy(folder / "0.dcm") == []
    for n in range(1, len(report.pages) + 1):
        assert dciodvfy(folder / f"{n}.dcm") == []


def test_report_objects_join_the_study_in_their_own_series(case: Case, report: Report) -> None:
    source = case.headers[0]
    pdf, pages = report.pdf_object, report.pages
    assert (pdf.SOPClassUID, pdf.Modality) == (ENCAPSULATED_PDF, "DOC")
    assert [(p.SOPClassUID, p.Modality, p.InstanceNumber) for p in pages] == [
        (SECONDARY_CAPTURE, "OT", 1)]
    for ds in (pdf, *pages):
        for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate",
                        "PatientSex", "PatientWeight", "PatientSize", "StudyDate", "StudyTime",
                        "AccessionNumber", "StudyID", "StudyDescription",
                        "ReferringPhysicianName"):
            assert ds[keyword].value == source[keyword].value, keyword
        assert ds.BurnedInAnnotation == "YES"
        assert ds.ContentDate == source.StudyDate
        assert "DEMO" in ds.SeriesDescription
    series = {pdf.SeriesInstanceUID, *(p.SeriesInstanceUID for p in pages)}
    provenance = case.provenance(True)
    assert len(series) == 2
    assert series.isdisjoint({source.SeriesInstanceUID, provenance.seg_series_uid,
                              provenance.sr_series_uid})
    assert (pdf.SeriesNumber, pages[0].SeriesNumber) == (9703, 9704)
    assert pdf.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert pdf.DocumentTitle == "Vertebral fracture risk report"
    assert pdf.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    document = bytes(pdf.EncapsulatedDocument)
    assert len(document) % 2 == 0 and document.startswith(b"%PDF-")
    assert document[:int(pdf.EncapsulatedDocumentLength)].rstrip().endswith(b"%%EOF")
    assert {item.ReferencedSOPInstanceUID for item in pdf.SourceInstanceSequence} == set(
        case.volume.slice_instance_uids)


def test_the_sagittal_plane_runs_through_every_body_head_up_anterior_left(case: Case) -> None:
    sagittal = reformat(case.volume, case.vertebrae, case.lesions,
                        [v.geometry.frame.origin for v in case.spine.vertebrae])
    assert sagittal.pixel_mm == 1.0  # the CT's finest spacing: true proportions
    rows = []
    for v in case.spine.vertebrae:
        if v.geometry.truncated:
            continue
        value = labels.vertebra(v.level).value
        _, y, z = v.geometry.frame.origin
        row = round((sagittal.top_mm - z) / sagittal.pixel_mm)
        column = round((y - sagittal.anterior_mm) / sagittal.pixel_mm)
        assert sagittal.vertebrae[row, column] == value, v.level  # the body centroid, in place
        _, columns = np.nonzero(sagittal.vertebrae == value)
        assert column < columns.mean(), v.level  # the body in front of the posterior elements
        rows.append(row)
    assert rows == sorted(rows)  # cranial levels above caudal ones
    # Every lesion the lesion-type rule keeps is outlined at its vertebra's height.
    kept = [(v, kind) for v in case.lesions for kind, mask in v.masks.items() if mask.any()]
    assert kept
    for vertebra, kind in kept:
        projected = sagittal.lesions[labels.by_name(f"lesion_{kind}").value]
        band = sagittal.vertebrae == vertebra.vertebra.value
        assert (projected.any(axis=1) & band.any(axis=1)).any(), (vertebra.level, kind)


def test_page_one_shows_the_table_of_every_level(case: Case, report: Report) -> None:
    [text] = report.text
    activity = chosen_activity(case.spine, None)
    assert activity == "flexion_30_5kg"  # the highest load of the default activities
    for v in case.spine.vertebrae:
        assert re.search(rf"^\s*{v.level}\s", text, re.MULTILINE), v.level
    measured = case.vertebra("L3")
    assert not isinstance(measured.density.vbmd_mg_cm3, Missing)
    row = next(line for line in text.splitlines() if re.match(r"\s*L3\s", line))
    factor = factor_of(measured, activity)
    assert vbmd(measured.density.vbmd_mg_cm3, Notes()) in row.split()
    assert f"{factor.phi:.2f}" in row.split() and f"{factor.load_n:.0f}" in row.split()
    fractured = case.vertebra(case.fractured)
    loss = fractured.height_loss.maximum
    assert not isinstance(loss, Missing) and loss > 0.3  # the 40 % wedge
    fractured_row = next(line for line in text.splitlines()
                         if re.match(rf"\s*{case.fractured}\s", line))
    assert percent(loss, Notes()) in fractured_row.split()
    assert "truncated: vertebra cut by the border of the volume" in text  # a footnote
    assert "flexion_30_5kg: trunk flexion 30°, 5 kg in the hands" in text
    assert f"ID {PATIENT_ID}" in text and "Tester, Report" in text


def _hue_saturation(rgb: npt.ArrayLike) -> tuple[float, float]:
    r, g, b = (float(c) / 255 for c in np.asarray(rgb))
    h, _, s = colorsys.rgb_to_hls(r, g, b)
    return h * 360, s


def _words(pdf: Path, page: int) -> list[tuple[str, float, float, float, float]]:
    """Words of a page with their box (xMin, yMin, xMax, yMax) in points."""
    html = subprocess.run(["pdftotext", "-bbox", "-f", str(page), "-l", str(page), str(pdf),
                           "-"], capture_output=True, text=True, check=True).stdout
    return [(m[5], float(m[1]), float(m[2]), float(m[3]), float(m[4])) for m in re.finditer(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>',
        html)]


def test_levels_are_coloured_by_their_factor_of_risk(case: Case, report: Report) -> None:
    page = report.png[0].astype(int)
    width = page.shape[1]
    activity = chosen_activity(case.spine, None)
    config = case.settings.report
    colours = RiskColours(config.colour_map, config.phi_range, tuple(
        (c.name, c.min_phi) for c in case.settings.methods.factor_of_risk.categories))
    scale = DPI / 72
    words = _words(report.pdf, 1)
    for v in case.spine.vertebrae:
        phi = factor_of(v, activity).phi
        if isinstance(phi, Missing):
            continue
        expected = np.asarray(colours.rgb(phi)) * 255
        # The table's factor-of-risk cell is filled with the colour of the level's Phi.
        close = np.all(np.abs(page - expected) <= 3, axis=2)
        assert close[:, width // 3:].sum() > 300, v.level
        # Beside the vertebra on the sagittal view (left third): its name, then its Phi.
        [at] = [i for i, w in enumerate(words) if w[0] == v.level and w[3] * scale < width / 3]
        assert words[at + 1][0] == f"{phi:.2f}"
        if v.level != case.fractured:
            continue
        # Right of the label lies the vertebral body, tinted with the level's colour.
        _, _, y_min, x_max, y_max = words[at + 1]
        row = int((y_min + y_max) / 2 * scale)
        column = int(x_max * scale) + 14
        strip = page[row - 2:row + 3, column:column + 12].reshape(-1, 3)
        hues = [_hue_saturation(p) for p in strip]
        want, _ = _hue_saturation(expected)
        assert np.median([s for _, s in hues]) > 0.15  # coloured, not grey CT
        assert abs(np.median([h for h, _ in hues]) - want) < 8


def test_the_demo_disclaimer_heads_the_pages_of_a_demo_model_only(
        case: Case, report: Report, tmp_path: Path) -> None:
    assert DEMO in report.text[0]
    clinical = make_report(case, tmp_path, demo=False)
    assert DEMO not in clinical.text[0]
    assert "DEMO" not in clinical.pdf_object.SeriesDescription
    assert "Vertebral fracture risk report" in clinical.text[0]


def test_secondary_capture_is_the_rendered_page(case: Case, report: Report) -> None:
    [sc] = report.pages
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.BitsAllocated) == (
        "RGB", 3, 8)
    dpi = case.settings.report.sc_dpi
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", "1", "-l", "1", str(report.pdf),
                    str(report.pdf.with_name("sc"))], check=True)
    [png] = report.pdf.parent.glob("sc-*.png")
    poppler_page = np.rint(matplotlib.image.imread(png)[..., :3] * 255)
    assert abs(sc.Rows - poppler_page.shape[0]) <= 1
    assert abs(sc.Columns - poppler_page.shape[1]) <= 1
    pixels = sc.pixel_array.astype(float)
    assert pixels.shape == (sc.Rows, sc.Columns, 3)

    def blocks(image: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        h, w = (s // 20 * 20 for s in pixels.shape[:2])
        return np.asarray(image[:h, :w].reshape(h // 20, 20, w // 20, 20, 3).mean(axis=(1, 3)))

    # The same page: 20-pixel block means agree (anti-aliasing aside).
    difference = np.abs(blocks(pixels) - blocks(poppler_page))
    assert difference.mean() < 2 and np.percentile(difference, 99) < 25


def test_a_follow_up_adds_the_change_page(follow_up: Report) -> None:
    assert len(follow_up.text) == 2 and len(follow_up.png) == 2
    assert [p.InstanceNumber for p in follow_up.pages] == [1, 2]
    assert len({p.SeriesInstanceUID for p in follow_up.pages}) == 1
    page = follow_up.text[1]
    assert "Change since 2023-12-01" in page
    l2 = next(line for line in page.splitlines() if re.match(r"\s*L2\s", line)).split()
    assert l2[:9] == ["L2", "0.93", "1.2", "ok", "1.25", "2.00", "+0.75", "+60", "0"]
    assert l2[10] == "1"  # growing
    assert "Dice 0.61 below 0.80" in page and "T11 not compared: truncated-in-prior" in page
    assert "no lesion volume in the prior" in page  # L3's percentage
    assert follow_up.png[1].shape == follow_up.png[0].shape


def test_rendering_is_deterministic(case: Case, report: Report) -> None:
    again = build_report(case.headers, case.volume, case.vertebrae, case.lesions, case.spine,
                         case.provenance(True), case.settings)
    assert bytes(again[0].EncapsulatedDocument) == bytes(report.pdf_object.EncapsulatedDocument)
    assert again[0].SOPInstanceUID == report.pdf_object.SOPInstanceUID
    assert again[1].PixelData == report.pages[0].PixelData
    assert again[1].SOPInstanceUID == report.pages[0].SOPInstanceUID


def test_no_patient_identifier_is_logged(case: Case) -> None:
    with logs.capture("risk") as captured:
        build_report(case.headers, case.volume, case.vertebrae, case.lesions, case.spine,
                     case.provenance(True), case.settings)
    text = captured.getvalue()
    assert "visual report rendered" in text
    assert PATIENT_ID not in text and "Tester" not in text


def test_a_disabled_report_or_one_without_vertebrae_builds_nothing(case: Case) -> None:
    settings = Settings(report=ReportSettings(enabled=False))
    assert build_report(case.headers, case.volume, case.vertebrae, case.lesions, case.spine,
                        case.provenance(True), settings) == []
    assert build_report(case.headers, case.volume, case.vertebrae, case.lesions,
                        dataclasses.replace(case.spine, vertebrae=()), case.provenance(True),
                        case.settings) == []


def test_a_report_that_cannot_be_drawn_is_logged_and_left_out(
        case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fonts(*args: object, **kwargs: object) -> None:
        raise OSError("font cache not writable")

    monkeypatch.setattr(report_module, "render", no_fonts)
    with logs.capture("risk") as captured:
        assert build_report(case.headers, case.volume, case.vertebrae, case.lesions,
                            case.spine, case.provenance(True), case.settings) == []
    [failure] = [r for r in logs.records(captured) if r["message"] == "visual report failed"]
    assert failure["reason"] == "report-failed"
