"""The job runner: claims due jobs under a lease, runs their handlers on a thread pool, and
records each outcome (done, failed with backoff, rescheduled, or dead).

Delivery is at least once: a worker that dies after a handler committed its effect but before
the job was marked done leaves the lease to lapse, and the job runs again. Handlers are
therefore idempotent: each checks the state its job is about before acting.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog

from settle.jobs.model import Job, JobStatus, Reschedule, retry_delay
from settle.store.jobs_repo import claim_jobs, fail_job, finish_job, reschedule_job

if TYPE_CHECKING:
    import sqlalchemy as sa

    from settle.clock import Clock

__all__ = ["JobHandler", "JobRunner"]

JobHandler = Callable[[Job], None]
_log = structlog.get_logger(__name__)


def _worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobRunner:
    """Runs the handlers of ``handlers`` (by job kind) for jobs in ``engine``'s queue.

    ``run_once`` is one synchronous round (tests drive it); ``start`` runs rounds on a thread
    until ``stop``, sleeping ``poll_seconds`` when idle unless ``wake`` is called.
    """

    def __init__(
        self,
        engine: sa.Engine,
        handlers: Mapping[str, JobHandler],
        clock: Clock,
        *,
        concurrency: int = 8,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.05,
        rng: random.Random | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.handlers = dict(handlers)
        self.clock = clock
        self.concurrency = concurrency
        self.lease_us = int(lease_seconds * 1_000_000)
        self.poll_seconds = poll_seconds
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self.worker_id = worker_id or _worker_id()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="settle-job")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slots = threading.Semaphore(concurrency)

    # ---- one round ------------------------------------------------------------------------

    def run_once(self, limit: int | None = None) -> int:
        """Claim what is due now and run it; returns how many jobs ran."""
        jobs = claim_jobs(
            self.engine,
            worker_id=self.worker_id,
            now=self.clock(),
            lease_us=self.lease_us,
            limit=limit or self.concurrency,
            kinds=list(self.handlers),
        )
        for _ in self._pool.map(self.run_job, jobs):
            pass
        return len(jobs)

    def run_job(self, job: Job) -> JobStatus:
        """Run one claimed job's handler and record the outcome."""
        handler = self.handlers[job.kind]
        log = _log.bind(job_id=str(job.id), kind=job.kind, attempt=job.attempts)
        try:
            handler(job)
        except Reschedule as again:
            now = self.clock()
            reschedule_job(
                self.engine,
                job,
                now=now,
                run_at=now + int(again.seconds * 1_000_000),
                reason=str(again),
            )
            return JobStatus.QUEUED
        except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
            now = self.clock()
            delay = retry_delay(job.attempts, self.rng)
            # The class, not the message: messages may quote data (card numbers, keys).
            error = f"{type(exc).__module__}.{type(exc).__qualname__}"
            status = fail_job(self.engine, job, error, now=now, retry_at=now + int(delay * 1e6))
            log.warning("job failed", error=error, status=status.value, retry_in=round(delay, 3))
            return status
        finish_job(self.engine, job, now=self.clock())
        return JobStatus.SUCCEEDED

    # ---- in the background -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="settle-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for due jobs now (called after a commit that enqueued one)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._pool.shutdown(wait=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Claim only as many as there are free threads, so a claimed job never waits
            # for a thread while its lease runs down.
            free = 0
            while free < self.concurrency and self._slots.acquire(blocking=False):
                free += 1
            claimed: list[Job] = []
            if free:
                try:
                    claimed = claim_jobs(
                        self.engine,
                        worker_id=self.worker_id,
                        now=self.clock(),
                        lease_us=self.lease_us,
                        limit=free,
                        kinds=list(self.handlers),
                    )
                except Exception as exc:  # noqa: BLE001 - the database may be back next round
                    _log.warning("claiming jobs failed", error=type(exc).__name__)
            for _ in range(free - len(claimed)):
                self._slots.release()
            for job in claimed:
                self._pool.submit(self._run_and_release, job)
            if len(claimed) < free or not free:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _run_and_release(self, job: Job) -> None:
        try:
            self.run_job(job)
        except Exception as exc:  # noqa: BLE001 - recording the outcome failed; the lease lapses
            _log.error("recording a job's outcome failed", error=type(exc).__name__)
        finally:
            self._slots.release()
            self._wake.set()  # a thread is free: there may be more due
