"""The listener's Prometheus metrics (``spinemets_listener_*``).

- ``stage_seconds{stage}``: ``receive`` (first to last instance of a series), ``completion_wait``
  (last instance to the series settled: idle timer plus checks and routing), and one stage per
  job step as the job runner sees it (``segmentation``, ``pairing``, ``assessment``,
  ``delivery``: the downstream call; ``prior_search``: the C-FINDs, ``prior_retrieval``: the
  C-MOVE or C-GET, ``prior_wait``: end of the retrieval to the prior recorded; successful
  runs only);
- ``step_failures_total{stage, outcome}``: failed job steps, ``retried`` or ``failed`` (a
  failed prior search or retrieval leaves the study to go on as a baseline);
- ``prior_outcomes_total{outcome}``: how each study was paired (see :data:`PRIOR_OUTCOMES`);
- ``jobs{state}``, ``queue_depth``, ``series{state}``: read from the database at scrape time,
  so they are right after a restart;
- ``associations_accepted_total``, ``associations_rejected_total{reason}``;
- ``instances_received_total{outcome}``: C-STORE requests by what became of them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from listener.db import UNFINISHED, Database, JobState, SeriesState
from spinemets.metrics import ServiceMetrics, init_labels, metric_name

log = logging.getLogger(__name__)

#: Stages of a series' journey seen by the listener.
STAGES = ("receive", "completion_wait", "segmentation", "pairing", "prior_search",
          "prior_retrieval", "prior_wait", "assessment", "delivery")
#: Stages only a study whose prior is searched in a PACS goes through.
PRIOR_STAGES = ("prior_search", "prior_retrieval", "prior_wait")
#: The stage of each job step.
STEP_STAGE = {"segment": "segmentation", "pair": "pairing", "search_prior": "prior_search",
              "retrieve_prior": "prior_retrieval", "await_prior": "prior_wait",
              "assess": "assessment", "deliver": "delivery"}
#: How a study was paired: a prior from the registrar's ``history`` or the ``pacs``; or none:
#: ``no_prior`` (none in the history, no PACS configured), ``not_in_pacs``, ``not_searchable``
#: (no Patient ID or Study Date), ``search_failed``, ``retrieval_failed``, ``wait_timeout``,
#: ``prior_failed`` (the retrieved prior could not be processed). The ``pairing_note`` codes.
PRIOR_OUTCOMES = ("history", "pacs", "no_prior", "not_in_pacs", "not_searchable",
                  "search_failed", "retrieval_failed", "wait_timeout", "prior_failed")
#: Why an association was rejected (``associations_rejected_total{reason}``).
REJECT_REASONS = ("unknown_calling_ae", "address_not_allowed", "invalid_address", "negotiation")
#: What became of a C-STORE request (``instances_received_total{outcome}``).
INSTANCE_OUTCOMES = ("stored", "ignored", "refused", "failed")
STEP_OUTCOMES = ("retried", "failed")


class ListenerMetrics(ServiceMetrics):
    """The listener's metrics; the job table gauges need :meth:`watch` of the database."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("listener", STAGES, registry)
        self.associations_accepted = self.counter(
            "associations_accepted_total", "DICOM associations accepted")
        self.associations_rejected = self.counter(
            "associations_rejected_total", "DICOM associations rejected, by reason", ("reason",))
        init_labels(self.associations_rejected, "reason", REJECT_REASONS)
        self.instances = self.counter(
            "instances_received_total", "C-STORE requests received, by outcome: stored, "
            "ignored (SOP class discarded), refused (bad data set), failed (not written)",
            ("outcome",))
        init_labels(self.instances, "outcome", INSTANCE_OUTCOMES)
        self.step_failures = self.counter(
            "step_failures_total", "Failed job steps, by stage and outcome (retried or failed)",
            ("stage", "outcome"))
        for stage in STEP_STAGE.values():
            for outcome in STEP_OUTCOMES:
                self.step_failures.labels(stage=stage, outcome=outcome)
        self.prior_outcomes = self.counter(
            "prior_outcomes_total", "Studies paired, by where the prior came from or why there "
            "is none", ("outcome",))
        init_labels(self.prior_outcomes, "outcome", PRIOR_OUTCOMES)
        self._collector: JobTableCollector | None = None

    def watch(self, db: Database) -> None:
        """Export the job and series gauges of ``db`` (computed at every scrape)."""
        self.unwatch()
        self._collector = JobTableCollector(db, self.service)
        self.registry.register(self._collector)

    def unwatch(self) -> None:
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None

    def step_failed(self, step: str, retried: bool) -> None:
        self.step_failures.labels(stage=STEP_STAGE[step],
                                  outcome="retried" if retried else "failed").inc()

    def paired(self, note: str) -> None:
        """Count a study's pairing by the code of its ``pairing_note``."""
        self.prior_outcomes.labels(outcome=note.partition(":")[0].replace("-", "_")).inc()


class JobTableCollector(Collector):
    """Jobs by state, queue depth and series by state, counted in the database when scraped."""

    def __init__(self, db: Database, service: str = "listener") -> None:
        self.db, self.service = db, service

    def _metric(self, what: str) -> str:
        return metric_name(self.service, what)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            jobs, series = self.db.counts()
        except sqlite3.Error as exc:  # closed or locked database: no gauges this scrape
            log.warning("job table not readable for metrics: %s", exc)
            return
        by_job = GaugeMetricFamily(self._metric("jobs"), "Jobs in the job table, by state",
                                   labels=["state"])
        for state in JobState:
            by_job.add_metric([state.value], jobs.get(state, 0))
        yield by_job
        yield GaugeMetricFamily(
            self._metric("queue_depth"), "Jobs not yet finished (neither delivered nor failed)",
            value=sum(jobs.get(state, 0) for state in UNFINISHED))
        by_series = GaugeMetricFamily(self._metric("series"), "Received series, by state",
                                      labels=["state"])
        for series_state in SeriesState:
            by_series.add_metric([series_state.value], series.get(series_state, 0))
        yield by_series
