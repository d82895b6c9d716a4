"""Deliveries end to end: events committed through the ledger reach a real loopback receiver,
signed over the exact bytes it got; retries, disabling, rotation, replays and tenancy; on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from settle.webhooks.model import event_id
from settle.webhooks.signing import SigningSecret, verify
from settle.worker.webhooks import WebhookRunner

from .receiver import Answer

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .receiver import Receiver
    from .support import Hooks


async def test_an_event_reaches_the_receiver_signed_over_the_exact_bytes(
    hooks: Hooks, runner: WebhookRunner, receiver: Receiver
) -> None:
    hooks.open_account("before")  # committed before the endpoint: never delivered
    endpoint = await hooks.create(receiver.url("/hooks/acme"), description="books")
    wallet = hooks.open_account("wallet")

    assert runner.run_once() == 1
    (request,) = receiver.wait_for(1)

    assert request.method == "POST"
    assert request.path == "/hooks/acme"
    assert request.headers["content-type"] == "application/json"
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload == json.loads(request.body)
    assert payload["id"] == request.headers["webhook-id"] == event_id(2)
    assert payload["object"] == "event"
    assert payload["type"] == "account.created"
    assert payload["sequence"] == 2
    assert payload["created_at"].endswith("Z")
    assert payload["data"] == {
        "object": {
            "id": str(wallet.id), "code": "wallet", "name": "Wallet", "type": "liability",
            "currency": "USD", "parent_id": None, "status": "active", "metadata": {},
        }
    }  # fmt: skip
    (delivery,) = await hooks.deliveries(endpoint["id"])
    assert delivery["event_id"] == "evt_2"
    assert delivery["event_type"] == "account.created"
    assert (delivery["status"], delivery["attempt_count"], delivery["next_attempt_at"]) == (
        "succeeded", 1, None,
    )  # fmt: skip
    (attempt,) = delivery["attempts"]
    assert attempt["result"] == "succeeded"
    assert (attempt["status_code"], attempt["response_body"], attempt["error"]) == (200, "ok", None)

    assert runner.run_once() == 0  # nothing left to send
    assert len(receiver.requests) == 1


async def test_a_receiver_that_was_down_gets_the_event_when_it_is_back(
    hooks: Hooks, runner: WebhookRunner, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url())
    receiver.stop()
    hooks.open_account("wallet")

    assert runner.run_once() == 1  # connection refused
    (delivery,) = await hooks.deliveries(endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 1)
    (refused,) = delivery["attempts"]
    assert (refused["result"], refused["status_code"]) == ("network_error", None)
    assert refused["error"].startswith("ConnectError")
    first_try = datetime.fromisoformat(refused["attempted_at"])
    assert datetime.fromisoformat(delivery["next_attempt_at"]) - first_try >= timedelta(seconds=5)
    assert runner.run_once() == 0  # not due for 5 s

    receiver.start()  # back, but failing for now
    receiver.answer(Answer(503, b"busy, come back later"))
    hooks.clock.advance(6)
    assert runner.run_once() == 1
    (delivery,) = await hooks.deliveries(endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 2)
    second = delivery["attempts"][1]
    assert (second["result"], second["status_code"]) == ("http_error", 503)
    assert second["response_body"] == "busy, come back later"
    assert runner.run_once() == 0  # the next try waits 5 minutes

    hooks.clock.advance(5 * 60 + 1)
    assert runner.run_once() == 1
    (delivery,) = await hooks.deliveries(endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 3)
    assert [a["result"] for a in delivery["attempts"]] == [
        "network_error", "http_error", "succeeded",
    ]  # fmt: skip
    assert [a["number"] for a in delivery["attempts"]] == [1, 2, 3]
    # The same bytes each time; the signature is of the time it was sent (the moved clock).
    first, last = receiver.wait_for(2)
    assert first.body == last.body
    assert first.headers["webhook-id"] == last.headers["webhook-id"]
    secret = SigningSecret(endpoint["secret"])
    assert verify(secret, last.body, last.headers, now=hooks.clock() // 1_000_000) is True
    assert int(last.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) >= 300


async def test_a_410_gone_disables_the_endpoint_and_cancels_what_was_pending(
    hooks: Hooks, runner: WebhookRunner, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url())
    receiver.answer(Answer(500), Answer(410, b"gone for good"))
    hooks.open_account("first")
    assert runner.run_once() == 1  # 500: tried again in 5 s
    hooks.open_account("second")
    assert runner.run_once() == 1  # 410: the endpoint asks for no more

    found = await hooks.endpoint(endpoint["id"])
    assert (found["enabled"], found["disabled_reason"]) == (False, "gone")
    first, second = await hooks.deliveries(endpoint["id"])
    assert (first["status"], first["attempt_count"], first["next_attempt_at"]) == (
        "cancelled", 1, None,
    )  # fmt: skip
    assert (second["status"], second["attempts"][0]["status_code"]) == ("failed", 410)

    hooks.clock.advance(3600)
    hooks.open_account("third")
    assert runner.run_once() == 0
    assert len(await hooks.deliveries(endpoint["id"])) == 2  # nothing for a disabled endpoint
    assert len(receiver.requests) == 2

    retried = await hooks.request(
        "POST", f"/v1/webhook_endpoints/{endpoint['id']}/deliveries/{second['id']}/retry"
    )
    assert retried.status_code == 409, retried.text
    assert retried.json()["code"] == "webhook_endpoint_disabled"


async def test_five_days_of_failures_disable_the_endpoint(
    hooks: Hooks, engine: sa.Engine, receiver: Receiver
) -> None:
    runner = WebhookRunner(
        engine, hooks.clock, allow_private=True, timeout=2.0, concurrency=1, rng=lambda: 0.5
    )
    try:
        endpoint = await hooks.create(receiver.url())
        receiver.default = Answer(500, b"broken")
        hooks.open_account("first")
        assert runner.run_once() == 1  # the failure clock starts
        hooks.clock.advance(4 * 86_400)
        hooks.open_account("second")
        assert runner.run_once() == 2  # both failing, four days in: still enabled
        assert (await hooks.endpoint(endpoint["id"]))["enabled"] is True

        hooks.clock.advance(86_400)
        assert runner.run_once() == 2  # five days: the first recorded disables it
        found = await hooks.endpoint(endpoint["id"])
        assert (found["enabled"], found["disabled_reason"]) == (False, "failing")
        first, second = await hooks.deliveries(endpoint["id"])
        assert (first["status"], first["attempt_count"]) == ("failed", 3)
        assert (second["status"], second["attempt_count"]) == ("cancelled", 2)

        # Enabled again: the reason and the failure clock are cleared, so a failure now starts
        # a new five days.
        enabled = await hooks.request(
            "PATCH", f"/v1/webhook_endpoints/{endpoint['id']}", {"enabled": True}
        )
        assert enabled.status_code == 200, enabled.text
        assert (enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (True, None)
        hooks.open_account("third")
        assert runner.run_once() == 1
        hooks.clock.advance(86_400)
        assert runner.run_once() == 1
        assert (await hooks.endpoint(endpoint["id"]))["enabled"] is True

        receiver.default = Answer(204, b"")
        hooks.clock.advance(3 * 86_400)
        assert runner.run_once() == 1
        deliveries = await hooks.deliveries(endpoint["id"])
        assert [d["status"] for d in deliveries] == ["failed", "cancelled", "succeeded"]
    finally:
        runner.stop()


async def test_a_rotated_secret_signs_beside_the_new_one_until_the_overlap_ends(
    hooks: Hooks, runner: WebhookRunner, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url())
    rotated = await hooks.request(
        "POST",
        f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
        {"expire_previous_in_seconds": 60},
    )
    assert rotated.status_code == 200, rotated.text
    old, new = Webhook(endpoint["secret"]), Webhook(rotated.json()["secret"])

    hooks.open_account("during")
    runner.run_once()
    (during,) = receiver.wait_for(1)
    new_signature, old_signature = during.headers["webhook-signature"].split(" ")
    assert new_signature.startswith("v1,")
    assert old_signature.startswith("v1,")
    assert new.verify(during.body, during.headers) == old.verify(during.body, during.headers)

    hooks.clock.advance(61)
    hooks.open_account("after")
    runner.run_once()
    _, after = receiver.wait_for(2)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert new.verify(after.body, after.headers)["type"] == "account.created"
    with pytest.raises(WebhookVerificationError):
        old.verify(after.body, after.headers)


async def test_a_manual_retry_replays_a_delivered_event(
    hooks: Hooks, runner: WebhookRunner, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url())
    hooks.open_account("wallet")
    runner.run_once()
    (delivery,) = await hooks.deliveries(endpoint["id"])
    assert delivery["status"] == "succeeded"

    path = f"/v1/webhook_endpoints/{endpoint['id']}/deliveries/{delivery['id']}/retry"
    retried = await hooks.request("POST", path, headers={"Idempotency-Key": "replay-1"})
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert (body["id"], body["status"], body["attempt_count"]) == (delivery["id"], "pending", 1)
    assert len(body["attempts"]) == 1
    again = await hooks.request("POST", path, headers={"Idempotency-Key": "replay-1"})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == retried.content

    assert runner.run_once() == 1
    first, replay = receiver.wait_for(2)
    assert replay.body == first.body
    assert replay.headers["webhook-id"] == first.headers["webhook-id"] == delivery["event_id"]
    (delivery,) = await hooks.deliveries(endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 2)
    assert runner.run_once() == 0  # the replay key gave one attempt, not two


async def test_events_of_a_tenant_never_reach_another_tenants_endpoint(
    hooks: Hooks, runner: WebhookRunner, receiver: Receiver
) -> None:
    globex = hooks.other_tenant()
    ours = await hooks.create(receiver.url("/acme"))
    theirs = await hooks.create(receiver.url("/globex"), tenant=globex)
    hooks.open_account("acme-wallet")
    hooks.open_account("globex-wallet", tenant=globex)
    hooks.open_account("globex-bank", tenant=globex)

    assert runner.run_once() == 3
    paths = sorted(r.path for r in receiver.wait_for(3))
    assert paths == ["/acme", "/globex", "/globex"]
    for r in receiver.requests:
        code = json.loads(r.body)["data"]["object"]["code"]
        assert code.startswith(r.path.removeprefix("/"))
    assert len(await hooks.deliveries(ours["id"])) == 1
    assert len(await hooks.deliveries(theirs["id"], tenant=globex)) == 2
    # Neither sees the other's endpoint or its deliveries.
    for path in (f"/v1/webhook_endpoints/{theirs['id']}",
                 f"/v1/webhook_endpoints/{theirs['id']}/deliveries"):  # fmt: skip
        response = await hooks.request("GET", path)
        assert response.status_code == 404
        assert response.json()["code"] == "webhook_endpoint_not_found"
