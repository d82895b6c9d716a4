"""Retention: finished deliveries, their attempts and the event bodies no delivery needs are
purged once older than the retention; pending deliveries and their bodies stay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from settle.store.webhook_tables import webhook_attempts, webhook_deliveries, webhook_events
from settle.store.webhooks_purge import purge_webhook_history

if TYPE_CHECKING:
    from settle.worker.webhooks import WebhookRunner

    from .receiver import Receiver
    from .support import Hooks

DAY = 86_400


def _counts(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (webhook_deliveries, webhook_attempts, webhook_events)
        )


async def test_finished_deliveries_go_after_the_retention_and_pending_ones_stay(
    hooks: Hooks, engine: sa.Engine, runner: WebhookRunner, receiver: Receiver
) -> None:
    ok = await hooks.create(receiver.url("/ok"))
    hooks.open_account("old-1")
    hooks.open_account("old-2")
    assert runner.run_once() == 2  # both delivered to /ok
    broken = await hooks.create("http://127.0.0.1:9/broken")  # nothing listens there
    hooks.open_account("failing")  # to both endpoints: /ok succeeds, /broken fails
    assert runner.run_once() == 2
    assert _counts(engine) == (4, 4, 3)

    hooks.clock.advance(10 * DAY)
    assert purge_webhook_history(engine, hooks.clock() - 30 * DAY * 1_000_000) == 0
    hooks.clock.advance(25 * DAY)  # 35 days on: past a 30-day retention
    purged = purge_webhook_history(engine, hooks.clock() - 30 * DAY * 1_000_000, chunk=1)

    # The three finished deliveries went with their attempts; the failing one is still
    # pending (it retries), and so its event's body stays for it.
    assert purged == 3
    deliveries, attempts, events = _counts(engine)
    assert (deliveries, attempts, events) == (1, 1, 1)
    assert await hooks.deliveries(ok["id"]) == []
    (pending,) = await hooks.deliveries(broken["id"])
    assert pending["status"] == "pending"
    assert pending["event_type"] == "account.created"
    # It can still be sent: its body is there.
    moved = await hooks.request(
        "PATCH", f"/v1/webhook_endpoints/{broken['id']}", {"url": receiver.url("/fixed")}
    )
    assert moved.status_code == 200, moved.text
    assert runner.run_once() == 1
    (done,) = await hooks.deliveries(broken["id"])
    assert done["status"] == "succeeded"
