"""The result objects of one series: the SEG of every segment found, the TID 1500 SR and,
with the spine assessment, the visual report (Encapsulated PDF and Secondary Capture pages,
:mod:`risk.report`).

The vertebra map decides whether there is anything to report; the muscle and lesion maps, when
their models ran, add segments (and the lesion type of every vertebra, :mod:`risk.lesion_type`,
with its lesion groups in the SR). The UIDs derive from every model whose results the objects
hold (:class:`~risk.provenance.Provenance`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset

from risk import lesion_type
from risk.change_over_time import SpineChange, change_columns
from risk.measure import VertebraMeasurement, check_same_grid
from risk.provenance import Provenance
from risk.report import build_report
from risk.report_table import chosen_activity
from risk.seg_writer import build_seg
from risk.settings import Settings
from risk.spine import SpineAssessment
from risk.sr_writer import build_sr
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap
from spinemets.v1 import longitudinal_pb2


def build_objects(study_uid: str, series_uid: str, volume: Volume, sources: Sequence[Dataset],
                  vertebra_map: LabelMap, vertebrae: Sequence[VertebraMeasurement],
                  muscles: LabelMap | None, lesion_map: LabelMap | None,
                  settings: Settings,
                  longitudinal: longitudinal_pb2.Longitudinal | None = None,
                  spine: SpineAssessment | None = None,
                  change: SpineChange | None = None) -> list[Dataset]:
    """The SEG and the SR of ``vertebrae`` (measured on ``vertebra_map``), with the muscles
    and lesions of the other maps, the comparison with the prior study if there is one, the
    risk service's assessment ``spine`` (None when it failed) and its ``change`` since the
    prior (:mod:`risk.change_over_time`); every map must lie on the volume's grid."""
    for other in (muscles, lesion_map):
        if other is not None:
            check_same_grid(volume.geometry, other.geometry)
    lesions = (None if lesion_map is None
               else lesion_type.analyse(vertebra_map, lesion_map, settings.lesion_types))
    provenance = Provenance(study_uid, series_uid, vertebra_map.model_name,
                            vertebra_map.model_version, vertebra_map.demo
                            ).with_maps(muscles, lesion_map)
    seg = build_seg(sources, volume.slice_instance_uids, vertebra_map, vertebrae, provenance,
                    settings.equipment, settings.seg_series_number, muscles=muscles,
                    lesions=lesions or (), lesion_map=lesion_map)
    sr = build_sr(sources, seg, vertebrae, provenance, settings.equipment,
                  settings.sr_series_number, muscles=muscles, lesions=lesions,
                  lesion_map=lesion_map, longitudinal=longitudinal, spine=spine,
                  change=change)
    report = ([] if spine is None else
              build_report(sources, volume, vertebra_map, lesions or (), spine, provenance,
                           settings, longitudinal,
                           None if change is None else change_columns(
                               change, chosen_activity(spine, settings.report.activity))))
    return [seg, sr, *report]
