"""The job runner: claims due jobs under a lease, runs their handlers on a thread pool, and
records each outcome (done, failed with backoff, rescheduled, or dead).

A kind with a *batch handler* runs its due jobs together: up to ``batch_size`` of them go to
one call on one thread, which returns each job's outcome, and the succeeded ones are marked
done in one statement. Under load more jobs are due at each claim, so batches grow with the
load, the way a group commit does.

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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import structlog

from settle.jobs.model import Job, JobStatus, Reschedule, retry_delay
from settle.store.jobs_repo import (
    claim_jobs,
    due_job_kinds,
    fail_job,
    finish_job,
    finish_jobs,
    reschedule_job,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from settle.clock import Clock

__all__ = ["JobBatchHandler", "JobHandler", "JobRunner"]

JobHandler = Callable[[Job], None]
# Each job's outcome by id: None when it is done, else what its run raised (a Reschedule,
# or any error, retried with backoff). A job left out of the answer is retried.
JobBatchHandler = Callable[[Sequence[Job]], Mapping[uuid.UUID, BaseException | None]]
_log = structlog.get_logger(__name__)


def _worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobRunner:
    """Runs the handlers of ``handlers`` (by job kind) for jobs in ``engine``'s queue.

    ``run_once`` is one synchronous round (tests drive it); ``start`` runs rounds on a thread
    until ``stop``, sleeping ``poll_seconds`` when idle unless ``wake`` is called.
    ``concurrency`` threads run handlers: each takes one job, or one batch of up to
    ``batch_size`` jobs of a kind in ``batch_handlers``.
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
        batch_handlers: Mapping[str, JobBatchHandler] | None = None,
        batch_size: int = 64,
    ) -> None:
        self.engine = engine
        self.handlers = dict(handlers)
        self.batch_handlers = dict(batch_handlers or {})
        self.batch_size = batch_size
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
        batches, singles = self._claim(self.concurrency if limit is None else limit, limit)
        together = [self._pool.submit(self.run_batch, batch) for batch in batches]
        alone = [self._pool.submit(self.run_job, job) for job in singles]
        for batch_run in together:
            batch_run.result()
        for job_run in alone:
            job_run.result()
        return sum(map(len, batches)) + len(singles)

    def _claim(self, threads: int, limit: int | None = None) -> tuple[list[list[Job]], list[Job]]:
        """Claim for ``threads`` free threads: a batch of each batched kind that is due (one
        thread each), then single jobs for the threads left. A read finds what is due first,
        so an idle round takes no write lock."""
        now = self.clock()
        due = due_job_kinds(self.engine, now=now, kinds=[*self.handlers, *self.batch_handlers])
        batches: list[list[Job]] = []
        for kind in sorted(due & self.batch_handlers.keys()):
            if threads <= 0:
                break
            claimed = self._claim_kinds([kind], limit or self.batch_size)
            if claimed:
                batches.append(claimed)
                threads -= 1
        singles: list[Job] = []
        alone = (due & self.handlers.keys()) - self.batch_handlers.keys()
        if threads > 0 and alone:
            singles = self._claim_kinds(sorted(alone), threads)
        return batches, singles

    def _claim_kinds(self, kinds: Sequence[str], limit: int) -> list[Job]:
        return claim_jobs(
            self.engine,
            worker_id=self.worker_id,
            now=self.clock(),
            lease_us=self.lease_us,
            limit=limit,
            kinds=kinds,
        )

    def run_job(self, job: Job) -> JobStatus:
        """Run one claimed job's handler and record the outcome."""
        try:
            self.handlers[job.kind](job)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
            return self._record_unfinished(job, exc)
        finish_job(self.engine, job, now=self.clock())
        return JobStatus.SUCCEEDED

    def run_batch(self, jobs: Sequence[Job]) -> dict[uuid.UUID, JobStatus]:
        """Run claimed jobs of one batched kind together and record their outcomes."""
        handler = self.batch_handlers[jobs[0].kind]
        try:
            outcomes = dict(handler(jobs))
        except Exception as exc:  # noqa: BLE001 - the batch's failure is each job's
            outcomes = {job.id: exc for job in jobs}
        missing = RuntimeError("the batch handler gave this job no outcome")
        statuses: dict[uuid.UUID, JobStatus] = {}
        done: list[Job] = []
        for job in jobs:
            outcome = outcomes.get(job.id, missing)
            if outcome is None:
                done.append(job)
                statuses[job.id] = JobStatus.SUCCEEDED
            else:
                statuses[job.id] = self._record_unfinished(job, outcome)
        finish_jobs(self.engine, done, now=self.clock())
        return statuses

    def _record_unfinished(self, job: Job, outcome: BaseException) -> JobStatus:
        """A run that did not finish its job: rescheduled, retried with backoff, or dead."""
        now = self.clock()
        if isinstance(outcome, Reschedule):
            run_at = now + int(outcome.seconds * 1_000_000)
            reschedule_job(self.engine, job, now=now, run_at=run_at, reason=str(outcome))
            return JobStatus.QUEUED
        delay = retry_delay(job.attempts, self.rng)
        # The class, not the message: messages may quote data (card numbers, keys).
        error = f"{type(outcome).__module__}.{type(outcome).__qualname__}"
        status = fail_job(self.engine, job, error, now=now, retry_at=now + int(delay * 1e6))
        _log.warning(
            "job failed",
            job_id=str(job.id),
            kind=job.kind,
            attempt=job.attempts,
            error=error,
            status=status.value,
            retry_in=round(delay, 3),
        )
        return status

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
            # Claim only for free threads, so a claimed job never waits for a thread while
            # its lease runs down.
            free = 0
            while free < self.concurrency and self._slots.acquire(blocking=False):
                free += 1
            batches: list[list[Job]] = []
            singles: list[Job] = []
            if free:
                try:
                    batches, singles = self._claim(free)
                except Exception as exc:  # noqa: BLE001 - the database may be back next round
                    _log.warning("claiming jobs failed", error=type(exc).__name__)
            used = len(batches) + len(singles)
            for _ in range(free - used):
                self._slots.release()
            for batch in batches:
                self._pool.submit(self._run_and_release, self.run_batch, batch)
            for job in singles:
                self._pool.submit(self._run_and_release, self.run_job, job)
            if used < free or not free:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _run_and_release(self, run: Callable[[Any], object], work: object) -> None:
        try:
            run(work)
        except Exception as exc:  # noqa: BLE001 - recording the outcome failed; the lease lapses
            _log.error("recording a job's outcome failed", error=type(exc).__name__)
        finally:
            self._slots.release()
            self._wake.set()  # a thread is free: there may be more due
