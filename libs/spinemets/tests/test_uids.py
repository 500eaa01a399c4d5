"""Deterministic result UIDs."""

from __future__ import annotations

from pydicom.uid import UID

from spinemets.uids import derived_uid


def test_same_parts_same_uid_and_valid() -> None:
    a = derived_uid("1.2.3", "vertebrae", "1", "seg")
    assert a == derived_uid("1.2.3", "vertebrae", "1", "seg")
    assert UID(a).is_valid and len(a) <= 64


def test_any_changed_part_changes_the_uid() -> None:
    base = derived_uid("1.2.3", "vertebrae", "1", "seg")
    assert base != derived_uid("1.2.3", "vertebrae", "2", "seg")
    assert base != derived_uid("1.2.3", "vertebrae", "1", "sr")
    assert derived_uid("a", "bc") != derived_uid("ab", "c")
