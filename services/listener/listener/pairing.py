"""The pairing steps of a job: the registrar's history first, then, when configured, the PACS.

::

    segmented -pair-> paired             prior in the history, or none and no PACS configured
                      prior_search       no prior in the history, a PACS configured
                      recorded           a retrieved prior's own job: recorded, never reported
    prior_search -search_prior-> prior_retrieval   a baseline chosen in the PACS
                                 prior_wait        ... whose series is already here
                                 paired            none in the PACS: processed as a baseline
    prior_retrieval -retrieve_prior-> prior_wait   the PACS sent the series (C-MOVE / C-GET)
    prior_wait -await_prior-> paired     once the prior's job is recorded at the registrar (pair
                                         again: the registrar now returns it), or as a baseline
                                         if the prior failed or ``priors.wait_s`` ran out

Every paired study gets a ``pairing_note`` ``"<code>: <message>"`` saying where its prior came
from or why it has none (codes: :data:`listener.metrics.PRIOR_OUTCOMES`). A prior search or
retrieval that keeps failing also ends as a baseline (:meth:`Pairer.give_up`): the follow-up
is never lost for want of its prior.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from listener import steps
from listener.db import (
    Database,
    Job,
    JobPurpose,
    JobState,
    Pairing,
    PriorRequest,
    Series,
    SeriesState,
)
from listener.metrics import ListenerMetrics
from listener.priors import PriorFinder, pairing_note
from listener.settings import PriorSettings
from spinemets.errors import SpineMetsError

#: Jobs of a prior in these states have recorded it at the registrar.
RECORDED_STATES = frozenset({JobState.RECORDED, JobState.PAIRED, JobState.ASSESSED,
                             JobState.DELIVERED})


@dataclass(frozen=True)
class Outcome:
    """A committed step: whether the job advanced, what to log, and the stage's duration when
    it is not the step's own (the wait for a prior)."""

    advanced: bool
    detail: dict[str, object] = field(default_factory=dict)
    seconds: float | None = None


class NotYet(Exception):  # noqa: N818 - not an error: the step runs again later
    """The step cannot complete yet; run it again at ``at``."""

    def __init__(self, at: float, why: str) -> None:
        super().__init__(why)
        self.at = at


class Pairer:
    """The pairing steps over the job table, the registrar and (optionally) the PACS."""

    def __init__(self, db: Database, peers: steps.Peers, finder: PriorFinder | None,
                 settings: PriorSettings, poll_s: float, metrics: ListenerMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.db, self.peers, self.finder, self.settings = db, peers, finder, settings
        self.poll_s, self.metrics, self.clock = poll_s, metrics, clock

    def _series(self, job: Job) -> Series:
        series = self.db.series(job.series_uid)
        if series is None:
            raise SpineMetsError("series record missing", reason="missing-series")
        return series

    def _request(self, job: Job) -> PriorRequest:
        request = self.db.prior_request(job.id)
        if request is None:
            raise SpineMetsError("the job has no prior request", reason="missing-prior-request")
        return request

    def _paired(self, job: Job, pairing: Pairing, seconds: float | None = None) -> Outcome:
        advanced = self.db.advance(job, self.clock(), pairing, to=JobState.PAIRED)
        if advanced and pairing.note is not None:
            self.metrics.paired(pairing.note)
        return Outcome(advanced, {"has_prior": pairing.prior is not None,
                                  "pairing": pairing.note}, seconds)

    def pair(self, job: Job, job_dir: Path) -> Outcome:
        """Record the study at the registrar; its prior from the history, if any."""
        prior = steps.pair(self.peers, job, self._series(job), job_dir)
        if job.purpose == JobPurpose.PRIOR:
            return Outcome(self.db.advance(job, self.clock(), Pairing(prior),
                                           to=JobState.RECORDED), {"prior_recorded": True})
        if prior is not None:
            return self._paired(job, Pairing(prior, pairing_note(
                "history", "prior from the registrar's history")))
        if self.finder is None:
            return self._paired(job, Pairing(None, pairing_note(
                "no_prior", "no earlier study in the registrar's history, no PACS to search")))
        return Outcome(self.db.advance(job, self.clock(), to=JobState.PRIOR_SEARCH),
                       {"has_prior": False, "next": JobState.PRIOR_SEARCH.value})

    def search(self, job: Job) -> Outcome:
        """C-FIND the patient's earlier CT studies in the PACS and choose the baseline."""
        assert self.finder is not None
        found = self.finder.search(self._series(job))
        if found.prior is None:
            return self._paired(job, Pairing(None, found.note))
        known = self.db.series(found.prior.series_uid)
        here = known is not None and known.state not in (SeriesState.SKIPPED,
                                                         SeriesState.QUARANTINED)
        now = self.clock()
        advanced = self.db.request_prior(job, found.prior, found.note, now,
                                         now + self.settings.wait_s if here else None)
        return Outcome(advanced, {"prior_series": found.prior.series_uid, "already_here": here})

    def retrieve(self, job: Job) -> Outcome:
        """C-MOVE (or C-GET) the chosen prior into the spool."""
        assert self.finder is not None
        count = self.finder.retrieve(self._request(job).prior)
        now = self.clock()
        return Outcome(self.db.prior_retrieved(job, now, now + self.settings.wait_s),
                       {"instances": count})

    def await_prior(self, job: Job, job_dir: Path) -> Outcome:
        """Pair once the retrieved prior is recorded; :class:`NotYet` while it is on its way."""
        request = self._request(job)
        now = self.clock()
        waited = now - (request.retrieved or request.requested)
        ready, why = self._prior_status(request.prior.series_uid)
        if ready:
            prior = steps.pair(self.peers, job, self._series(job), job_dir)
            if prior is None:
                note = pairing_note("prior_failed", "the registrar did not pair the study "
                                    "with the retrieved prior")
            elif prior.series_uid == request.prior.series_uid:
                note = request.note
            else:
                note = pairing_note("history", "prior from the registrar's history")
            return self._paired(job, Pairing(prior, note), waited)
        if why is not None:
            return self._paired(job, Pairing(None, pairing_note("prior_failed", why)), waited)
        deadline = request.deadline if request.deadline is not None else now
        if now >= deadline:
            return self._paired(job, Pairing(None, pairing_note(
                "wait_timeout", f"the retrieved prior was not recorded within "
                f"{self.settings.wait_s:g} s")), waited)
        raise NotYet(min(deadline, now + self.poll_s), "the prior is on its way")

    def _prior_status(self, series_uid: str) -> tuple[bool, str | None]:
        """(recorded, why it never will be); ``(False, None)`` while it is on its way."""
        series = self.db.series(series_uid)
        if series is None or series.state in (SeriesState.RECEIVING, SeriesState.COMPLETE):
            return False, None
        if series.state in (SeriesState.SKIPPED, SeriesState.QUARANTINED):
            return False, f"the retrieved prior series was {series.state}: {series.reason}"
        jobs = self.db.jobs(series_uid)
        if not jobs:
            return False, None
        latest = jobs[-1]
        if latest.state in RECORDED_STATES:
            return True, None
        if latest.state == JobState.FAILED:
            return False, f"the retrieved prior's job failed: {latest.reason}"
        return False, None

    def give_up(self, job: Job, outcome: str, reason: str) -> bool:
        """A prior search or retrieval that cannot succeed: the study goes on as a baseline."""
        return self._paired(job, Pairing(None, pairing_note(outcome, reason))).advanced
