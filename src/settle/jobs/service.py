"""Operators' use cases on jobs: read one, and retry a dead one."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

from settle.jobs.errors import JobNotFoundError, JobNotRetryableError
from settle.jobs.model import JobStatus, JobView
from settle.ports import UnitOfWork

if TYPE_CHECKING:
    from settle.jobs.model import JobQueue

__all__ = ["JobsUnitOfWork", "retry_dead_job"]


class JobsUnitOfWork(UnitOfWork, Protocol):
    @property
    def jobs(self) -> JobQueue: ...


def retry_dead_job(uow: JobsUnitOfWork, tenant_id: uuid.UUID, job_id: uuid.UUID) -> JobView:
    """Queue a dead job to run now, its attempts counted afresh.

    Raises:
        JobNotFoundError: no such job for the tenant.
        JobNotRetryableError: the job is not dead.
    """
    with uow:
        job = uow.jobs.get(tenant_id, job_id, lock=True)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found", param="id")
        if job.status is not JobStatus.DEAD:
            raise JobNotRetryableError(f"job {job_id} is {job.status.value}", param="id")
        uow.jobs.requeue(tenant_id, job_id, now=uow.now())
        retried = uow.jobs.get(tenant_id, job_id)
        uow.commit()
    if retried is None:  # pragma: no cover - read in the same transaction
        raise JobNotFoundError(f"job {job_id} not found", param="id")
    return retried
