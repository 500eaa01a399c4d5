"""Series completion: a series idle for the configured time is checked, then routed.

Checks: every instance is a CT object; the routing rules (:mod:`listener.routing`) pick a
pipeline or skip the series; a routed series must assemble into a regular HU volume
(:func:`spinemets.geometry.assemble_ct`), which is cached beside the spool. A series that fails a
check is quarantined with the reason. An instance that arrives while a series is being checked
wins: the outcome is dropped and the series is checked again after the next idle period. A
series that a job asked of the PACS as its prior becomes a prior's job (:mod:`listener.pairing`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from listener import volume_cache
from listener.db import Database, Series, SeriesState
from listener.metrics import ListenerMetrics
from listener.routing import SeriesAttributes, route
from listener.settings import Rule
from listener.spool import Spool, publish
from spinemets import logs
from spinemets.errors import InputError
from spinemets.geometry import CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, Volume, assemble_ct

log = logging.getLogger(__name__)

CT_SOP_CLASSES = frozenset({CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE})


@dataclass(frozen=True)
class Evaluation:
    """The outcome of a complete series' checks: processed (with rule and volume), skipped or
    quarantined, with a reason ``"<code>: <message>"``."""

    state: SeriesState
    reason: str
    rule: Rule | None = None
    volume: Volume | None = None


def _slices(datasets: Sequence[Dataset]) -> int:
    if len(datasets) == 1 and datasets[0].SOPClassUID == ENHANCED_CT_IMAGE_STORAGE:
        return int(datasets[0].get("NumberOfFrames") or 1)
    return len(datasets)


def evaluate(datasets: Sequence[Dataset], rules: Sequence[Rule]) -> Evaluation:
    """Check and route a complete series (pure: no files, no database)."""
    quarantined = SeriesState.QUARANTINED
    if not datasets:
        return Evaluation(quarantined, "empty-series: no instances in the spool")
    for ds in datasets:
        if ds.get("SOPClassUID") not in CT_SOP_CLASSES or ds.get("Modality") != "CT":
            return Evaluation(quarantined, f"not-ct: instance {ds.get('SOPInstanceUID')} has "
                              f"modality {ds.get('Modality')!r} and SOP class "
                              f"{ds.get('SOPClassUID')}")
    attributes = SeriesAttributes(modality="CT",
                                  description=str(datasets[0].get("SeriesDescription") or ""),
                                  slices=_slices(datasets))
    decision = route(rules, attributes)
    if decision.rule is None:
        return Evaluation(SeriesState.SKIPPED, decision.reason)
    try:
        volume = assemble_ct(datasets)
    except InputError as exc:
        return Evaluation(quarantined, f"{exc.reason}: {exc}")
    return Evaluation(SeriesState.PROCESSED, decision.reason, decision.rule, volume)


class Completion:
    """Background thread: completes idle series, checks and routes them."""

    def __init__(self, db: Database, spool: Spool, rules: Sequence[Rule], idle_s: float,
                 poll_s: float, clock: Callable[[], float] = time.time,
                 metrics: ListenerMetrics | None = None) -> None:
        self.db, self.spool, self.rules = db, spool, tuple(rules)
        self.idle_s, self.poll_s, self.clock = idle_s, poll_s, clock
        self.metrics = metrics if metrics is not None else ListenerMetrics()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="completion", daemon=True)

    def start(self) -> None:
        reopened = self.db.reopen_complete()
        if reopened:
            log.info("series interrupted during their checks are checked again",
                     extra=logs.fields(count=reopened))
        self._thread.start()

    def stop(self) -> None:
        """Finish the series being checked, then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("completion pass failed; trying again")
            self._stop.wait(self.poll_s)

    def run_once(self) -> int:
        """Complete every series idle for ``idle_s``; returns how many were handled."""
        idle = self.db.idle_series(self.clock() - self.idle_s)
        for series in idle:
            if self._stop.is_set():
                break
            if self.db.mark_complete(series):
                with logs.context(series=series.series_uid):
                    self._settle(series)
        return len(idle)

    def _evaluate(self, series: Series) -> Evaluation:
        try:
            paths = self.spool.instance_paths(series.study_uid, series.series_uid)
            return evaluate(volume_cache.read_datasets(paths), self.rules)
        except InputError as exc:
            return Evaluation(SeriesState.QUARANTINED, f"{exc.reason}: {exc}")
        except Exception as exc:
            log.exception("unexpected error while checking the series")
            return Evaluation(SeriesState.QUARANTINED, f"unexpected-error: {type(exc).__name__}")

    def _settle(self, series: Series) -> None:
        outcome = self._evaluate(series)
        study, uid = series.study_uid, series.series_uid
        volume_path = self.spool.volume_path(study, uid)
        staged = (volume_cache.stage(outcome.volume, volume_path)
                  if outcome.volume is not None else None)
        try:
            with self.spool.lock:
                if not self.db.is_unchanged(series):
                    log.info("instances arrived during the checks; the series is checked again")
                    return
                if outcome.state == SeriesState.QUARANTINED:
                    code, _, message = outcome.reason.partition(": ")
                    self.spool.quarantine(study, uid, code, message)
                    self.db.settle(series, outcome.state, outcome.reason)
                elif outcome.state == SeriesState.SKIPPED:
                    self.db.settle(series, outcome.state, outcome.reason)
                else:
                    assert outcome.rule is not None and staged is not None
                    publish(staged, volume_path)
                    job_id, purpose = self.db.create_job(series, outcome.rule.name,
                                                         outcome.rule.roles, self.clock())
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        settled = self.clock()
        self.metrics.observe_stage("receive", series.last_received - series.first_received)
        self.metrics.observe_stage("completion_wait", settled - series.last_received)
        if outcome.state == SeriesState.QUARANTINED:
            log.warning("series quarantined: %s", outcome.reason)
        elif outcome.state == SeriesState.SKIPPED:
            log.info("series skipped: %s", outcome.reason)
        else:
            log.info("series routed: %s", outcome.reason,
                     extra=logs.fields(job=str(job_id), purpose=str(purpose)))
