"""Change since the prior study, on a phantom baseline and its follow-up with known truth.

Seeds 4_300_000.. are used by these tests only. The follow-up of seed 4_300_010 (T12-L3 in view,
1 mm voxels) has a new 35 % wedge fracture of T12, the blastic lesion of L1 and the lytic lesion
of L2 grown, and nothing else changed (no lesion appears or resolves). The truth label maps stand
in for the models; the densities are calibrated with the test scanner's phantom calibration.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from phantom import PhantomOptions, generate
from phantom.followup import FollowUp, follow_up
from phantom.options import FollowUpOptions
from risk.change_over_time import (
    Change,
    SpineChange,
    change_columns,
    compare,
    correspondences,
    spine_change,
)
from risk.method_settings import MethodSettings
from risk.provenance import Provenance
from risk.research_export import document
from risk.spine import SpineAssessment, assess_spine
from risk.sr_longitudinal import longitudinal_groups
from risk.values import Missing
from spinemets import codes, labels
from spinemets.v1 import longitudinal_pb2, volume_pb2

_P = codes.PRIVATE_SCHEME
FRACTURE = "T12"
FRACTION = 0.35
#: Levels whose whole body is in view in both studies.
WHOLE = ("T12", "L1", "L2", "L3")


@pytest.fixture(scope="module")
def pair() -> FollowUp:
    baseline = generate(PhantomOptions(
        seed=4_300_010, levels=("T12", "L3"), spacing=(1.0, 1.0, 1.0), matrix=160, lesions=2,
        lesion_kinds=("lytic", "blastic"), max_rotation_deg=5))
    return follow_up(baseline, FollowUpOptions(seed=1, new_lesions=0, resolved=0,
                                               compression=FRACTURE,
                                               compression_fraction=FRACTION))


def assessed(pair: FollowUp, make_headers: Callable[..., list[Dataset]],
             make_settings: Callable[..., MethodSettings], lesions: bool
             ) -> tuple[SpineAssessment, SpineAssessment]:
    """The prior's and the current study's assessment from the truth label maps."""
    return tuple(  # type: ignore[return-value]
        assess_spine(p.ct, p.vertebrae, p.muscles, p.lesions if lesions else None,
                     make_headers(PatientWeight=70, PatientSize=1.75, PatientSex="F"),
                     make_settings())
        for p in (pair.baseline, pair.phantom))


@pytest.fixture(scope="module")
def spines(pair: FollowUp, make_headers: Callable[..., list[Dataset]],
           make_settings: Callable[..., MethodSettings]
           ) -> tuple[SpineAssessment, SpineAssessment]:
    """Without lesion maps: the trabecular vBMD includes the lesions."""
    return assessed(pair, make_headers, make_settings, lesions=False)


@pytest.fixture(scope="module")
def change(pair: FollowUp, spines: tuple[SpineAssessment, SpineAssessment]) -> SpineChange:
    prior = pair.baseline
    return spine_change(*spines, prior.study_uid, prior.series_uid, {}, compared=False)


def level(change: SpineChange, name: str) -> Any:
    [found] = [c for c in change.levels if c.level == name]
    return found


def number(value: object) -> float:
    assert isinstance(value, float), value
    return value


def test_the_new_wedge_fracture_loses_anterior_height_of_its_size(
        pair: FollowUp, change: SpineChange) -> None:
    truth = pair.phantom.truth["compression"]
    assert (truth["level"], truth["kind"]) == (FRACTURE, "wedge")
    lost_mm = truth["height_before_mm"] - truth["anterior_height_mm"]  # 7.7 mm
    broken = level(change, FRACTURE)
    assert number(broken.height_anterior_mm.change) == pytest.approx(-lost_mm, abs=1.0)
    assert abs(number(broken.height_posterior_mm.change)) <= 1.0
    # height loss against the neighbours rises by about the fracture's 35 percentage points
    assert number(broken.height_loss_anterior_percent.change) == pytest.approx(
        100 * FRACTION, abs=7.0)
    assert number(broken.height_loss_anterior_percent.current) > 100 * FRACTION - 7
    for other in WHOLE:
        if other != FRACTURE:
            c = level(change, other)
            assert abs(number(c.height_anterior_mm.change)) <= 1.0, other
            assert abs(number(c.height_posterior_mm.change)) <= 1.0, other


def test_the_vbmd_of_a_vertebra_whose_lesion_grew_moves_with_the_lesion(
        pair: FollowUp, spines: tuple[SpineAssessment, SpineAssessment],
        change: SpineChange) -> None:
    grown = [lesion for lesion in pair.truth["lesions"] if lesion["change"] == "grown"]
    assert sorted((g["level"], g["type"]) for g in grown) == [("L1", "blastic"),
                                                             ("L2", "lytic")]
    slope = 1.25  # HU per mg/cm3 of the test scanner's phantom calibration
    current = {v.level: v for v in spines[1].vertebrae}
    for lesion in grown:
        name = lesion["level"]
        [drawn] = [d for d in pair.baseline.truth["lesions"] if d["level"] == name]
        lesion_hu = drawn["hu"][lesion["type"]]
        bone_hu = pair.baseline.truth["levels"][name]["trabecular_hu"]
        voxels = [int(((p.lesions.array > 0)
                       & (p.vertebrae.array == labels.vertebra(name).value)).sum())
                  for p in (pair.baseline, pair.phantom)]
        # the grown lesion voxels replace bone in the trabecular mean (an upper bound: some
        # lie within the cortical margin, which the trabecular region leaves out)
        expected = ((voxels[1] - voxels[0]) * (lesion_hu - bone_hu)
                    / current[name].density.trabecular_voxels / slope)
        found = number(level(change, name).vbmd_mg_cm3.change)
        assert np.sign(found) == np.sign(expected) == (1 if lesion["type"] == "blastic" else -1)
        assert 0.5 <= found / expected <= 1.2, (name, found, expected)
    assert abs(number(level(change, "L3").vbmd_mg_cm3.change)) < 1.0  # no lesion change


def test_with_lesion_maps_the_vbmd_of_the_bone_around_the_lesions_stays(
        pair: FollowUp, make_headers: Callable[..., list[Dataset]],
        make_settings: Callable[..., MethodSettings]) -> None:
    prior, current = assessed(pair, make_headers, make_settings, lesions=True)
    found = spine_change(prior, current, "1.2.3", "1.2.3.4", {}, compared=False)
    for name in ("L1", "L2"):
        assert abs(number(level(found, name).vbmd_mg_cm3.change)) < 1.0


def test_prior_current_change_and_percent_agree_with_both_assessments(
        spines: tuple[SpineAssessment, SpineAssessment], change: SpineChange) -> None:
    prior, current = ({v.level: v for v in s.vertebrae} for s in spines)
    assert [c.level for c in change.levels] == [v.level for v in spines[1].vertebrae]
    assert change.not_compared == ()
    assert change.strength_method == "ctra"
    assert change.prior_calibration == change.current_calibration == "phantom K2HPO4"
    for name in WHOLE:
        c = level(change, name)
        before, after = prior[name], current[name]
        assert (c.vbmd_mg_cm3.prior, c.vbmd_mg_cm3.current) == (
            before.density.vbmd_mg_cm3, after.density.vbmd_mg_cm3)
        s = c.strength_n
        assert (s.prior, s.current) == (before.strength.ctra_failure_load_n,
                                        after.strength.ctra_failure_load_n)
        assert number(s.percent) == pytest.approx(100 * number(s.change) / number(s.prior))
        assert c.height_middle_mm.percent is None  # heights: no relative change
        assert [f.activity for f in c.factors_of_risk] == [
            "standing", "standing_5kg", "flexion_30_5kg"]
        for f, b, a in zip(c.factors_of_risk, before.factors_of_risk, after.factors_of_risk,
                           strict=True):
            assert number(f.factor_of_risk.change) == pytest.approx(
                number(a.phi) - number(b.phi))
            assert f.factor_of_risk.percent is None


def test_a_value_missing_in_either_study_leaves_the_change_missing_with_its_reason(
        change: SpineChange) -> None:
    cut = level(change, "T11")  # cut by the border of the volume in both studies
    assert isinstance(cut.height_anterior_mm.change, Missing)
    assert cut.height_anterior_mm.change.reason == "truncated"
    assert cut.height_anterior_mm.change.detail.startswith("prior study: ")
    assert compare(2.0, Missing("no-body", "x")).change == Missing("no-body", "current study: x")
    assert compare(0.0, 5.0, relative=True).percent == Missing(
        "no-prior-value", "the prior value is not positive")
    assert compare(4.0, 5.0, relative=True) == Change(4.0, 5.0, 1.0, 25.0)


def test_a_level_assessed_in_one_study_only_is_listed_with_the_reason(
        spines: tuple[SpineAssessment, SpineAssessment]) -> None:
    prior, current = spines
    fewer = dataclasses.replace(prior, vertebrae=tuple(v for v in prior.vertebrae
                                                       if v.level != "L3"))
    found = spine_change(fewer, current, "1.2.3", "1.2.3.4", {}, compared=False)
    assert "L3" not in [c.level for c in found.levels]
    assert [(n.level, n.reason) for n in found.not_compared] == [("L3", "not-in-prior-study")]
    found = spine_change(current, fewer, "1.2.3", "1.2.3.4", {}, compared=False)
    assert [(n.level, n.reason) for n in found.not_compared] == [("L3",
                                                                  "not-in-current-study")]


def test_vbmd_is_not_compared_across_different_lesion_handling(
        pair: FollowUp, spines: tuple[SpineAssessment, SpineAssessment],
        make_headers: Callable[..., list[Dataset]],
        make_settings: Callable[..., MethodSettings]) -> None:
    with_lesions = assessed(pair, make_headers, make_settings, lesions=True)[0]
    found = spine_change(with_lesions, spines[1], "1.2.3", "1.2.3.4", {}, compared=False)
    vbmd = level(found, "L2").vbmd_mg_cm3
    assert isinstance(vbmd.prior, float) and isinstance(vbmd.current, float)
    assert isinstance(vbmd.change, Missing) and vbmd.change.reason == "lesion-exclusion-differs"
    assert vbmd.percent == vbmd.change


def comparison(prior_study: str) -> longitudinal_pb2.Longitudinal:
    """The registrar's verdict: L1 passed, L2 failed, T12 skipped, L3 not reported."""
    eye = np.eye(4).ravel().tolist()
    return longitudinal_pb2.Longitudinal(
        prior=volume_pb2.SeriesRef(study_instance_uid=prior_study,
                                   series_instance_uid=prior_study + ".1"),
        registrations=[
            longitudinal_pb2.VertebraRegistration(level="L1", prior_to_current=eye, dice=0.94,
                                                  hd95_mm=1.1, refined=True),
            longitudinal_pb2.VertebraRegistration(level="L2", prior_to_current=eye, dice=0.6,
                                                  hd95_mm=4.2, failed=True, refined=True,
                                                  problem="Dice 0.60 below 0.80")],
        skipped=[longitudinal_pb2.SkippedVertebra(level="T12", reason="truncated-in-prior")],
        changes=[longitudinal_pb2.VertebraChange(level="L1", prior_ml=0.1, current_ml=0.3,
                                                 change_ml=0.2, change_percent=200.0,
                                                 growing_lesions=1)])


