"""Assessment of one series: measure the vertebrae, write SEG and SR, store them in the outbox.

Besides volume and mean HU (in the SEG/SR), :func:`risk.spine.assess_spine` computes the
calibrated density, body geometry, muscles, strength, loads, factors of risk and SINS whenever
the label maps hold the structures they need; they go into ``measurements.json`` as its
``risk`` section (the research export document, :mod:`risk.research_export`). A failure there
is logged and recorded, and does not hold back the SEG and SR.

For a follow-up (a prior study named in the request), the prior is assessed the same way and
the change of every vertebra since it (:mod:`risk.change_over_time`) goes into the SR's
longitudinal section and the ``change`` section of the ``risk`` document; a prior that cannot
be assessed leaves the change missing, with the reason, and holds back nothing else.

When no vertebra T1-L5 is found, no object is written: a SEG needs at least one segment and a
TID 1500 report at least one measurement group, and an empty or placeholder object in the PACS
would look like a result. The outbox entry then holds only ``measurements.json`` with no
vertebrae and no objects, the response lists none, and Deliver has nothing to send; the job's
result says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from risk.change_over_time import SpineChange, correspondences, spine_change
from risk.measure import VertebraMeasurement, check_same_grid, measure_vertebrae
from risk.outbox import Outbox, StoredObject
from risk.research_export import document
from risk.results import build_objects
from risk.settings import Settings
from risk.spine import SpineAssessment, assess_spine
from risk.values import Missing
from spinemets import labels, logs
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap, of_group
from spinemets.v1 import longitudinal_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    """What Assess returns: measurements (segment ``i + 1`` is ``vertebrae[i]``), objects and
    the spine assessment (None when no vertebra was found)."""

    vertebrae: tuple[VertebraMeasurement, ...]
    objects: tuple[StoredObject, ...]
    spine: SpineAssessment | RiskFailure | None = None


@dataclass(frozen=True)
class RiskFailure:
    """Why the spine assessment of a series failed (recorded; the SEG and SR still go out)."""

    detail: str

    def record(self) -> dict[str, Any]:
        """The ``risk`` section of the record for a failed assessment."""
        return {"missing": "risk-failed", "detail": self.detail}


def spine_of(volume: Volume, vertebrae: LabelMap, label_maps: Sequence[LabelMap],
             sources: Sequence[Dataset], settings: Settings) -> SpineAssessment:
    """The spine assessment of a series with the muscles and lesions of ``label_maps``."""
    muscles = of_group(label_maps, labels.Group.MUSCLE)
    lesions = of_group(label_maps, labels.Group.LESION)
    for other in (vertebrae, muscles, lesions):
        if other is not None:
            check_same_grid(volume.geometry, other.geometry)
    return assess_spine(volume, vertebrae, muscles, lesions, sources, settings.methods,
                        settings.lesion_types)


def assess_risk(volume: Volume, vertebrae: LabelMap, label_maps: Sequence[LabelMap],
                sources: Sequence[Dataset], settings: Settings) -> SpineAssessment | RiskFailure:
    """The spine assessment of the series, or why it failed."""
    try:
        return spine_of(volume, vertebrae, label_maps, sources, settings)
    except Exception as exc:  # a failed estimate must not hold back SEG and SR
        log.exception("risk assessment failed", extra=logs.fields(reason="risk-failed"))
        return RiskFailure(f"{type(exc).__name__}: {exc}")


def change_since(spine: SpineAssessment, prior: tuple[str, str],
                 longitudinal: longitudinal_pb2.Longitudinal | None,
                 prior_spine: Callable[[], SpineAssessment] | None) -> SpineChange | Missing:
    """The change since the prior study ``prior`` (study, series UIDs), assessed by
    ``prior_spine``, or why it is missing."""
    if prior_spine is None:
        return Missing("prior-not-assessed", "the prior study is not available")
    try:
        before = prior_spine()
    except Exception as exc:  # the change is missing; the rest of the results go out
        log.exception("the prior study could not be assessed",
                      extra=logs.fields(reason="prior-not-assessed"))
        return Missing("prior-not-assessed", f"{type(exc).__name__}: {exc}")
    return spine_change(before, spine, *prior, correspondences(longitudinal),
                        compared=longitudinal is not None)


def assess(study_uid: str, series_uid: str, volume: Volume, sources: Sequence[Dataset],
           label_maps: Sequence[LabelMap], settings: Settings, outbox: Outbox,
           prior: tuple[str, str] | None = None,
           longitudinal: longitudinal_pb2.Longitudinal | None = None,
           prior_spine: Callable[[], SpineAssessment] | None = None) -> Assessment:
    """Measure, write the SEG and SR (if any vertebra is found) and store them durably.

    ``sources`` are the instance headers of the series, ``prior`` the (study, series) UIDs of
    the baseline study if there is one, ``longitudinal`` the registrar's comparison with it,
    ``prior_spine`` the assessment of the prior (called once, only for a follow-up).
    """
    label_map = of_group(label_maps, labels.Group.VERTEBRA)
    vertebrae: tuple[VertebraMeasurement, ...] = ()
    objects: list[Dataset] = []
    risk: dict[str, Any] | None = None
    spine: SpineAssessment | RiskFailure | None = None
    if label_map is not None:
        check_same_grid(volume.geometry, label_map.geometry)
        vertebrae = measure_vertebrae(volume.array, label_map)
    if label_map is not None and vertebrae:
        spine = assess_risk(volume, label_map, label_maps, sources, settings)
        change = (None if prior is None or isinstance(spine, RiskFailure)
                  else change_since(spine, prior, longitudinal, prior_spine))
        objects = build_objects(study_uid, series_uid, volume, sources, label_map, vertebrae,
                                of_group(label_maps, labels.Group.MUSCLE),
                                of_group(label_maps, labels.Group.LESION), settings,
                                longitudinal,
                                spine=None if isinstance(spine, RiskFailure) else spine,
                                change=change if isinstance(change, SpineChange) else None)
        risk = spine.record() if isinstance(spine, RiskFailure) else document(spine, change)
    else:
        log.warning("no vertebra T1-L5 found: no SEG or SR written",
                    extra=logs.fields(reason="no-vertebrae"))
    entry = outbox.put(series_uid, objects, _record(study_uid, series_uid, label_map, vertebrae,
                                                    prior, risk))
    return Assessment(vertebrae, entry.objects, spine)


def _record(study_uid: str, series_uid: str, label_map: LabelMap | None,
            vertebrae: Sequence[VertebraMeasurement], prior: tuple[str, str] | None,
            risk: dict[str, Any] | None) -> dict[str, Any]:
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
        "risk": risk,
    }
