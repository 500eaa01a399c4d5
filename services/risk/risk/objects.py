"""Helpers shared by the SEG and SR writers."""

from __future__ import annotations

from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset

from spinemets import codes


def concept(code: codes.Code) -> hd.sr.CodedConcept:
    """The highdicom form of a catalogue or standard code."""
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning)


def content_dates(source: Dataset) -> dict[str, Any]:
    """Content Date and Time of a result: those of the source study, so that re-running a
    series gives the same content; empty when the study has no date (highdicom then uses now).
    """
    if not source.get("StudyDate"):
        return {}
    return {"content_date": source.StudyDate, "content_time": source.get("StudyTime") or None}
