"""The job runner: performs each due job's next step and commits the new state.

received -Segment-> segmented -Pair-> paired -Assess-> assessed -Deliver-> delivered.
State is committed after every completed step, so after a restart a job resumes with the step
after its last completed one. Transient errors (unreachable service, deadline, a failed C-STORE)
are retried with exponential backoff and jitter until ``max_attempts``; permanent errors fail the
job at once with the remote reason, and an input problem quarantines the series. On stop, each
worker finishes the step it is performing.
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
from listener.settings import RetryPolicy
from listener.spool import Spool
from spinemets import grpcutil, logs
from spinemets.errors import DeliveryError, SpineMetsError

log = logging.getLogger(__name__)

#: The step a job in each state performs next.
STEP = {JobState.RECEIVED: "segment", JobState.SEGMENTED: "pair", JobState.PAIRED: "assess",
        JobState.ASSESSED: "deliver"}


def backoff(policy: RetryPolicy, attempts: int, rng: random.Random) -> float:
    """Delay before attempt ``attempts + 1``: exponential, capped, with jitter in [d/2, d]."""
    delay = min(policy.max_delay_s, policy.base_delay_s * policy.factor ** (attempts - 1))
    return delay * rng.uniform(0.5, 1.0)


class _RetryableError(Exception):
    """A failed attempt that may succeed later."""


class Runner:
    """Worker threads over the job table."""

    def __init__(self, db: Database, spool: Spool, peers: steps.Peers, policy: RetryPolicy,
                 workers: int, poll_s: float, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None,
                 metrics: ListenerMetrics | None = None) -> None:
        self.db, self.spool, self.peers, self.policy = db, spool, peers, policy
        self.poll_s, self.clock = poll_s, clock
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
            advanced, detail = self._execute(job, self.spool.job_dir(job.id))
        except (DeliveryError, OSError) as exc:
            raise _RetryableError(f"{getattr(exc, 'reason', 'os-error')}: {exc}") from exc
        seconds = time.monotonic() - started
        self.metrics.observe_stage(STEP_STAGE[STEP[job.state]], seconds)
        ms = round(1000 * seconds)
        if advanced:
            log.info("%s done", STEP[job.state], extra=logs.fields(ms=ms, **detail))
        else:
            log.info("%s done, but the job changed meanwhile (superseded): result dropped",
                     STEP[job.state])

    def _execute(self, job: Job, job_dir: Path) -> tuple[bool, dict[str, object]]:
        """One step and its commit; whether the job advanced, and what to log."""
        now = self.clock
        if job.state == JobState.RECEIVED:
            count = steps.segment(self.peers, job, job_dir)
            return self.db.advance(job, now()), {"label_maps": count}
        if job.state == JobState.SEGMENTED:
            series = self.db.series(job.series_uid)
            if series is None:
                raise SpineMetsError("series record missing", reason="missing-series")
            pairing = steps.pair(self.peers, job, series)
            return (self.db.advance(job, now(), pairing.prior, pairing.has_prior),
                    {"has_prior": pairing.has_prior})
        if job.state == JobState.PAIRED:
            assessment = steps.assess(self.peers, job, job_dir)
            return (self.db.advance(job, now()),
                    {"vertebrae": len(assessment.vertebrae), "objects": len(assessment.objects)})
        delivery = steps.deliver(self.peers, job, job_dir)
        return self.db.advance(job, now()), {"deliveries": len(delivery.deliveries)}

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
