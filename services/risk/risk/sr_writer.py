"""TID 1500 Measurement Report of the vertebrae and lesions in a Comprehensive 3D SR (highdicom).

One TID 1411 Volumetric ROI measurement group per vertebra: tracking identifier and UID (the
same as the SEG segment's), finding category and type from the catalogue, finding site (the
vertebra), the algorithm, the referenced SEG segment (segment ``i + 1`` for
``measurements[i]``, as written by :mod:`risk.seg_writer`) and two measurements: Volume
(SCT 118565006, mL) and mean attenuation (DCM 112031 Attenuation Coefficient, derivation
SCT 373098007 Mean, UCUM ``[hnsf'U]``, as 3D Slicer writes it). When the lesion model ran,
each vertebra group also holds the vertebra's lesion type (:mod:`risk.lesion_type`) as a
qualitative evaluation: concept "Metastatic lesion type" (private scheme 99SPMETS L-100),
value Lytic / Blastic / Mixed (99SPMETS L-001..L-003) or None (SCT 260413007).

Then one group per further segment of the SEG (:mod:`risk.segments`), with its tracking
identifier and UID, category and type, the model that found it and its Volume (mL): each muscle
(finding site the muscle with its laterality), and each lesion segment of one vertebra and type
(finding site the vertebra, the lesion type as qualitative evaluation). The observer is the
vertebra model (a device); the document is unverified and preliminary.

With the risk service's assessment (:class:`~risk.spine.SpineAssessment`), each vertebra group
also holds its fracture-risk numbers (:mod:`risk.sr_vertebra`), each muscle is reported per
level and side in groups of its own (:mod:`risk.sr_muscles`), and the report's Qualitative
Evaluations container records the density calibration and the body parameters
(:mod:`risk.sr_context`); values that are missing are TEXT items naming the reason
(:mod:`risk.sr_items`).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from risk.change_over_time import SpineChange
from risk.lesion_type import VertebraLesions
from risk.measure import VertebraMeasurement
from risk.objects import algorithm, concept, content_dates, finding_site, referenced_segment
from risk.provenance import Provenance
from risk.segments import Segment, plan_segments
from risk.settings import Equipment
from risk.spine import SpineAssessment
from risk.sr_context import context_container
from risk.sr_items import Content, measurement
from risk.sr_longitudinal import longitudinal_groups
from risk.sr_muscles import muscle_groups
from risk.sr_vertebra import vertebra_content
from risk.values import Missing
from spinemets import codes
from spinemets.labelmaps import LabelMap
from spinemets.v1 import longitudinal_pb2


def lesion_type_evaluation(lesions: VertebraLesions | None) -> hd.sr.QualitativeEvaluation:
    """The lesion type of a vertebra (None when it has no lesion of the minimum size)."""
    value = (codes.NONE if lesions is None or lesions.type is None
             else codes.PRIVATE_SCHEME[f"lesion_{lesions.type}"])
    return hd.sr.QualitativeEvaluation(concept(codes.PRIVATE_SCHEME["lesion_type"]),
                                       concept(value))


def measurement_group(number: int, m: VertebraMeasurement, seg: Dataset,
                      provenance: Provenance,
                      lesion_type: hd.sr.QualitativeEvaluation | None = None,
                      risk: Content | None = None
                      ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The TID 1411 group of one vertebra, referencing segment ``number`` of ``seg``, with
    its fracture-risk content ``risk`` if there is one."""
    site = concept(m.label.type)
    risk = risk or Content()
    evaluations = [*([] if lesion_type is None else [lesion_type]), *risk.evaluations]
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=provenance.tracking_uid(m.label.name), identifier=m.label.display),
        referenced_segment=referenced_segment(seg, number, provenance),
        finding_category=concept(m.label.category),
        finding_type=site,
        finding_sites=[hd.sr.FindingSite(site)],
        algorithm_id=algorithm(provenance),
        measurements=[
            measurement(codes.VOLUME, m.volume_ml, codes.MILLILITER),
            measurement(codes.ATTENUATION_COEFFICIENT, m.mean_hu, codes.HOUNSFIELD_UNIT,
                        codes.MEAN),
            *risk.measurements,
        ],
        qualitative_evaluations=evaluations or None,
    )
    risk.append_texts(group)
    return group