def test_the_registrars_verdict_decides_which_changes_are_reliable(
        spines: tuple[SpineAssessment, SpineAssessment]) -> None:
    verdict = correspondences(comparison("1.2.3"))
    found = spine_change(*spines, "1.2.3", "1.2.3.1", verdict, compared=True)
    status = {c.level: (c.correspondence.registration, c.correspondence.reliable)
              for c in found.levels}
    assert status["L1"] == ("passed", True)
    assert status["L2"] == ("failed", False)
    assert level(found, "L2").correspondence.detail == "Dice 0.60 below 0.80"
    assert status["T12"] == ("skipped", False)
    assert status["L3"] == ("not-registered", False)
    unregistered = spine_change(*spines, "1.2.3", "1.2.3.1", {}, compared=False)
    assert {c.correspondence.registration for c in unregistered.levels} == {"not-compared"}


def test_the_change_columns_of_the_report(change: SpineChange) -> None:
    columns = change_columns(change, activity="standing")
    broken = columns[FRACTURE]
    assert list(broken) == ["ΔvBMD mg/cm³", "ΔH a/m/p mm", "Δ loss a/m/p pp", "Δ strength N",
                            "ΔΦ"]
    ha = number(level(change, FRACTURE).height_anterior_mm.change)
    assert str(broken["ΔH a/m/p mm"]).startswith(f"{ha:+.1f}/")
    strength = level(change, "L2").strength_n
    assert columns["L2"]["Δ strength N"] == (
        f"{number(strength.change):+.0f} ({number(strength.percent):+.1f}%)")
    [phi] = [f.factor_of_risk.change for f in level(change, "L2").factors_of_risk
             if f.activity == "standing"]
    assert columns["L2"]["ΔΦ"] == f"{number(phi):+.3f}"
    cut = columns["T11"]["ΔH a/m/p mm"]
    assert isinstance(cut, Missing) and cut.reason == "truncated"
    every = change_columns(change)["L1"]  # every activity
    assert list(every)[4:] == ["ΔΦ standing", "ΔΦ standing_5kg", "ΔΦ flexion_30_5kg"]


