"""The job runner: performs each due job's next step and commits the new state.

received -Segment-> segmented -Pair-> paired -Assess-> assessed -Deliver-> delivered, with the
detour through the PACS when the registrar's history has no prior, and a retrieved prior's own
job ending as recorded (:mod:`listener.pairing`). State is committed after every completed step,
so after a restart a job resumes with the step after its last completed one. Transient errors
(unreachable service or PACS, deadline, a failed C-STORE or C-MOVE) are retried with
exponential backoff and jitter until ``max_attempts``; permanent errors fail the job at once
with the remote reason, and an input problem quarantines the series. A prior search or
retrieval that cannot succeed does not fail the job: the study goes on as a baseline. A job
waiting for its prior is looked at again every poll interval. On stop, each worker finishes the
step it is performing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from listener import steps
from listener.db import Database, Job, JobState
from listener.metrics import STEP_STAGE, ListenerMetrics
from listener.pairing import NotYet, Outcome, Pairer
from listener.qr import PacsError
from listener.settings import RetryPolicy
from listener.spool import Spool
from spinemets import grpcutil, logs
from spinemets.errors import DeliveryError, SpineMetsError

log = logging.getLogger(__name__)

#: The step a job in each state performs next.
STEP = {JobState.RECEIVED: "segment", JobState.SEGMENTED: "pair",
        JobState.PRIOR_SEARCH: "search_prior", JobState.PRIOR_RETRIEVAL: "retrieve_prior",
        JobState.PRIOR_WAIT: "await_prior", JobState.PAIRED: "assess",
        JobState.ASSESSED: "deliver"}
#: Steps that, when they cannot succeed, leave the study to go on as a baseline (the outcome
#: recorded in its pairing note) instead of failing the job.
BASELINE_ON_FAILURE = {"search_prior": "search_failed", "retrieve_prior": "retrieval_failed"}


def backoff(policy: RetryPolicy, attempts: int, rng: random.Random) -> float:
    """Delay before attempt ``attempts + 1``: exponential, capped, with jitter in [d/2, d]."""
    delay = min(policy.max_delay_s, policy.base_delay_s * policy.factor ** (attempts - 1))
    return delay * rng.uniform(0.5, 1.0)


class _RetryableError(Exception):
    """A failed attempt that may succeed later."""


class Runner:
    """Worker threads over the job table."""

    def __init__(self, db: Database, spool: Spool, peers: steps.Peers, pairer: Pairer,
                 policy: RetryPolicy, workers: int, poll_s: float,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 metrics: ListenerMetrics | None = None) -> None:
        self.db, self.spool, self.peers, self.policy = db, spool, peers, policy
        self.pairer, self.poll_s, self.clock = pairer, poll_s, clock
        self.rng = rng or random.Random()
        self.metrics = metrics if metrics is not None else ListenerMetrics()
        self._stop = threading.Event()
        self._claimed: set[int] = set()
        self._claim_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"runner-{n}", daemon=True)
                         for n in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Let every worker finish its current step, then return."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def _claim(self) -> Job | None:
        with self._claim_lock:
            for job in self.db.due_jobs(self.clock(), limit=len(self._claimed) + 1):
                if job.id not in self._claimed:
                    self._claimed.add(job.id)
                    return job
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            job = self._claim()
            if job is None:
                self._stop.wait(self.poll_s)
                continue
            try:
                self.run_step(job)
            except Exception:  # the database itself failed: wait, then try again
                log.exception("job runner error",
                              extra=logs.fields(job=str(job.id), series=job.series_uid))
                self._stop.wait(self.poll_s)
            finally:
                with self._claim_lock:
                    self._claimed.discard(job.id)

    def run_step(self, job: Job) -> None:
        """Perform the job's next step and commit the outcome."""
        if job.state not in STEP:
            return
        with logs.context(job=str(job.id), series=job.series_uid):
            try:
                self._perform(job)
            except NotYet as wait:
                self.db.postpone(job, wait.at, self.clock())
                log.debug("%s: not yet (%s)", STEP[job.state], wait)
            except _RetryableError as exc:
                self._retry(job, str(exc))
            except grpc.RpcError as exc:
                if not grpcutil.is_permanent(exc):
                    self._retry(job, f"{exc.code().name.lower()}: {exc.details()}")
                else:
                    self._fail(job, steps.describe(exc),
                               quarantine=exc.code() == grpc.StatusCode.INVALID_ARGUMENT)
            except SpineMetsError as exc:
                self._fail(job, f"{exc.reason}: {exc}", quarantine=False)
            except Exception as exc:
                log.exception("step %s failed unexpectedly", STEP[job.state])
                self._fail(job, f"internal-error: {type(exc).__name__}: {exc}", quarantine=False)

    def _perform(self, job: Job) -> None:
        started = time.monotonic()
        try:
            outcome = self._execute(job, self.spool.job_dir(job.id))
        except (DeliveryError, PacsError, OSError) as exc:
            raise _RetryableError(f"{getattr(exc, 'reason', 'os-error')}: {exc}") from exc
        seconds = time.monotonic() - started
        self.metrics.observe_stage(STEP_STAGE[STEP[job.state]],
                                   seconds if outcome.seconds is None else outcome.seconds)
        ms = round(1000 * seconds)
        if outcome.advanced:
            log.info("%s done", STEP[job.state], extra=logs.fields(ms=ms, **outcome.detail))
        else:
            log.info("%s done, but the job changed meanwhile (superseded): result dropped",
                     STEP[job.state])

    def _execute(self, job: Job, job_dir: Path) -> Outcome:
        """One step and its commit."""
        now = self.clock
        step = STEP[job.state]
        if step == "segment":
            count = steps.segment(self.peers, job, job_dir)
            return Outcome(self.db.advance(job, now()), {"label_maps": count})
        if step == "pair":
            return self.pairer.pair(job, job_dir)
        if step == "search_prior":
            return self.pairer.search(job)
        if step == "retrieve_prior":
            return self.pairer.retrieve(job)
        if step == "await_prior":
            return self.pairer.await_prior(job, job_dir)
        if step == "assess":
            assessment = steps.assess(self.peers, job, job_dir)
            return Outcome(self.db.advance(job, now()), {
                "vertebrae": len(assessment.vertebrae), "objects": len(assessment.objects)})
        delivery = steps.deliver(self.peers, job, job_dir)
        return Outcome(self.db.advance(job, now()), {"deliveries": len(delivery.deliveries)})

    def _retry(self, job: Job, reason: str) -> None:
        attempts = job.attempts + 1
        now = self.clock()
        if attempts >= self.policy.max_attempts:
            self._fail(job, f"{reason} (gave up after {attempts} attempts)", quarantine=False,
                       attempts=attempts)
            return
        delay = backoff(self.policy, attempts, self.rng)
        if self.db.retry_later(job, attempts, now + delay, reason, now):
            self.metrics.step_failed(STEP[job.state], retried=True)
            log.warning("step %s failed, retrying in %.1f s: %s", STEP[job.state], delay, reason,
                        extra=logs.fields(attempt=attempts))

    def _fail(self, job: Job, reason: str, quarantine: bool, attempts: int | None = None) -> None:
        step = STEP[job.state]
        if step in BASELINE_ON_FAILURE:
            if self.pairer.give_up(job, BASELINE_ON_FAILURE[step], reason):
                self.metrics.step_failed(step, retried=False)
                log.warning("%s failed; the study goes on as a baseline: %s", step, reason)
            return
        with self.spool.lock:
            if not self.db.fail(job, reason, self.clock(), attempts):
                return
            self.metrics.step_failed(STEP[job.state], retried=False)
            if quarantine:
                code, _, message = reason.partition(": ")
                self.spool.quarantine(job.study_uid, job.series_uid, code, message)
                self.db.quarantine_series(job.series_uid, reason)
        log.error("job failed at step %s: %s", STEP[job.state], reason,
                  extra=logs.fields(quarantined=quarantine))
