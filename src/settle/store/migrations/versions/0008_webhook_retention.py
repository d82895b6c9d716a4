"""Webhook retention: indexes for purging finished deliveries and the events they carried.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_finished",
        "webhook_deliveries",
        ["updated_at"],
        postgresql_where=sa.text("status <> 'pending'"),
        sqlite_where=sa.text("status <> 'pending'"),
    )
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["tenant_id", "event_seq"])
    op.create_index("ix_webhook_events_created_at", "webhook_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_created_at", table_name="webhook_events")
    op.drop_index("ix_webhook_deliveries_event", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_finished", table_name="webhook_deliveries")
