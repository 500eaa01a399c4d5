"""Assessment of one series: measure the vertebrae, write SEG and SR, store them in the outbox.

When no vertebra T1-L5 is found, no object is written: a SEG needs at least one segment and a
TID 1500 report at least one measurement group, and an empty or placeholder object in the PACS
would look like a result. The outbox entry then holds only ``measurements.json`` with no
vertebrae and no objects, the response lists none, and Deliver has nothing to send; the job's
result says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from risk.measure import VertebraMeasurement, check_same_grid, measure_vertebrae
from risk.outbox import Outbox, StoredObject
from risk.provenance import Provenance
from risk.seg_writer import build_seg
from risk.settings import Settings
from risk.sr_writer import build_sr
from spinemets import labels, logs
from spinemets.errors import InputError
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    """What Assess returns: measurements (segment ``i + 1`` is ``vertebrae[i]``) and objects."""

    vertebrae: tuple[VertebraMeasurement, ...]
    objects: tuple[StoredObject, ...]


def vertebra_map(label_maps: Sequence[LabelMap]) -> LabelMap | None:
    """The one label map holding vertebrae, or None when no map names any vertebra."""
    found = [m for m in label_maps
             if any(labels.by_name(name).group is labels.Group.VERTEBRA
                    for name in m.labels.values())]
    if len(found) > 1:
        raise InputError(f"{len(found)} label maps hold vertebrae; expected one",
                         reason="ambiguous-label-maps")
    return found[0] if found else None


def assess(study_uid: str, series_uid: str, volume: Volume, sources: Sequence[Dataset],
           label_maps: Sequence[LabelMap], settings: Settings, outbox: Outbox,
           prior: tuple[str, str] | None = None) -> Assessment:
    """Measure, write the SEG and SR (if any vertebra is found) and store them durably.

    ``sources`` are the instance headers of the series, ``prior`` the (study, series) UIDs of
    the baseline study if there is one (recorded, not yet compared).
    """
    label_map = vertebra_map(label_maps)
    vertebrae: tuple[VertebraMeasurement, ...] = ()
    objects: list[Dataset] = []
    if label_map is not None:
        check_same_grid(volume.geometry, label_map.geometry)
        vertebrae = measure_vertebrae(volume.array, label_map)
    if label_map is not None and vertebrae:
        provenance = Provenance(study_uid, series_uid, label_map.model_name,
                                label_map.model_version, label_map.demo)
        seg = build_seg(sources, volume.slice_instance_uids, label_map, vertebrae, provenance,
                        settings.equipment, settings.seg_series_number)
        sr = build_sr(sources, seg, vertebrae, provenance, settings.equipment,
                      settings.sr_series_number)
        objects = [seg, sr]
    else:
        log.warning("no vertebra T1-L5 found: no SEG or SR written",
                    extra=logs.fields(reason="no-vertebrae"))
    entry = outbox.put(series_uid, objects, _record(study_uid, series_uid, label_map, vertebrae,
                                                    prior))
    return Assessment(vertebrae, entry.objects)


def _record(study_uid: str, series_uid: str, label_map: LabelMap | None,
            vertebrae: Sequence[VertebraMeasurement], prior: tuple[str, str] | None
            ) -> dict[str, Any]:
    return {
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "model": None if label_map is None else {
            "name": label_map.model_name, "version": label_map.model_version,
            "demo": label_map.demo},
        "prior": None if prior is None else {
            "study_instance_uid": prior[0], "series_instance_uid": prior[1]},
        "vertebrae": [
            {"level": m.level, "segment_number": n, "voxels": m.voxels,
             "volume_ml": m.volume_ml, "mean_hu": m.mean_hu}
            for n, m in enumerate(vertebrae, start=1)],
    }
