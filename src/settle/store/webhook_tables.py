"""The webhooks context's tables: endpoints, the fan-out cursor, rendered events, deliveries
and their attempts.

An event's body is rendered once, when it is fanned out, and kept as the exact bytes every
delivery of it sends and signs. Endpoints are never removed (a deleted one keeps its row,
with ``deleted_at``), so deliveries and attempts keep what they refer to.
"""

from __future__ import annotations

import sqlalchemy as sa

from settle.store.tables import JsonDoc, Micros, metadata

__all__ = [
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "webhook_event_cursors",
    "webhook_events",
]

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("enabled_events", JsonDoc, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.String(16), nullable=True),
    sa.Column("metadata", JsonDoc, nullable=False),
    # In the clear: signing needs the secret itself (it is never logged nor listed).
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("previous_secret", sa.String(64), nullable=True),
    sa.Column("previous_secret_expires_at", Micros, nullable=True),
    # The tenant's last event number when the endpoint was created: it gets the later ones.
    sa.Column("start_after_seq", sa.BigInteger, nullable=False),
    # The first failed attempt since the last success (the five-day clock).
    sa.Column("failing_since", Micros, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("deleted_at", Micros, nullable=True),
    sa.CheckConstraint(
        "disabled_reason IS NULL OR disabled_reason IN ('manual', 'gone', 'failing')",
        name="disabled_reason",
    ),
    sa.CheckConstraint(
        "(enabled AND disabled_reason IS NULL) OR (NOT enabled AND disabled_reason IS NOT NULL)",
        name="disabled_has_reason",
    ),
)

# Per tenant with endpoints: the last event the fan-out has turned into deliveries. Its row
# lock serialises the fan-out of a tenant with the creation of its endpoints.
webhook_event_cursors = sa.Table(
    "webhook_event_cursors",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)

# The body of every event delivered to at least one endpoint, rendered once, byte for byte.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Index("ix_webhook_events_created_at", "created_at"),
    sqlite_with_rowid=False,
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("endpoint_id", sa.Uuid, nullable=False),
    sa.Column("event_seq", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Micros, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    # One delivery per event and endpoint, whatever the fan-out does twice.
    sa.UniqueConstraint("tenant_id", "endpoint_id", "event_seq"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "endpoint_id"], ["webhook_endpoints.tenant_id", "webhook_endpoints.id"]
    ),
    sa.ForeignKeyConstraint(
        ["tenant_id", "event_seq"], ["webhook_events.tenant_id", "webhook_events.seq"]
    ),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'cancelled')", name="status"),
    sa.CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    sa.CheckConstraint(
        "status <> 'pending' OR next_attempt_at IS NOT NULL", name="pending_is_scheduled"
    ),
    # What the deliverer's claim scans: pending deliveries by when they are due.
    sa.Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    # What the retention purge scans: finished deliveries by when they finished.
    sa.Index(
        "ix_webhook_deliveries_finished",
        "updated_at",
        postgresql_where=sa.text("status <> 'pending'"),
        sqlite_where=sa.text("status <> 'pending'"),
    ),
    # An event's deliveries: whether a rendered event is still wanted (and its foreign key).
    sa.Index("ix_webhook_deliveries_event", "tenant_id", "event_seq"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("delivery_id", sa.Uuid, primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("attempted_at", Micros, nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("status_code", sa.SmallInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_us", sa.BigInteger, nullable=False),
    # The first 1 KiB of the answer.
    sa.Column("response_body", sa.Text, nullable=True),
    sa.ForeignKeyConstraint(
        ["tenant_id", "delivery_id"], ["webhook_deliveries.tenant_id", "webhook_deliveries.id"]
    ),
    sa.CheckConstraint(
        "result IN ('succeeded', 'http_error', 'timeout', 'network_error', 'refused')",
        name="result",
    ),
    sa.CheckConstraint("number >= 1", name="number_positive"),
)