def segment_group(number: int, segment: Segment, seg: Dataset, provenance: Provenance
                  ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The TID 1411 group of a muscle or lesion segment: its volume (and a lesion's type)."""
    label = segment.label
    if segment.region is not None:
        site = hd.sr.FindingSite(concept(segment.region.type))
        evaluations = [hd.sr.QualitativeEvaluation(concept(codes.PRIVATE_SCHEME["lesion_type"]),
                                                   concept(codes.PRIVATE_SCHEME[label.name]))]
    else:
        site = finding_site(label)
        evaluations = None
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=segment.tracking_uid,
                                                     identifier=segment.text),
        referenced_segment=referenced_segment(seg, number, provenance),
        finding_category=concept(label.category),
        finding_type=concept(label.type),
        finding_sites=[site],
        algorithm_id=algorithm(segment.provenance),
        measurements=[measurement(codes.VOLUME, segment.volume_ml, codes.MILLILITER)],
        qualitative_evaluations=evaluations,
    )


def build_sr(sources: Sequence[Dataset], seg: Dataset,
             measurements: Sequence[VertebraMeasurement], provenance: Provenance,
             equipment: Equipment, series_number: int, *, muscles: LabelMap | None = None,
             lesions: Sequence[VertebraLesions] | None = None,
             lesion_map: LabelMap | None = None,
             longitudinal: longitudinal_pb2.Longitudinal | None = None,
             spine: SpineAssessment | None = None,
             change: SpineChange | None = None) -> hd.sr.Comprehensive3DSR:
    """The SR of the segments of ``seg`` over ``sources``, planned from the same arguments as
    :func:`risk.seg_writer.build_seg`.

    ``lesions``: the lesion-type results of ``lesion_map`` (None when no lesion model ran);
    ``longitudinal``: the comparison with the prior study (:mod:`risk.sr_longitudinal`);
    ``spine``: the risk assessment of the series (None when it failed).
    """
    if not measurements:
        raise ValueError("a measurement report needs at least one measurement group")
    by_level = {v.vertebra.name: v for v in lesions or ()}
    others = plan_segments(measurements, provenance, muscles, lesions or (),
                           lesion_map)[len(measurements):]
    numbered = list(enumerate(others, start=len(measurements) + 1))
    risk = {} if spine is None else {v.level: vertebra_content(v, spine) for v in spine.vertebrae}
    per_level = () if spine is None or isinstance(spine.muscles, Missing) else spine.muscles
    observer = hd.sr.ObserverContext(
        observer_type=concept(codes.DEVICE),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=provenance.device_uid, name=provenance.algorithm_name,
            manufacturer_name=equipment.manufacturer, model_name=provenance.model_name[:64]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=concept(codes.CT_UNSPECIFIED_BODY_REGION),
        imaging_measurements=[
            *(measurement_group(number, m, seg, provenance,
                                None if lesions is None else
                                lesion_type_evaluation(by_level.get(m.label.name)),
                                risk.get(m.level))
              for number, m in enumerate(measurements, start=1)),
            *(segment_group(number, segment, seg, provenance)
              for number, segment in numbered),
            *muscle_groups(per_level, {s.label.name: (n, s) for n, s in numbered}, seg,
                           provenance),
            *longitudinal_groups(longitudinal, provenance, seg,
                                 {m.level: n for n, m in enumerate(measurements, start=1)},
                                 change)],
    )
    if spine is not None:
        report[0].ContentSequence.append(context_container(spine))
    return hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg],
        content=report,
        series_instance_uid=provenance.sr_series_uid,
        series_number=series_number,
        sop_instance_uid=provenance.sr_instance_uid,
        instance_number=1,
        manufacturer=equipment.manufacturer,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=provenance.describe("Vertebra measurements"),
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number=equipment.device_serial_number,
        **content_dates(sources[0]),
    )
