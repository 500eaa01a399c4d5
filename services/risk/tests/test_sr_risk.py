"""The fracture-risk content of the TID 1500 SR, on a phantom with lesions, muscles and a wedge
fracture (its truth label maps stand in for the models): conformance (dciodvfy, PixelMed,
dcmqi's tid1500reader), values equal to the assessment's, UCUM units, segment references and
the reasons of missing values."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dcmqi
import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds

from phantom import Phantom, PhantomOptions, generate, write_dicom_series
from risk.measure import measure_vertebrae
from risk.results import build_objects
from risk.settings import Settings
from risk.spine import SpineAssessment, VertebraAssessment, assess_spine
from risk.sr_items import Content, Parameter, missing_text
from risk.sr_muscles import muscle_text
from risk.sr_vertebra import activity_code
from risk.values import Missing
from spinemets import codes, labels

_P = codes.PRIVATE_SCHEME
#: The TID 1500 reader of dcmqi (3D Slicer's SR reader), shipped in the dcmqi wheel.
TID1500READER = Path(dcmqi.__file__).parent / "bin" / "tid1500reader"
ACTIVITIES = ("standing", "standing_5kg", "flexion_30_5kg")


@dataclass(frozen=True)
class Written:
    """The phantom, its assessment and the SEG and SR written from it."""

    phantom: Phantom
    spine: SpineAssessment
    seg: Path
    sr: Path


def write(phantom: Phantom, headers: list[Dataset], folder: Path, *, muscles: bool = True,
          lesions: bool = True) -> Written:
    """Assess the phantom with the maps chosen, and write its SEG and SR into ``folder``."""
    settings = Settings()
    muscle_map = phantom.muscles if muscles else None
    lesion_map = phantom.lesions if lesions else None
    spine = assess_spine(phantom.ct, phantom.vertebrae, muscle_map, lesion_map, headers,
                         settings.methods, settings.lesion_types)
    objects = build_objects(phantom.study_uid, phantom.series_uid, phantom.ct, headers,
                            phantom.vertebrae,
                            measure_vertebrae(phantom.ct.array, phantom.vertebrae), muscle_map,
                            lesion_map, settings, spine=spine)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ds in objects:
        if ds.Modality in ("SEG", "SR"):
            paths[ds.Modality] = folder / f"{ds.Modality.lower()}.dcm"
            ds.save_as(paths[ds.Modality], enforce_file_format=True)
    return Written(phantom, spine, paths["SEG"], paths["SR"])


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Phantom, list[Dataset]]:
    """T10-L4 in view (the ends truncated), lytic T12, wedge-fractured blastic L2, mixed
    lesion in a pedicle of L3, muscles; written as DICOM with weight, stature and sex."""
    phantom = generate(PhantomOptions(
        seed=11, levels=("T12", "L3"), spacing=(1.0, 1.0, 1.0), matrix=170, lesions=3,
        posterior_lesions=True, max_rotation_deg=5, compression="L2", compression_fraction=0.4,
        compression_wedge=True))
    files = write_dicom_series(phantom, tmp_path_factory.mktemp("ct"), patient_id="SR-RISK",
                               patient_name="Risk^Report", patient_sex="F",
                               patient_weight_kg=61.0, patient_size_m=1.64)
    return phantom, [dcmread(f, stop_before_pixels=True) for f in files]


@pytest.fixture(scope="module")
def written(phantom_series: tuple[Phantom, list[Dataset]],
            tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write(*phantom_series, tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module")
def vertebrae_only(phantom_series: tuple[Phantom, list[Dataset]],
                   tmp_path_factory: pytest.TempPathFactory) -> Written:
    """The same series with the vertebra map alone: no muscles, no lesions."""
    return write(*phantom_series, tmp_path_factory.mktemp("vertebrae"), muscles=False,
                 lesions=False)


# --- reading the SR back with pydicom ----------------------------------------------------

def code_of(item: Dataset) -> codes.Code:
    return codes.Code(str(item.get("CodeValue") or item.get("LongCodeValue")),
                      str(item.CodingSchemeDesignator), str(item.CodeMeaning))


def name_of(item: Dataset) -> codes.Code:
    return code_of(item.ConceptNameCodeSequence[0])


def modifiers_of(item: Dataset) -> frozenset[codes.Code]:
    """Values of the HAS CONCEPT MOD children of ``item``."""
    return frozenset(code_of(child.ConceptCodeSequence[0])
                     for child in item.get("ContentSequence", [])
                     if child.RelationshipType == "HAS CONCEPT MOD"
                     and child.ValueType == "CODE")


def groups(path: Path) -> dict[str, Dataset]:
    """Measurement groups of the report by tracking identifier."""
    sr = dcmread(path)
    (measurements,) = [c for c in sr.ContentSequence
                       if name_of(c).meaning == "Imaging Measurements"]
    found = {}
    for group in measurements.ContentSequence:
        (tracking,) = [i.TextValue for i in group.ContentSequence
                       if name_of(i).meaning == "Tracking Identifier"]
        found[str(tracking)] = group
    return found


def items(group: Dataset, name: codes.Code, *modifiers: codes.Code) -> list[Dataset]:
    """Children of ``group`` named ``name`` whose modifiers include ``modifiers``."""
    return [i for i in group.ContentSequence
            if name_of(i) == name and set(modifiers) <= modifiers_of(i)]


def num(group: Dataset, name: codes.Code, *modifiers: codes.Code) -> tuple[Any, codes.Code]:
    """The one NUM ``name`` (with ``modifiers``) of a group: value (a float, typed to compare
    with ``pytest.approx``) and unit."""
    (item,) = [i for i in items(group, name, *modifiers) if i.ValueType == "NUM"]
    measured = item.MeasuredValueSequence[0]
    return float(measured.NumericValue), code_of(measured.MeasurementUnitsCodeSequence[0])


def text(group: Dataset, name: codes.Code, *modifiers: codes.Code) -> str:
    (item,) = [i for i in items(group, name, *modifiers) if i.ValueType == "TEXT"]
    return str(item.TextValue)


def value_or_reason(group: Dataset, name: codes.Code, *modifiers: codes.Code
                    ) -> float | str:
    """A measurement's number, or the text that says why it is missing."""
    found = items(group, name, *modifiers)
    assert len(found) == 1, (name, modifiers, found)
    if found[0].ValueType == "NUM":
        return float(num(group, name, *modifiers)[0])
    return text(group, name, *modifiers)


