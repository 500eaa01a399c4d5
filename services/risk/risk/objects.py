"""Helpers shared by the SEG and SR writers."""

from __future__ import annotations

from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset

from risk.provenance import Provenance
from spinemets import codes, labels


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


def referenced_segment(seg: Dataset, number: int, provenance: Provenance
                       ) -> hd.sr.ReferencedSegment:
    """The reference of an SR group to segment ``number`` of ``seg``, made from the series of
    ``provenance``."""
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(provenance.series_instance_uid))


def algorithm(provenance: Provenance) -> hd.sr.AlgorithmIdentification:
    """The algorithm identification of the model of ``provenance``."""
    return hd.sr.AlgorithmIdentification(
        name=provenance.algorithm_name, version=provenance.model_version,
        family=concept(codes.ARTIFICIAL_INTELLIGENCE))


def finding_site(label: labels.Label) -> hd.sr.FindingSite:
    """The structure of ``label`` as a finding site, with its laterality if it has one."""
    return hd.sr.FindingSite(concept(label.type), laterality=None if label.modifier is None
                             else concept(label.modifier))
