"""Jobs as plain values, their states, the queue port and the retry schedule."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["Job", "JobQueue", "JobStatus", "JobView", "NewJob", "Reschedule", "retry_delay"]

# Backoff between failed runs: capped exponential, with full jitter over its upper half.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 3600.0


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for its run_at; any worker may claim it then
    RUNNING = "running"  # claimed by a worker under a lease; taken again if the lease expires
    SUCCEEDED = "succeeded"  # done: its effect is committed
    DEAD = "dead"  # failed every allowed attempt: an operator looks at it (and may retry it)


_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.DEAD}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.DEAD: frozenset({JobStatus.QUEUED}),
}


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    return target in _TRANSITIONS[source]


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue. Two enqueues with one ``dedupe_key`` make one job."""

    tenant_id: uuid.UUID
    kind: str
    payload: Mapping[str, Any]
    run_at: int  # microseconds since the epoch
    dedupe_key: str | None = None
    max_attempts: int = 8


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job, as its handler sees it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    payload: Mapping[str, Any]
    attempts: int  # this run included
    max_attempts: int
    lease_owner: str
    status: JobStatus = JobStatus.RUNNING
    last_error: str | None = field(default=None, compare=False)


class Reschedule(Exception):  # noqa: N818 - an instruction to the runner, not an error
    """Raised by a handler to run the job again after ``seconds`` without counting a failure
    (e.g. the processor is still working on the request it asks about)."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"again in {seconds} s")
        self.seconds = seconds


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as operators see it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    payload: Mapping[str, Any]
    status: JobStatus
    attempts: int
    max_attempts: int
    run_at: int
    last_error: str | None
    created_at: int
    updated_at: int


class JobQueue(Protocol):
    """The queue inside a unit of work: a job commits or rolls back with the change."""

    def enqueue(self, job: NewJob, *, now: int) -> uuid.UUID | None:
        """The new job's id; None when a job with its dedupe key exists already."""
        ...

    def get(
        self, tenant_id: uuid.UUID, job_id: uuid.UUID, *, lock: bool = False
    ) -> JobView | None: ...

    def requeue(self, tenant_id: uuid.UUID, job_id: uuid.UUID, *, now: int) -> bool:
        """Queue a dead job again, now, with its attempts counted afresh."""
        ...


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Seconds before run ``attempts + 1`` after ``attempts`` failed ones (at least 1).

    Capped exponential backoff, jittered over the upper half so that jobs failing together
    do not retry together.
    """
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * float(2 ** max(0, attempts - 1)))
    return ceiling / 2 + rng.random() * ceiling / 2
