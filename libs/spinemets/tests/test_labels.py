"""The label catalogue: unique values and names, codes as published."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from spinemets import labels

SHARED_CODES = (Path(__file__).parents[3]
                / "../shared/data/codes/totalsegmentator_snomed_mapping.csv")


def test_values_and_names_are_unique() -> None:
    assert len({label.value for label in labels.CATALOGUE}) == len(labels.CATALOGUE)
    assert len({label.name for label in labels.CATALOGUE}) == len(labels.CATALOGUE)


def test_vertebra_values_follow_verse_numbering() -> None:
    assert labels.vertebra("T1").value == 8
    assert labels.vertebra("T12").value == 19
    assert labels.vertebra("L1").value == 20
    assert labels.vertebra("L5").value == 24
    assert [label.name for label in labels.in_group(labels.Group.VERTEBRA)] == [
        f"vertebra_{level}" for level in labels.LEVELS]


def test_vertebra_codes_match_totalsegmentator_mapping() -> None:
    if not SHARED_CODES.is_file():
        pytest.skip("../shared/data/codes is not beside the checkout")
    with SHARED_CODES.open() as fh:
        rows = {row["Structure"]: row for row in csv.DictReader(fh)}
    for level in labels.LEVELS:
        row = rows[f"vertebrae_{level}"]
        label = labels.vertebra(level)
        assert label.type.value == row["SegmentedPropertyTypeCodeSequence.CodeValue"]
        assert label.category.value == row["SegmentedPropertyCategoryCodeSequence.CodeValue"]
    assert labels.by_name("sacrum").type.value == rows["sacrum"][
        "SegmentedPropertyTypeCodeSequence.CodeValue"]
    autochthon = rows["autochthon_left"]
    left = labels.by_name("deep_back_muscle_left")
    assert left.type.value == autochthon["SegmentedPropertyTypeCodeSequence.CodeValue"]
    assert left.modifier is not None
    assert left.modifier.value == autochthon["SegmentedPropertyTypeModifierCodeSequence.CodeValue"]


def test_lesions_are_neoplasms_with_private_type_modifier() -> None:
    for label in labels.in_group(labels.Group.LESION):
        assert label.category.value == "49755003"
        assert label.type.value == "108369006"
        assert label.modifier is not None and label.modifier.scheme == "99SPMETS"


def test_unknown_names_are_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="vertebra_C3"):
        labels.by_name("vertebra_C3")
    with pytest.raises(KeyError, match="999"):
        labels.by_value(999)
    labels.check_names(["vertebra_T1", "sacrum"])
    with pytest.raises(ValueError, match="'vertebra_C3' is not in the label catalogue"):
        labels.check_names(["vertebra_T1", "vertebra_C3"])