def expected(value: float | Missing, scale: float = 1.0) -> Any:
    return missing_text(value) if isinstance(value, Missing) else pytest.approx(value * scale)


def walk(items_: Any) -> Iterator[Dataset]:
    for item in items_:
        yield item
        yield from walk(item.get("ContentSequence", []))


def activity(written: Written, name: str) -> codes.Code:
    (found,) = [a for a in written.spine.methods.loads.activities if a.name == name]
    return activity_code(found)


def parameters(item: Dataset) -> dict[codes.Code, tuple[Any, codes.Code]]:
    """The derivation parameters (INFERRED FROM NUM) of a NUM: value and unit by concept."""
    return {name_of(c): (float(c.MeasuredValueSequence[0].NumericValue),
                         code_of(c.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0]))
            for c in item.get("ContentSequence", []) if c.RelationshipType == "INFERRED FROM"}


def report_evaluations(path: Path) -> Dataset:
    """The report's Qualitative Evaluations container (TID 1500 row 12)."""
    (found,) = [c for c in dcmread(path).ContentSequence
                if name_of(c) == codes.QUALITATIVE_EVALUATIONS]
    assert isinstance(found, Dataset)
    return found


# --- conformance ---------------------------------------------------------------------------

def test_dciodvfy_reports_no_errors(written: Written, vertebrae_only: Written,
                                    dciodvfy: Callable[[Path], list[str]]) -> None:
    assert dciodvfy(written.sr) == []
    assert dciodvfy(vertebrae_only.sr) == []


@pytest.mark.slow  # PixelMed takes 1.5 min on this SR (make test-slow; the smaller SRs of
# test_sr.py, test_sr_longitudinal.py and test_findings_objects.py are validated in make test)
def test_pixelmed_finds_tid_1500_and_no_errors(
        written: Written, pixelmed: Callable[[Path], tuple[str, list[str]]]) -> None:
    output, errors = pixelmed(written.sr)
    assert "Found Root Template TID_1500 (MeasurementReport)" in output, output[-2000:]
    assert errors == []


