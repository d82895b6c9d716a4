"""The fan-out: committed events become one delivery per endpoint that wants them, rendered
once as the exact bytes every attempt sends, a page at a time; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import sqlalchemy as sa

from settle.ledger.service import update_account
from settle.store.uow import SqlUnitOfWork
from settle.store.webhook_tables import webhook_event_cursors, webhook_events
from settle.worker.webhooks import fan_out

if TYPE_CHECKING:
    from settle.worker.webhooks import WebhookRunner

    from .receiver import Receiver
    from .support import Hooks


def _rendered(engine: sa.Engine, tenant_id: uuid.UUID) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(webhook_events.c.seq)
            .where(webhook_events.c.tenant_id == tenant_id)
            .order_by(webhook_events.c.seq)
        )
        return [r[0] for r in rows]


def _cursor(engine: sa.Engine, tenant_id: uuid.UUID) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(webhook_event_cursors.c.last_seq).where(
                    webhook_event_cursors.c.tenant_id == tenant_id
                )
            ).scalar_one()
        )


async def test_fan_out_in_pages_makes_one_delivery_per_wanting_endpoint(
    hooks: Hooks, engine: sa.Engine
) -> None:
    everything = await hooks.create("http://127.0.0.1:9/all", ["*"])
    created = await hooks.create("http://127.0.0.1:9/created", ["account.created"])
    accounts = await hooks.create("http://127.0.0.1:9/accounts", ["account.*"])
    transfers = await hooks.create("http://127.0.0.1:9/transfers", ["transfer.*"])
    disabled = await hooks.create("http://127.0.0.1:9/off", ["*"], enabled=False)
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "manual")
    opened = [hooks.open_account(f"wallet-{i}") for i in range(7)]
    update_account(SqlUnitOfWork(engine, hooks.clock), hooks.tenant.id, opened[0].id, name="Main")

    assert fan_out(engine, hooks.clock, page=3) == 1  # one tenant, three pages
    assert fan_out(engine, hooks.clock, page=3) == 0  # nothing new

    def seqs(deliveries: list[dict[str, object]]) -> list[object]:
        return [d["event_id"] for d in deliveries]

    all_events = [f"evt_{n}" for n in range(1, 9)]
    assert seqs(await hooks.deliveries(everything["id"])) == all_events
    assert seqs(await hooks.deliveries(created["id"])) == all_events[:7]
    assert seqs(await hooks.deliveries(accounts["id"])) == all_events
    assert await hooks.deliveries(transfers["id"]) == []
    assert await hooks.deliveries(disabled["id"]) == []
    first = (await hooks.deliveries(everything["id"]))[0]
    assert (first["status"], first["attempt_count"], first["attempts"]) == ("pending", 0, [])
    assert first["next_attempt_at"] == first["created_at"]  # due at once
    assert _rendered(engine, hooks.tenant.id) == list(range(1, 9))  # each event rendered once
    assert _cursor(engine, hooks.tenant.id) == 8


async def test_a_tenant_without_active_endpoints_moves_its_cursor_without_reading(
    hooks: Hooks, engine: sa.Engine
) -> None:
    endpoint = await hooks.create("http://127.0.0.1:9/hooks")
    off = await hooks.request("PATCH", f"/v1/webhook_endpoints/{endpoint['id']}",
                              {"enabled": False})  # fmt: skip
    assert off.json()["disabled_reason"] == "manual"
    for i in range(3):
        hooks.open_account(f"wallet-{i}")
    assert fan_out(engine, hooks.clock) == 1
    assert _cursor(engine, hooks.tenant.id) == 3
    assert _rendered(engine, hooks.tenant.id) == []
    assert await hooks.deliveries(endpoint["id"]) == []


async def test_a_transfer_event_carries_the_transfer_as_the_event_feed_shows_it(
    hooks: Hooks, runner: WebhookRunner, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url(), ["transfer.*"])
    bank = await hooks.request("POST", "/v1/accounts", {"code": "bank", "name": "Bank",
                               "type": "asset", "currency": "USD"})  # fmt: skip
    wallet = await hooks.request("POST", "/v1/accounts", {"code": "wallet", "name": "Wallet",
                                 "type": "liability", "currency": "USD"})  # fmt: skip
    moved = await hooks.request(
        "POST",
        "/v1/transfers",
        {"debit_account_id": bank.json()["id"], "credit_account_id": wallet.json()["id"],
         "amount": 12_345, "currency": "USD", "metadata": {"order": "A-1"}},
    )  # fmt: skip
    assert moved.status_code == 201, moved.text

    assert runner.run_once() == 1  # the account events are not asked for
    (request,) = receiver.wait_for(1)
    body = json.loads(request.body)
    feed = await hooks.request("GET", "/v1/events", params={"limit": 100})
    (event,) = [e for e in feed.json()["data"] if e["id"] == body["id"]]
    assert body["type"] == event["type"] == "transfer.posted"
    assert body["sequence"] == event["seq"] == 3
    assert body["created_at"] == event["created_at"]
    assert body["data"]["object"] == event["data"] == moved.json()
    assert (await hooks.deliveries(endpoint["id"]))[0]["status"] == "succeeded"


async def test_a_payload_sequence_orders_its_objects_events(
    hooks: Hooks, engine: sa.Engine, runner: WebhookRunner, receiver: Receiver
) -> None:
    await hooks.create(receiver.url(), ["payment_intent.*"])
    intent = uuid.uuid4()
    payload = {"id": str(intent), "object": "payment_intent", "status": "succeeded",
               "sequence": 42}  # fmt: skip
    with SqlUnitOfWork(engine, hooks.clock) as uow:
        uow.ledger.append_event(hooks.tenant.id, "payment_intent.succeeded", intent, payload)
        uow.ledger.append_event(hooks.tenant.id, "payment_intentional.x", intent, {"n": 1})
        uow.ledger.append_event(hooks.tenant.id, "refund.created", intent, {"sequence": True})
        uow.commit()

    assert runner.run_once() == 1
    (request,) = receiver.wait_for(1)
    body = json.loads(request.body)
    assert (body["id"], body["type"], body["sequence"]) == ("evt_1", "payment_intent.succeeded", 42)
    assert body["data"] == {"object": payload}
