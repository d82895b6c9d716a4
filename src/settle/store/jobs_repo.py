"""The job queue in SQL: enqueue inside a unit of work; claim, finish, fail and retry.

A claim sets ``run_at`` to the lease's end, so one index on ``run_at`` finds both jobs that are
due and jobs whose worker died holding them (``status = 'running'`` with a lapsed lease).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from settle.jobs.model import Job, JobStatus, JobView, NewJob
from settle.store import job_tables
from settle.store.db import write_transaction

J = job_tables.jobs

__all__ = [
    "SqlJobQueue",
    "claim_jobs",
    "due_job_kinds",
    "fail_job",
    "finish_job",
    "finish_jobs",
    "get_job",
    "jobs_page",
    "purge_finished_jobs",
    "requeue_job",
    "reschedule_job",
]

_LAST_ERROR_LIMIT = 2000


class SqlJobQueue:
    """:class:`settle.jobs.JobQueue` on a unit of work's connection."""

    def __init__(self, connection: sa.Connection) -> None:
        self.conn = connection

    def enqueue(self, job: NewJob, *, now: int) -> uuid.UUID | None:
        job_id = uuid.uuid4()
        values: dict[str, Any] = {
            "id": job_id,
            "tenant_id": job.tenant_id,
            "kind": job.kind,
            "payload": dict(job.payload),
            "dedupe_key": job.dedupe_key,
            "status": JobStatus.QUEUED.value,
            "attempts": 0,
            "max_attempts": job.max_attempts,
            "run_at": job.run_at,
            "created_at": now,
            "updated_at": now,
        }
        inserted = self.conn.execute(_enqueue_statement(self.conn), values).first()
        return None if inserted is None else job_id

    def get(self, tenant_id: uuid.UUID, job_id: uuid.UUID, *, lock: bool = False) -> JobView | None:
        query = sa.select(J).where(J.c.tenant_id == tenant_id, J.c.id == job_id)
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else _row(row)

    def requeue(self, tenant_id: uuid.UUID, job_id: uuid.UUID, *, now: int) -> bool:
        return requeue_job(self.conn, tenant_id, job_id, now=now)


def _insert(conn: sa.Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(J)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(J)


_ENQUEUE: dict[str, Any] = {}


def _enqueue_statement(conn: sa.Connection) -> Any:
    """The enqueue, built once per dialect (a job with a taken dedupe key is not added;
    NULL keys never conflict)."""
    name = conn.dialect.name
    if name not in _ENQUEUE:
        _ENQUEUE[name] = (
            _insert(conn).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(J.c.id)
        )
    return _ENQUEUE[name]


def due_job_kinds(
    engine: sa.Engine, *, now: int, kinds: Sequence[str], scan: int = 500
) -> set[str]:
    """The kinds among ``kinds`` with a job due now (or whose lease lapsed), by a read of
    the ``scan`` most overdue; all of ``kinds`` when that many are due (a kind behind them
    must not starve)."""
    due = (
        sa.select(J.c.kind)
        .where(
            J.c.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)),
            J.c.run_at <= now,
            J.c.kind.in_(list(kinds)),
        )
        .order_by(J.c.run_at)
        .limit(scan)
    )
    with engine.connect() as conn:
        found = list(conn.execute(due).scalars())
        conn.rollback()
    return set(kinds) if len(found) >= scan else set(found)


def claim_jobs(
    engine: sa.Engine,
    *,
    worker_id: str,
    now: int,
    lease_us: int,
    limit: int,
    kinds: Sequence[str] | None = None,
) -> list[Job]:
    """Claim up to ``limit`` due jobs (or jobs whose lease lapsed) in one transaction.

    PostgreSQL skips rows other workers are claiming (``FOR UPDATE SKIP LOCKED``); SQLite has
    one writer at a time. A job claimed more often than it may run goes dead instead: a job
    that kills its worker every time must not kill every worker in turn.
    """
    due = sa.select(J.c.id).where(
        J.c.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)), J.c.run_at <= now
    )
    if kinds is not None:
        due = due.where(J.c.kind.in_(list(kinds)))
    due = due.order_by(J.c.run_at).limit(limit)
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        rows = conn.execute(
            J.update()
            .where(J.c.id.in_(due.scalar_subquery()))
            .values(
                status=JobStatus.RUNNING.value,
                attempts=J.c.attempts + 1,
                lease_owner=worker_id,
                lease_until=now + lease_us,
                run_at=now + lease_us,
                updated_at=now,
            )
            .returning(J.c.id, J.c.tenant_id, J.c.kind, J.c.payload, J.c.attempts, J.c.max_attempts)
        ).all()
        claimed: list[Job] = []
        dead: list[uuid.UUID] = []
        for r in rows:
            if r.attempts > r.max_attempts:
                dead.append(r.id)
                continue
            claimed.append(
                Job(r.id, r.tenant_id, r.kind, r.payload, r.attempts, r.max_attempts, worker_id)
            )
        if dead:
            conn.execute(
                J.update()
                .where(J.c.id.in_(dead))
                .values(
                    status=JobStatus.DEAD.value,
                    lease_owner=None,
                    lease_until=None,
                    last_error="its worker stopped before finishing it, every allowed attempt",
                    updated_at=now,
                )
            )
    claimed.sort(key=lambda j: j.id.int)  # stable for tests; run order is concurrent anyway
    return claimed


