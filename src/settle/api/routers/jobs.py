"""``/v1/jobs``: the worker's queue as operators see it; dead jobs are retried from here."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from settle.api.deps import AdminCaller
from settle.api.idempotency import JSON, AdminKeyedDep, idempotent_call
from settle.api.payment_schemas import JobPublic, JobsPublic
from settle.api.render import dump
from settle.api.routers.common import Limit
from settle.clock import from_micros
from settle.jobs.errors import JobNotFoundError
from settle.jobs.model import JobStatus, JobView
from settle.jobs.service import retry_dead_job
from settle.store.jobs_repo import SqlJobQueue, jobs_page
from settle.store.uow import SqlUnitOfWork

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_json(job: JobView) -> dict[str, Any]:
    return {
        "id": job.id,
        "object": "job",
        "kind": job.kind,
        "status": job.status.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": from_micros(job.run_at),
        "last_error": job.last_error,
        "payload": dict(job.payload),
        "created_at": from_micros(job.created_at),
        "updated_at": from_micros(job.updated_at),
    }


@router.get("", response_model=JobsPublic)
def list_jobs(
    caller: AdminCaller,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
    status: JobStatus | None = None,
) -> Response:
    """The tenant's jobs, newest first; `status=dead` lists the dead letters."""
    with caller.state.store.read() as repo:
        found, more = jobs_page(
            repo.conn, caller.tenant_id, status=status, limit=limit, starting_after=starting_after
        )
    return Response(dump({"data": [job_json(j) for j in found], "has_more": more}), media_type=JSON)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: uuid.UUID, caller: AdminCaller) -> Response:
    with caller.state.store.read() as repo:
        job = SqlJobQueue(repo.conn).get(caller.tenant_id, job_id)
    if job is None:
        raise JobNotFoundError(f"job {job_id} not found", param="id")
    return Response(dump(job_json(job)), media_type=JSON)


@router.post("/{job_id}/retry", response_model=JobPublic)
async def retry_job(job_id: uuid.UUID, keyed: AdminKeyedDep) -> Response:
    """Run a dead job again now, with its attempts counted afresh."""

    def effect(uow: SqlUnitOfWork) -> JobView:
        return retry_dead_job(uow, keyed.tenant_id, job_id)

    def render(job: JobView) -> tuple[int, bytes]:
        return 200, dump(job_json(job))

    return await idempotent_call(keyed, effect, render)