def test_the_research_document_has_a_change_section(
        spines: tuple[SpineAssessment, SpineAssessment], change: SpineChange) -> None:
    section = json.loads(json.dumps(document(spines[1], change)))["change"]
    assert section["prior"]["study_instance_uid"] == change.prior_study_uid
    assert section["activities"] == ["standing", "standing_5kg", "flexion_30_5kg"]
    [l2] = [c for c in section["levels"] if c["level"] == "L2"]
    assert l2["vbmd_mg_cm3"]["change"] == pytest.approx(
        number(level(change, "L2").vbmd_mg_cm3.change))
    assert set(l2["strength_n"]) == {"prior", "current", "change", "percent"}
    assert l2["correspondence"] == {"registration": "not-compared",
                                    "detail": "no registration with the prior study",
                                    "reliable": False}
    [t11] = [c for c in section["levels"] if c["level"] == "T11"]
    assert t11["height_anterior_mm"]["change"]["missing"] == "truncated"
    assert document(spines[1])["change"] is None  # a baseline
    assert document(spines[1], Missing("prior-not-assessed", "x"))["change"] == {
        "missing": "prior-not-assessed", "detail": "x"}


def items(group: Any, key: str) -> list[Dataset]:
    code = _P[key]
    return [item for item in group[0].ContentSequence
            if item.ConceptNameCodeSequence[0].CodeValue == code.value]


