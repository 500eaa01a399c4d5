"""The paraspinal muscles per level and side, one TID 1411 group each.

Each group references the muscle's SEG segment (the whole muscle) and holds what
:mod:`risk.muscles` measured in the plane perpendicular to the spine axis through the level's
body centroid: tracking identifier e.g. "Psoas major muscle, left at L2" and its own tracking
UID; finding type the muscle; finding sites the muscle with its laterality and the vertebra of
the level; measurement method "Lean tissue in the mid-body plane" (99SPMETS M-010); the muscle
model as algorithm; Area (SCT 42798000, mm2), mean attenuation (DCM 112031, derivation Mean,
HU), Distance of the muscle centroid from the body centroid (DCM 121206, mm) and its posterior
and left components (99SPMETS M-001, M-002, mm, signed; the posterior offset of the deep back
muscles is the extensor moment arm of the load model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from risk.muscles import MuscleMeasurement
from risk.objects import algorithm, concept, finding_site, referenced_segment
from risk.provenance import Provenance
from risk.segments import Segment
from risk.sr_items import Content
from spinemets import codes, labels

_P = codes.PRIVATE_SCHEME


def muscle_text(label: labels.Label, level: str) -> str:
    """Tracking identifier of a muscle measured at a level."""
    return f"{label.display} at {level}"


def muscle_group(m: MuscleMeasurement, number: int, segment: Segment, seg: Dataset,
                 provenance: Provenance
                 ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The group of one muscle at one level, referencing segment ``number`` of ``seg``."""
    label = segment.label
    out = Content()
    out.number(codes.AREA, m.csa_mm2, codes.SQUARE_MILLIMETER)
    out.number(codes.ATTENUATION_COEFFICIENT, m.mean_hu, codes.HOUNSFIELD_UNIT,
               derivation=codes.MEAN)
    out.number(codes.DISTANCE, m.centroid_distance_mm, codes.MILLIMETER)
    out.number(_P["muscle_posterior_offset"], m.posterior_mm, codes.MILLIMETER)
    out.number(_P["muscle_left_offset"], m.left_mm, codes.MILLIMETER)
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=segment.provenance.tracking_uid(f"{label.name}_{m.level}"),
            identifier=muscle_text(label, m.level)),
        referenced_segment=referenced_segment(seg, number, provenance),
        finding_category=concept(label.category),
        finding_type=concept(label.type),
        method=concept(_P["muscle_plane_method"]),
        finding_sites=[finding_site(label),
                       hd.sr.FindingSite(concept(labels.vertebra(m.level).type))],
        algorithm_id=algorithm(segment.provenance),
        measurements=out.measurements)
    # TID 1419 row 1: the method modifies the group (highdicom 0.28 writes CONTAINS).
    for item in group[0].ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == codes.MEASUREMENT_METHOD.value:
            item.RelationshipType = hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD.value
    return group


def muscle_groups(muscles: Sequence[MuscleMeasurement], segments: Mapping[str, tuple[int, Segment]],
                  seg: Dataset, provenance: Provenance
                  ) -> list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    """The groups of every muscle measured per level (cranial to caudal); ``segments`` maps
    catalogue names to their SEG segment number and segment."""
    found = []
    for m in muscles:
        number, segment = segments[f"{m.muscle}_{m.side}"]
        found.append(muscle_group(m, number, segment, seg, provenance))
    return found
