"""The payments context's tables: intents, their processor attempts, and refunds.

Amounts are BIGINT minor units. The database guards what must never break: refunds never
exceed what was received, an intent never holds more than it was created for.
"""

from __future__ import annotations

import sqlalchemy as sa

from settle.store.tables import JsonDoc, Micros, metadata

__all__ = ["payment_attempts", "payment_intents", "refunds"]

payment_intents = sa.Table(
    "payment_intents",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("capture_method", sa.String(16), nullable=False),
    sa.Column("customer", sa.String(255), nullable=True),
    sa.Column("payment_method", sa.String(64), nullable=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("metadata", JsonDoc, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("amount_capturable", sa.BigInteger, nullable=False),
    sa.Column("amount_received", sa.BigInteger, nullable=False),
    sa.Column("amount_refunded", sa.BigInteger, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("action", sa.String(16), nullable=True),
    sa.Column("capture_amount", sa.BigInteger, nullable=True),
    sa.Column("processor", sa.String(64), nullable=True),
    sa.Column("authorization_ref", sa.String(128), nullable=True),
    sa.Column("hold_transfer_id", sa.Uuid, nullable=True),
    sa.Column("last_error", JsonDoc, nullable=True),
    sa.Column("cancellation_reason", sa.String(64), nullable=True),
    sa.Column("canceled_at", Micros, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.CheckConstraint(
        "status IN ('requires_payment_method', 'requires_confirmation', 'processing',"
        " 'requires_capture', 'succeeded', 'canceled', 'failed')",
        name="status",
    ),
    sa.CheckConstraint("capture_method IN ('automatic', 'manual')", name="capture_method"),
    sa.CheckConstraint(
        "amount > 0 AND amount_capturable >= 0 AND amount_capturable <= amount"
        " AND amount_received >= 0 AND amount_received <= amount AND fee >= 0",
        name="amounts",
    ),
    sa.CheckConstraint(
        "amount_refunded >= 0 AND amount_refunded <= amount_received", name="refunds_within"
    ),
    sa.Index(None, "tenant_id", "created_at", "id"),
)

payment_attempts = sa.Table(
    "payment_attempts",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("intent_id", sa.Uuid, nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("processor", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reference", sa.String(128), nullable=True),
    sa.Column("decline_code", sa.String(64), nullable=True),
    sa.Column("do_not_retry", sa.Boolean, nullable=False),
    sa.Column("latency_us", sa.BigInteger, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("completed_at", Micros, nullable=True),
    sa.CheckConstraint("operation IN ('authorize', 'capture', 'void')", name="operation"),
    sa.CheckConstraint(
        "status IN ('pending', 'approved', 'declined', 'not_processed', 'unknown')",
        name="status",
    ),
    sa.Index(None, "tenant_id", "intent_id", "created_at"),
)

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("intent_id", sa.Uuid, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("hold_transfer_id", sa.Uuid, nullable=True),
    sa.Column("processor", sa.String(64), nullable=True),
    sa.Column("reference", sa.String(128), nullable=True),
    sa.Column("failure_code", sa.String(64), nullable=True),
    sa.Column("metadata", JsonDoc, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "intent_id"], ["payment_intents.tenant_id", "payment_intents.id"]
    ),
    sa.Index(None, "tenant_id", "intent_id", "created_at"),
    sa.Index(None, "tenant_id", "created_at", "id"),
)
