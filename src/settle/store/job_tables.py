"""The job queue's table: work the worker runs after a commit (processor calls, refunds...).

A job is written in the same transaction as the state change that needs it (the transactional
outbox), claimed by a worker under a lease, and finished in the transaction that records its
effect. A worker that dies leaves its lease to expire; another worker takes the job again.
"""

from __future__ import annotations

import sqlalchemy as sa

from settle.store.tables import JsonDoc, Micros, metadata

__all__ = ["jobs"]

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", JsonDoc, nullable=False),
    # Enqueueing twice with one dedupe key makes one job (a retried request, a replayed event).
    sa.Column("dedupe_key", sa.String(255), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("run_at", Micros, nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", Micros, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.UniqueConstraint("dedupe_key"),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'dead')", name="status"),
    sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
    # What the claim scans: jobs not finished, by when they are due.
    sa.Index(
        "ix_jobs_due",
        "run_at",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
        sqlite_where=sa.text("status IN ('queued', 'running')"),
    ),
    sa.Index(None, "tenant_id", "status", "created_at"),
)