def test_dcmqi_reads_the_groups_codes_and_values(written: Written, tmp_path: Path) -> None:
    out = tmp_path / "sr.json"
    run = subprocess.run([str(TID1500READER), "--inputDICOM", str(written.sr),
                          "--outputMetadata", str(out)], capture_output=True, text=True,
                         check=False, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    read = {g["TrackingIdentifier"]: g for g in json.loads(out.read_text())["Measurements"]}
    for v in written.spine.vertebrae:
        group = read[v.label.display]
        assert group["FindingSite"]["CodeValue"] == v.label.type.value
        by_quantity: dict[str, list[dict[str, Any]]] = {}
        for item in group["measurementItems"]:
            by_quantity.setdefault(item["quantity"]["CodeValue"], []).append(item)
        if not isinstance(v.density.vbmd_mg_cm3, Missing):
            (vbmd,) = by_quantity[_P["vbmd"].value]
            assert vbmd["units"]["CodeValue"] == "mg/cm3"
            assert float(vbmd["value"]) == pytest.approx(v.density.vbmd_mg_cm3)
        phis = {m["modifierValue"]["CodeValue"]: float(item["value"])
                for item in by_quantity.get(_P["factor_of_risk"].value, [])
                for m in item["measurementModifiers"]
                if m["modifier"]["CodeValue"] == _P["activity"].value}
        assert phis == {f.activity: pytest.approx(f.phi) for f in v.factors_of_risk
                        if not isinstance(f.phi, Missing)}
        evaluations = {e["conceptCode"]["CodeValue"]: e["conceptValue"]
                       for e in group.get("qualitativeEvaluations", [])}
        assert evaluations[_P["strength_confidence"].value]["CodeValue"] == (
            _P[f"confidence_{v.strength.confidence}"].value)
    l2 = read["L2 vertebra"]
    assert {m["quantity"]["CodeValue"] for m in l2["measurementItems"]} >= {
        _P["failure_load_ctra"].value, _P["compressive_load"].value, codes.HEIGHT.value,
        _P["height_loss"].value, _P["sins_partial_total"].value, _P["lesion_volume"].value}
    muscle = read[muscle_text(labels.by_name("psoas_major_left"), "L2")]
    assert muscle["Laterality"]["CodeValue"] == labels.LEFT.value
    assert muscle["measurementMethod"]["CodeValue"] == _P["muscle_plane_method"].value
    (vbmd,) = [m for m in l2["measurementItems"]
               if m["quantity"]["CodeValue"] == _P["vbmd"].value]
    assert {p["derivationParameter"]["CodeValue"] for p in vbmd["measurementDerivationParameters"]
            } == {codes.ATTENUATION_COEFFICIENT.value, _P["calibration_slope"].value,
                  _P["calibration_intercept"].value}


# --- values, units, references and reasons -------------------------------------------------

def test_every_number_is_in_ucum(written: Written) -> None:
    units = {code_of(i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0])
             for i in walk(dcmread(written.sr).ContentSequence) if i.ValueType == "NUM"}
    assert {u.scheme for u in units} == {"UCUM"}
    assert {codes.MG_PER_CM3, codes.NEWTON, codes.SCORE, codes.PERCENT, codes.NO_UNITS,
            codes.MILLIMETER, codes.SQUARE_MILLIMETER, codes.MILLILITER, codes.HU_PER_MG_CM3,
            codes.KILOGRAM, codes.METER} <= units


def test_vertebra_groups_reference_their_segment(written: Written) -> None:
    seg = hd.seg.segread(written.seg)
    found = groups(written.sr)
    for v in written.spine.vertebrae:
        group = found[v.label.display]
        (ref,) = [i for i in group.ContentSequence if name_of(i).meaning == "Referenced Segment"]
        number = int(ref.ReferencedSOPSequence[0].ReferencedSegmentNumber)
        assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert seg.get_segment_description(number).segment_label == v.label.display


def check_vertebra(group: Dataset, v: VertebraAssessment, written: Written) -> None:
    """Every number of ``v`` in its group, or the reason it is missing."""
    g, loss = v.geometry, v.height_loss
    assert value_or_reason(group, _P["body_volume"]) == expected(g.body_volume_ml)
    for position, height, lost in ((codes.ANTERIOR, g.heights.anterior_mm, loss.anterior),
                                   (codes.MIDDLE, g.heights.middle_mm, loss.middle),
                                   (codes.POSTERIOR, g.heights.posterior_mm, loss.posterior)):
        assert value_or_reason(group, codes.HEIGHT, position) == expected(height)
        assert value_or_reason(group, _P["height_loss"], position) == expected(lost, 100)
    material = (_P["k2hpo4"] if written.spine.calibration.material.value == "K2HPO4"
                else codes.HYDROXYAPATITE)
    assert value_or_reason(group, _P["vbmd"], material) == expected(v.density.vbmd_mg_cm3)
    s = v.strength
    assert value_or_reason(group, _P["failure_load_ctra"]) == expected(s.ctra_failure_load_n)
    assert value_or_reason(group, _P["failure_load_density_area"]) == expected(
        s.density_area_failure_load_n)
    loads = {load.activity: load for load in v.loads}
    for phi in v.factors_of_risk:
        act = activity(written, phi.activity)
        assert value_or_reason(group, _P["compressive_load"], act) == expected(
            loads[phi.activity].compression_n)
        assert value_or_reason(group, _P["factor_of_risk"], act,
                               _P["failure_load_ctra"]) == expected(phi.phi)
    for component in v.sins.components:
        score = component.score
        assert value_or_reason(group, _P[f"sins_{component.name}"]) == expected(
            score if isinstance(score, Missing) else float(score))
    assert num(group, _P["sins_partial_total"]) == (v.sins.partial_total, codes.SCORE)


