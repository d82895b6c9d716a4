"""Webhook retention: finished deliveries, their attempts, and the rendered events no
delivery needs any more are deleted once older than the retention, a chunk a transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from settle.store.db import write_transaction
from settle.store.webhook_tables import webhook_attempts, webhook_deliveries, webhook_events
from settle.webhooks.model import DeliveryStatus

__all__ = ["purge_webhook_history"]

D, AT, V = webhook_deliveries, webhook_attempts, webhook_events
_KEYS: Any = sa.bindparam("b_keys", expanding=True)


def purge_webhook_history(engine: sa.Engine, before: int, *, chunk: int = 5_000) -> int:
    """Delete deliveries finished (succeeded, failed or cancelled) before ``before``
    (microseconds) with their attempts, then the rendered events created before it that no
    delivery refers to; how many deliveries went. Pending deliveries and their events stay,
    however old."""
    purged = 0
    while True:
        with write_transaction(engine) as conn:
            keys = [
                (r.tenant_id, r.id)
                for r in conn.execute(
                    sa.select(D.c.tenant_id, D.c.id)
                    .where(D.c.status != DeliveryStatus.PENDING.value, D.c.updated_at < before)
                    .limit(chunk)
                )
            ]
            if keys:
                conn.execute(
                    AT.delete().where(sa.tuple_(AT.c.tenant_id, AT.c.delivery_id).in_(_KEYS)),
                    {"b_keys": keys},
                )
                conn.execute(
                    D.delete().where(sa.tuple_(D.c.tenant_id, D.c.id).in_(_KEYS)),
                    {"b_keys": keys},
                )
        purged += len(keys)
        if len(keys) < chunk:
            break
    while True:
        with write_transaction(engine) as conn:
            wanted = (
                sa.select(D.c.id)
                .where(D.c.tenant_id == V.c.tenant_id, D.c.event_seq == V.c.seq)
                .exists()
            )
            unwanted = [
                (r.tenant_id, r.seq)
                for r in conn.execute(
                    sa.select(V.c.tenant_id, V.c.seq)
                    .where(V.c.created_at < before, ~wanted)
                    .limit(chunk)
                )
            ]
            if unwanted:
                conn.execute(
                    V.delete().where(sa.tuple_(V.c.tenant_id, V.c.seq).in_(_KEYS)),
                    {"b_keys": unwanted},
                )
        if len(unwanted) < chunk:
            return purged
