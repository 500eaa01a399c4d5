"""TID 1500 Measurement Report of the vertebrae in a Comprehensive 3D SR, written with highdicom.

One TID 1411 Volumetric ROI measurement group per vertebra: tracking identifier and UID (the
same as the SEG segment's), finding category and type from the catalogue, finding site (the
vertebra), the algorithm, the referenced SEG segment (segment ``i + 1`` for
``measurements[i]``, as written by :mod:`risk.seg_writer`) and two measurements: Volume
(SCT 118565006, mL) and mean attenuation (DCM 112031 Attenuation Coefficient, derivation
SCT 373098007 Mean, UCUM ``[hnsf'U]``, as 3D Slicer writes it). The observer is the model
(a device); the document is unverified and preliminary.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from risk.measure import VertebraMeasurement
from risk.objects import concept, content_dates
from risk.provenance import Provenance
from risk.settings import Equipment
from spinemets import codes


def measurement_group(number: int, m: VertebraMeasurement, seg: Dataset,
                      provenance: Provenance
                      ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The TID 1411 group of one vertebra, referencing segment ``number`` of ``seg``."""
    site = concept(m.label.type)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=provenance.tracking_uid(m.label.name), identifier=m.label.display),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(provenance.series_instance_uid)),
        finding_category=concept(m.label.category),
        finding_type=site,
        finding_sites=[hd.sr.FindingSite(site)],
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=provenance.algorithm_name, version=provenance.model_version,
            family=concept(codes.ARTIFICIAL_INTELLIGENCE)),
        measurements=[
            hd.sr.Measurement(name=concept(codes.VOLUME), value=m.volume_ml,
                              unit=concept(codes.MILLILITER)),
            hd.sr.Measurement(name=concept(codes.ATTENUATION_COEFFICIENT), value=m.mean_hu,
                              unit=concept(codes.HOUNSFIELD_UNIT),
                              derivation=concept(codes.MEAN)),
        ],
    )


def build_sr(sources: Sequence[Dataset], seg: Dataset,
             measurements: Sequence[VertebraMeasurement], provenance: Provenance,
             equipment: Equipment, series_number: int) -> hd.sr.Comprehensive3DSR:
    """The SR of ``measurements``, whose segments are those of ``seg`` over ``sources``."""
    if not measurements:
        raise ValueError("a measurement report needs at least one measurement group")
    observer = hd.sr.ObserverContext(
        observer_type=concept(codes.DEVICE),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=provenance.device_uid, name=provenance.algorithm_name,
            manufacturer_name=equipment.manufacturer, model_name=provenance.model_name[:64]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=concept(codes.CT_UNSPECIFIED_BODY_REGION),
        imaging_measurements=[measurement_group(number, m, seg, provenance)
                              for number, m in enumerate(measurements, start=1)],
    )
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