def modifiers(item: Dataset) -> dict[str, str]:
    return {m.ConceptNameCodeSequence[0].CodeValue: m.ConceptCodeSequence[0].CodeValue
            for m in item.get("ContentSequence", []) if m.RelationshipType == "HAS CONCEPT MOD"}


def value(item: Dataset, unit: str) -> float:
    """The NUM item's value, checking its UCUM unit."""
    assert item.ValueType == "NUM"
    measured = item.MeasuredValueSequence[0]
    assert measured.MeasurementUnitsCodeSequence[0].CodeValue == unit
    return float(measured.NumericValue)


def test_the_sr_groups_carry_the_change_beside_the_registration(
        change: SpineChange, spines: tuple[SpineAssessment, SpineAssessment],
        provenance: Provenance) -> None:
    longitudinal = comparison(change.prior_study_uid)
    found = spine_change(*spines, change.prior_study_uid, change.prior_series_uid,
                         correspondences(longitudinal), compared=True)
    seg = Dataset()  # the groups need only the SEG's identity and each level's segment number
    seg.SOPClassUID, seg.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.3.4.5"
    segments = {lv: n for n, lv in enumerate(labels.LEVELS, start=1)}
    groups = {str(g.tracking_identifier).split()[0]: g
              for g in longitudinal_groups(longitudinal, provenance, seg, segments, found)}
    assert list(groups) == [lv for lv in labels.LEVELS if lv in
                            {c.level for c in found.levels}]  # T10..L4, cranial to caudal
    l2 = groups["L2"]
    [vbmd] = items(l2, "vbmd_change")
    assert value(vbmd, "mg/cm3") == pytest.approx(number(level(found, "L2").vbmd_mg_cm3.change))
    [strength] = items(l2, "failure_load_prior")
    assert value(strength, "N") == pytest.approx(number(level(found, "L2").strength_n.prior))
    [reliable] = items(l2, "change_reliable")
    assert reliable.ConceptCodeSequence[0].CodeValue == codes.NO.value  # registration failed
    [failed] = items(l2, "registration_failed")
    assert failed.ConceptCodeSequence[0].CodeValue == codes.YES.value
    topographical = codes.TOPOGRAPHICAL_MODIFIER.value
    heights = {modifiers(i)[topographical]: value(i, "mm")
               for i in items(groups[FRACTURE], "height_change")}
    assert heights[codes.ANTERIOR.value] == pytest.approx(
        number(level(found, FRACTURE).height_anterior_mm.change))
    phis = {modifiers(i)[_P["activity"].value]: value(i, "1")
            for i in items(groups["L1"], "factor_of_risk_change")}
    assert phis == pytest.approx({f.activity: number(f.factor_of_risk.change)
                                  for f in level(found, "L1").factors_of_risk})
    assert list(phis) == ["standing", "standing_5kg", "flexion_30_5kg"]
    [reliable] = items(groups["L1"], "change_reliable")
    assert reliable.ConceptCodeSequence[0].CodeValue == codes.YES.value
    assert value(items(groups["L1"], "lesion_volume_change")[0], "ml") == pytest.approx(0.2)
    # a change missing in a study is TEXT naming its reason
    [cut] = [i for i in items(groups["T11"], "height_change")
             if modifiers(i)[topographical] == codes.ANTERIOR.value]
    assert cut.ValueType == "TEXT" and cut.TextValue.startswith("missing (truncated)")
    prior = [str(i.UID) for g in groups.values() for i in items(g, "prior_study")]
    assert prior == [change.prior_study_uid] * len(groups)