def test_each_vertebra_group_holds_the_assessment_numbers(written: Written) -> None:
    found = groups(written.sr)
    vertebrae = [name for name in found if name.endswith(" vertebra")]
    assert vertebrae == [v.label.display for v in written.spine.vertebrae]
    assert set(written.phantom.truth["levels_in_view"]) <= {v.level for v in
                                                           written.spine.vertebrae}
    for v in written.spine.vertebrae:
        check_vertebra(found[v.label.display], v, written)


def test_the_fractured_blastic_vertebra_reads_as_such(written: Written) -> None:
    l2 = groups(written.sr)["L2 vertebra"]
    model = {v.level: v for v in written.spine.vertebrae}["L2"]
    assert num(l2, _P["height_loss"], codes.ANTERIOR)[0] > 30  # 40 % wedge
    assert num(l2, _P["height_loss"], codes.ANTERIOR)[1] == codes.PERCENT
    assert num(l2, _P["vbmd"])[1] == codes.MG_PER_CM3
    assert num(l2, _P["failure_load_ctra"]) == (pytest.approx(
        model.strength.ctra_failure_load_n), codes.NEWTON)
    (lesion_type,) = items(l2, _P["lesion_type"])
    assert code_of(lesion_type.ConceptCodeSequence[0]) == _P["lesion_blastic"]
    assert num(l2, _P["lesion_volume"], _P["lesion_blastic"])[0] > 0.2
    (confidence,) = items(l2, _P["strength_confidence"])
    assert code_of(confidence.ConceptCodeSequence[0]) == _P["confidence_lower"]
    assert "blastic lesion" in text(l2, _P["confidence_reason"])
    phi = num(l2, _P["factor_of_risk"], activity(written, "flexion_30_5kg"))
    assert phi[1] == codes.NO_UNITS and phi[0] > num(
        l2, _P["factor_of_risk"], activity(written, "standing"))[0]
    assert text(l2, _P["sins_pain"]) == "missing (clinical): pain is a clinical input"


def test_truncated_vertebrae_say_why_their_numbers_are_missing(written: Written) -> None:
    found = groups(written.sr)
    truncated = [v for v in written.spine.vertebrae if v.geometry.truncated]
    assert truncated
    for v in truncated:
        group = found[v.label.display]
        assert text(group, _P["failure_load_ctra"]).startswith("missing (truncated)")
        for name in ACTIVITIES:
            assert text(group, _P["factor_of_risk"], activity(written, name)).startswith(
                "missing (truncated)")
        assert text(group, codes.HEIGHT, codes.ANTERIOR).startswith("missing (truncated)")


def test_without_muscles_and_lesions_the_reasons_are_named(vertebrae_only: Written) -> None:
    found = groups(vertebrae_only.sr)
    assert not [name for name in found if " at " in name]  # no muscle groups
    for v in vertebrae_only.spine.vertebrae:
        group = found[v.label.display]
        assert text(group, _P["lesion_volume"]) == missing_text(
            Missing("no-lesion-segmentation", "no lesion segmentation for this series"))
        for name in ACTIVITIES:
            assert text(group, _P["compressive_load"], activity(vertebrae_only, name)
                        ).split(":")[0] in ("missing (no-muscle-segmentation)",
                                            "missing (truncated)")
        (confidence,) = items(group, _P["strength_confidence"])
        assert code_of(confidence.ConceptCodeSequence[0]) == _P["confidence_unknown"]


