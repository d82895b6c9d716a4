"""Payments: intents, their processor attempts, and refunds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_attempts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("intent_id", sa.Uuid(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("processor", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        sa.Column("do_not_retry", sa.Boolean(), nullable=False),
        sa.Column("latency_us", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "operation IN ('authorize', 'capture', 'void')",
            name=op.f("ck_payment_attempts_operation"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'declined', 'not_processed', 'unknown')",
            name=op.f("ck_payment_attempts_status"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_payment_attempts")),
    )
    op.create_index(
        op.f("ix_payment_attempts_tenant_id_intent_id_created_at"),
        "payment_attempts",
        ["tenant_id", "intent_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "payment_intents",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("capture_method", sa.String(length=16), nullable=False),
        sa.Column("customer", sa.String(length=255), nullable=True),
        sa.Column("payment_method", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "metadata", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("amount_capturable", sa.BigInteger(), nullable=False),
        sa.Column("amount_received", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=True),
        sa.Column("capture_amount", sa.BigInteger(), nullable=True),
        sa.Column("processor", sa.String(length=64), nullable=True),
        sa.Column("authorization_ref", sa.String(length=128), nullable=True),
        sa.Column("hold_transfer_id", sa.Uuid(), nullable=True),
        sa.Column(
            "last_error", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("cancellation_reason", sa.String(length=64), nullable=True),
        sa.Column("canceled_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "capture_method IN ('automatic', 'manual')",
            name=op.f("ck_payment_intents_capture_method"),
        ),
        sa.CheckConstraint(
            "status IN ('requires_payment_method', 'requires_confirmation', 'processing', 'requires_capture', 'succeeded', 'canceled', 'failed')",
            name=op.f("ck_payment_intents_status"),
        ),
        sa.CheckConstraint(
            "amount > 0 AND amount_capturable >= 0 AND amount_capturable <= amount AND amount_received >= 0 AND amount_received <= amount AND fee >= 0",
            name=op.f("ck_payment_intents_amounts"),
        ),
        sa.CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_received",
            name=op.f("ck_payment_intents_refunds_within"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_payment_intents")),
    )
    op.create_index(
        op.f("ix_payment_intents_tenant_id_created_at_id"),
        "payment_intents",
        ["tenant_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "refunds",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("intent_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hold_transfer_id", sa.Uuid(), nullable=True),
        sa.Column("processor", sa.String(length=64), nullable=True),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column(
            "metadata", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_refunds_status")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "intent_id"],
            ["payment_intents.tenant_id", "payment_intents.id"],
            name=op.f("fk_refunds_tenant_id_intent_id"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_refunds")),
    )
    op.create_index(
        op.f("ix_refunds_tenant_id_created_at_id"),
        "refunds",
        ["tenant_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_refunds_tenant_id_intent_id_created_at"),
        "refunds",
        ["tenant_id", "intent_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_refunds_tenant_id_intent_id_created_at"), table_name="refunds")
    op.drop_index(op.f("ix_refunds_tenant_id_created_at_id"), table_name="refunds")
    op.drop_table("refunds")
    op.drop_index(op.f("ix_payment_intents_tenant_id_created_at_id"), table_name="payment_intents")
    op.drop_table("payment_intents")
    op.drop_index(
        op.f("ix_payment_attempts_tenant_id_intent_id_created_at"), table_name="payment_attempts"
    )
    op.drop_table("payment_attempts")
