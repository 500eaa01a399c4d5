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

import grpc

from listener import steps
from listener.db import Database, Job, JobState
from listener.settings import RetryPolicy
from listener.spool import Spool
from spinemets import grpcutil, logs
from spinemets.errors import DeliveryError, SpineMetsError

log = logging.getLogger(__name__)


def backoff(policy: RetryPolicy, attempts: int, rng: random.Random) -> float:
    """Delay before attempt ``attempts + 1``: exponential, capped, with jitter in [d/2, d]."""
    delay = min(policy.max_delay_s, policy.base_delay_s * policy.factor ** (attempts - 1))
    return delay * rng.uniform(0.5, 1.0)


class _Retry(Exception):
    """A failed attempt that may succeed later."""


class Runner:
    """Worker threads over the job table."""

    def __init__(self, db: Database, spool: Spool, peers: steps.Peers, policy: RetryPolicy,
                 workers: int, poll_s: float, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.db, self.spool, self.peers, self.policy = db, spool, peers, policy
        self.poll_s, self.clock = poll_s, clock
        self.rng = rng or random.Random()
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
            except Exception:
                log.exception("job runner error", extra=logs.fields(job=job.id))
                self._stop.wait(self.poll_s)
            finally:
                with self._claim_lock:
                    self._claimed.discard(job.id)

    def run_step(self, job: Job) -> None:
        """Perform the job's next step and commit the outcome."""
        with logs.context(job=str(job.id), series=job.series_uid):
            try:
                self._perform(job)
            except _Retry as exc:
                self._retry(job, str(exc))
            except grpc.RpcError as exc:
                if not grpcutil.is_permanent(exc):
                    self._retry(job, f"{exc.code().name.lower()}: {exc.details()}")
                else:
                    self._fail(job, steps.describe(exc),
                               quarantine=exc.code() == grpc.StatusCode.INVALID_ARGUMENT)
            except SpineMetsError as exc:
                self._fail(job, f"{exc.reason}: {exc}", quarantine=False)

    def _perform(self, job: Job) -> None:
        job_dir = self.spool.job_dir(job.id)
        step = job.state.value
        started = time.monotonic()
        try:
            if job.state == JobState.RECEIVED:
                count = steps.segment(self.peers, job, job_dir)
                advanced = self.db.advance(job, self.clock())
                detail: dict[str, object] = {"label_maps": count}
            elif job.state == JobState.SEGMENTED:
                series = self.db.series(job.series_uid)
                if series is None:
                    raise SpineMetsError("series record missing", reason="missing-series")
                pairing = steps.pair(self.peers, job, series)
                advanced = self.db.advance(job, self.clock(), pairing.prior, pairing.has_prior)
                detail = {"has_prior": pairing.has_prior}
            elif job.state == JobState.PAIRED:
                assessment = steps.assess(self.peers, job, job_dir)
                advanced = self.db.advance(job, self.clock())
                detail = {"vertebrae": len(assessment.vertebrae),
                          "objects": len(assessment.objects)}
            elif job.state == JobState.ASSESSED:
                delivery = steps.deliver(self.peers, job, job_dir)
                advanced = self.db.advance(job, self.clock())
                detail = {"deliveries": len(delivery.deliveries)}
            else:
                return
        except (DeliveryError, OSError) as exc:
            raise _Retry(f"{getattr(exc, 'reason', 'os-error')}: {exc}") from exc
        ms = round(1000 * (time.monotonic() - started))
        if advanced:
            log.info("step %s done", step, extra=logs.fields(ms=ms, **detail))
        else:
            log.info("step %s done, but the job changed meanwhile (superseded); result dropped",
                     step)

    def _retry(self, job: Job, reason: str) -> None:
        attempts = job.attempts + 1
        now = self.clock()
        if attempts >= self.policy.max_attempts:
            self._fail(job, f"{reason} (gave up after {attempts} attempts)", quarantine=False,
                       attempts=attempts)
            return
        delay = backoff(self.policy, attempts, self.rng)
        if self.db.retry_later(job, attempts, now + delay, reason, now):
            log.warning("step %s failed, retrying in %.1f s: %s", job.state.value, delay, reason,
                        extra=logs.fields(attempt=attempts))

    def _fail(self, job: Job, reason: str, quarantine: bool, attempts: int | None = None) -> None:
        with self.spool.lock:
            if not self.db.fail(job, reason, self.clock(), attempts):
                return
            if quarantine:
                code, _, message = reason.partition(": ")
                self.spool.quarantine(job.study_uid, job.series_uid, code, message)
                self.db.quarantine_series(job.series_uid, reason)
        log.error("job failed at step %s: %s", job.state.value, reason,
                  extra=logs.fields(quarantined=quarantine))