def test_muscles_per_level_and_side_reference_their_segment(written: Written) -> None:
    seg = hd.seg.segread(written.seg)
    found = groups(written.sr)
    muscles = written.spine.muscles
    assert not isinstance(muscles, Missing) and len(muscles) >= 8
    for m in muscles:
        label = labels.by_name(f"{m.muscle}_{m.side}")
        group = found[muscle_text(label, m.level)]
        (ref,) = [i for i in group.ContentSequence if name_of(i).meaning == "Referenced Segment"]
        number = int(ref.ReferencedSOPSequence[0].ReferencedSegmentNumber)
        assert seg.get_segment_description(number).segment_label == label.display
        sites = [i for i in group.ContentSequence if name_of(i) == codes.FINDING_SITE]
        assert [code_of(s.ConceptCodeSequence[0]) for s in sites] == [
            label.type, labels.vertebra(m.level).type]
        (laterality,) = sites[0].ContentSequence
        assert code_of(laterality.ConceptCodeSequence[0]) == label.modifier
        assert num(group, codes.AREA) == (pytest.approx(m.csa_mm2), codes.SQUARE_MILLIMETER)
        assert num(group, codes.ATTENUATION_COEFFICIENT) == (pytest.approx(m.mean_hu),
                                                             codes.HOUNSFIELD_UNIT)
        assert num(group, codes.DISTANCE) == (pytest.approx(m.centroid_distance_mm),
                                              codes.MILLIMETER)
        assert num(group, _P["muscle_posterior_offset"])[0] == pytest.approx(m.posterior_mm)


def test_calibration_and_body_parameters_are_recorded(written: Written) -> None:
    found = report_evaluations(written.sr)
    (method,) = items(found, codes.CALIBRATION_METHOD)
    assert code_of(method.ConceptCodeSequence[0]) == _P["calibration_internal"]
    (material,) = items(found, _P["density_material"])
    assert code_of(material.ConceptCodeSequence[0]) == _P["k2hpo4"]
    assert text(found, codes.KVP) == "120 kV"
    assert text(found, _P["convolution_kernel"]) == "STANDARD"
    assert text(found, codes.BODY_WEIGHT) == "61 kg"
    assert text(found, codes.BODY_HEIGHT) == "1.64 m"
    (sex,) = items(found, codes.SUBJECT_SEX)
    assert code_of(sex.ConceptCodeSequence[0]) == codes.FEMALE
    assert text(found, _P["body_sources"]) == (
        "weight: DICOM PatientWeight; height: DICOM PatientSize; sex: DICOM PatientSex")


def test_vbmd_and_loads_carry_what_they_were_derived_from(written: Written) -> None:
    c = written.spine.calibration
    l1 = groups(written.sr)["L1 vertebra"]
    model = {v.level: v for v in written.spine.vertebrae}["L1"]
    (vbmd,) = items(l1, _P["vbmd"])
    assert parameters(vbmd) == {
        codes.ATTENUATION_COEFFICIENT: (pytest.approx(model.density.trabecular_mean_hu),
                                        codes.HOUNSFIELD_UNIT),
        _P["calibration_slope"]: (pytest.approx(c.slope_hu_per_mg_cm3), codes.HU_PER_MG_CM3),
        _P["calibration_intercept"]: (pytest.approx(c.intercept_hu), codes.HOUNSFIELD_UNIT)}
    standing = model.loads[0]
    assert not isinstance(standing.moment_arm_m, Missing)
    (load,) = items(l1, _P["compressive_load"], activity(written, standing.activity))
    assert parameters(load) == {
        codes.BODY_WEIGHT: (61.0, codes.KILOGRAM),
        codes.BODY_HEIGHT: (pytest.approx(1.64), codes.METER),
        _P["extensor_moment_arm"]: (pytest.approx(1000 * standing.moment_arm_m),
                                    codes.MILLIMETER)}


@pytest.mark.parametrize("value", [9.999999999999998, 99.99999999999997, 0.30000000000000004,
                                   -7.499999999999999, 1234.5678901234567])
def test_numeric_values_fit_their_16_character_ds(value: float) -> None:
    """pydicom writes 9.999999999999998 as "10.00000000000000" (17 characters, rejected by
    dciodvfy; it reached a delivered follow-up SR); the SR keeps 12 significant digits."""
    content = Content()
    content.number(codes.VOLUME, value, codes.MILLILITER,
                   parameters=[Parameter(codes.VOLUME, value, codes.MILLILITER)])
    [num] = content.measurements[0]
    [parameter] = [item for item in num.ContentSequence if item.ValueType == "NUM"]
    for item in (num, parameter):
        text = item.MeasuredValueSequence[0].NumericValue
        assert len(str(text)) <= 16 and len(format_number_as_ds(float(text))) <= 16
        assert float(text) == pytest.approx(value, rel=1e-11)
