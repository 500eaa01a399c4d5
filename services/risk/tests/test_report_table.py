"""The report's change table and settings: further per-level columns, footnotes, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from risk.report_table import CHANGE_COLUMNS, DASH, change_table, study_date
from risk.settings import Settings
from risk.values import Missing
from spinemets.v1 import longitudinal_pb2


def comparison() -> longitudinal_pb2.Longitudinal:
    return longitudinal_pb2.Longitudinal(
        registrations=[longitudinal_pb2.VertebraRegistration(level=level, dice=0.9, hd95_mm=1.5,
                                                             refined=True)
                       for level in ("L1", "L2", "L3")],
        changes=[longitudinal_pb2.VertebraChange(level="L1", prior_ml=0.0, current_ml=0.0),
                 longitudinal_pb2.VertebraChange(level="L2", prior_ml=2.0, current_ml=1.0,
                                                 change_ml=-1.0, change_percent=-50.0,
                                                 resolved_lesions=1)])


def test_further_change_columns_follow_the_lesion_change() -> None:
    no_prior = Missing("no-prior-risk", "the prior has no factor of risk")
    table = change_table(comparison(), {
        "L1": {"vBMD change\nmg/cm³": "-12", "Φ change": no_prior},
        "L2": {"Φ change": "+0.05"}})
    assert table.columns == (*CHANGE_COLUMNS, "vBMD change\nmg/cm³", "Φ change")
    l1, l2, l3 = table.rows
    assert l1[-2] == "-12" and l1[-1].startswith(DASH)
    assert l2[-2].startswith(DASH) and l2[-1] == "+0.05"
    assert l2[4:11] == ("2.00", "1.00", "-1.00", "-50", "0", "1", "0")
    assert l3[-1] == l3[-2] and l3[4].startswith(DASH)  # no change and no further values
    assert l1[7] == DASH + "¹"  # per cent of no prior lesion volume
    assert table.notes == (
        "¹ no-prior-lesion: no lesion volume in the prior",
        "² no-prior-risk: the prior has no factor of risk",
        "³ not-computed: not computed for this vertebra",
        "⁴ no-lesion-change: no lesion change for this vertebra")


def test_without_lesion_maps_the_change_says_why() -> None:
    message = comparison()
    del message.changes[:]
    message.changes_omitted = "the prior has no lesion segmentation"
    table = change_table(message)
    assert table.columns == CHANGE_COLUMNS
    assert {cell for row in table.rows for cell in row[4:]} == {DASH + "¹"}
    assert table.notes == ("¹ no-lesion-change: the prior has no lesion segmentation",)


def test_study_dates_read_as_iso_dates() -> None:
    assert study_date("20231201") == "2023-12-01"
    assert study_date("") == ""


@pytest.mark.parametrize(("report", "message"), [
    ({"colour_map": "no-such-map"}, "unknown matplotlib colour map"),
    ({"activity": "running"}, "report.activity 'running' is not one of"),
    ({"phi_range": (1.0, 0.5)}, "phi_range must be increasing"),
])
def test_report_settings_are_checked(report: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate({"report": report})