def _owned(job: Job) -> Any:
    # Only the lease holder may settle a job: a worker whose lease lapsed (and whose job was
    # taken by another) must not overwrite the newer run's outcome.
    return sa.and_(J.c.id == job.id, J.c.lease_owner == job.lease_owner, J.c.status == "running")


def finish_job(engine: sa.Engine, job: Job, *, now: int) -> bool:
    """Mark ``job`` succeeded if its run still holds it; whether it did."""
    return finish_jobs(engine, [job], now=now) == 1


def finish_jobs(engine: sa.Engine, jobs: Sequence[Job], *, now: int) -> int:
    """:func:`finish_job` for many jobs in one statement; how many were still held."""
    by_owner: dict[str, list[uuid.UUID]] = {}
    for job in jobs:
        by_owner.setdefault(job.lease_owner, []).append(job.id)
    finished = 0
    with write_transaction(engine) as conn:
        for owner, ids in sorted(by_owner.items()):  # one owner: a runner's own claims
            done = conn.execute(
                J.update()
                .where(J.c.id.in_(ids), J.c.lease_owner == owner, J.c.status == "running")
                .values(
                    status=JobStatus.SUCCEEDED.value,
                    lease_owner=None,
                    lease_until=None,
                    last_error=None,
                    updated_at=now,
                )
            )
            finished += done.rowcount
    return finished


def fail_job(engine: sa.Engine, job: Job, error: str, *, now: int, retry_at: int) -> JobStatus:
    """Record a failed run: queued again at ``retry_at``, or dead after the last attempt."""
    status = JobStatus.DEAD if job.attempts >= job.max_attempts else JobStatus.QUEUED
    with write_transaction(engine) as conn:
        conn.execute(
            J.update()
            .where(_owned(job))
            .values(
                status=status.value,
                lease_owner=None,
                lease_until=None,
                run_at=retry_at,
                last_error=error[:_LAST_ERROR_LIMIT],
                updated_at=now,
            )
        )
    return status


def reschedule_job(engine: sa.Engine, job: Job, *, now: int, run_at: int, reason: str) -> None:
    """Run the job again at ``run_at``; this run does not count against its attempts."""
    with write_transaction(engine) as conn:
        conn.execute(
            J.update()
            .where(_owned(job))
            .values(
                status=JobStatus.QUEUED.value,
                attempts=J.c.attempts - 1,
                lease_owner=None,
                lease_until=None,
                run_at=run_at,
                last_error=reason[:_LAST_ERROR_LIMIT] or None,
                updated_at=now,
            )
        )


def _row(r: Any) -> JobView:
    return JobView(
        r.id, r.tenant_id, r.kind, dict(r.payload), JobStatus(r.status), r.attempts,
        r.max_attempts, r.run_at, r.last_error, r.created_at, r.updated_at,
    )  # fmt: skip


def get_job(conn: sa.Connection, tenant_id: uuid.UUID, job_id: uuid.UUID) -> JobView | None:
    row = conn.execute(sa.select(J).where(J.c.tenant_id == tenant_id, J.c.id == job_id)).first()
    return None if row is None else _row(row)


def jobs_page(
    conn: sa.Connection,
    tenant_id: uuid.UUID,
    *,
    status: JobStatus | None,
    limit: int,
    starting_after: uuid.UUID | None = None,
) -> tuple[list[JobView], bool]:
    """A tenant's jobs, newest first, optionally of one status; and whether more follow."""
    query = sa.select(J).where(J.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(J.c.status == status.value)
    if starting_after is not None:
        after = conn.execute(
            sa.select(J.c.created_at).where(J.c.tenant_id == tenant_id, J.c.id == starting_after)
        ).scalar()
        if after is None:
            return [], False
        query = query.where(
            sa.or_(
                J.c.created_at < after, sa.and_(J.c.created_at == after, J.c.id < starting_after)
            )
        )
    rows = conn.execute(query.order_by(J.c.created_at.desc(), J.c.id.desc()).limit(limit + 1))
    found = [_row(r) for r in rows]
    return found[:limit], len(found) > limit


def requeue_job(conn: sa.Connection, tenant_id: uuid.UUID, job_id: uuid.UUID, *, now: int) -> bool:
    """An operator's retry of a dead job: queued now, with its attempts counted afresh."""
    done = conn.execute(
        J.update()
        .where(J.c.tenant_id == tenant_id, J.c.id == job_id, J.c.status == JobStatus.DEAD.value)
        .values(
            status=JobStatus.QUEUED.value, attempts=0, run_at=now, updated_at=now, last_error=None
        )
    )
    return bool(done.rowcount)


def purge_finished_jobs(engine: sa.Engine, before: int, *, chunk: int = 10_000) -> int:
    """Delete succeeded jobs last changed before ``before`` (microseconds), ``chunk`` at a
    time; count them. Dead jobs stay until an operator retries them."""
    purged = 0
    while True:
        with write_transaction(engine) as conn:
            doomed = (
                sa.select(J.c.id)
                .where(J.c.status == JobStatus.SUCCEEDED.value, J.c.updated_at < before)
                .limit(chunk)
            )
            deleted = conn.execute(J.delete().where(J.c.id.in_(doomed.scalar_subquery()))).rowcount
        purged += deleted
        if deleted < chunk:
            return purged
