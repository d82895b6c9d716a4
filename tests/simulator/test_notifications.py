"""Signed notifications reach a real loopback receiver and verify with standardwebhooks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from standardwebhooks import Webhook

from settle.simulator import verify_notification

if TYPE_CHECKING:
    from .support import Receiver, Sim

SECRET = "whsec_" + base64.b64encode(b"a notification secret of 32 byte").decode()


@pytest.fixture
def notifying(make_sim: Callable[..., Sim], receiver: Receiver) -> Sim:
    return make_sim(
        name="sim_a",
        notify_url=receiver.url,
        notify_secret=SECRET,
        notify_backoff_seconds=0.05,
        notify_attempts=3,
    )


async def test_every_completed_operation_is_notified_signed(
    notifying: Sim, receiver: Receiver
) -> None:
    sim = notifying
    auth = (await sim.authorize("k-auth", amount=1000)).json()
    captured = (await sim.post(f"/v1/authorizations/{auth['id']}/capture", "k-cap", {})).json()
    refund = (
        await sim.post("/v1/refunds", "k-re", {"authorization": auth["id"], "amount": 300})
    ).json()
    other = (await sim.authorize("k-auth-2", reference="pi_2")).json()
    voided = (await sim.post(f"/v1/authorizations/{other['id']}/void", "k-void", {})).json()
    declined = (await sim.authorize("k-decl", card="4000000000000002")).json()
    await sim.authorize("k-auth", amount=1000)  # a replay: not notified again

    deliveries = await receiver.wait_for(6)
    await sim.simulator.notifier.drain(1.0)  # type: ignore[union-attr]

    webhook = Webhook(SECRET)
    events = {}
    for delivery in deliveries:
        payload = webhook.verify(delivery.body, delivery.headers)
        assert verify_notification(SECRET, delivery.headers, delivery.body, now=int(time.time()))
        assert delivery.headers["webhook-id"].startswith("msg_")
        events[payload["idempotency_key"]] = payload
    assert len(receiver.received()) == 6
    assert {k: (e["type"], e["processor"], e["data"]) for k, e in events.items()} == {
        "k-auth": ("authorization.authorized", "sim_a", auth),
        "k-cap": ("authorization.captured", "sim_a", captured),
        "k-re": ("refund.succeeded", "sim_a", refund),
        "k-auth-2": ("authorization.authorized", "sim_a", other),
        "k-void": ("authorization.voided", "sim_a", voided),
        "k-decl": ("authorization.declined", "sim_a", declined),
    }


async def test_a_failed_delivery_is_retried_with_the_same_id(
    notifying: Sim, receiver: Receiver
) -> None:
    receiver.answers.extend([500, 503])

    await notifying.authorize("k-auth")
    deliveries = await receiver.wait_for(3)

    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    for delivery in deliveries:
        Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert notifying.simulator.notifier is not None
    await notifying.simulator.notifier.drain(1.0)
    assert (notifying.simulator.notifier.delivered, notifying.simulator.notifier.abandoned) == (
        1,
        0,
    )


async def test_an_unreachable_receiver_never_holds_up_the_answer(
    make_sim: Callable[..., Sim],
) -> None:
    sim = make_sim(
        notify_url="http://127.0.0.1:9/hooks",
        notify_secret=SECRET,
        notify_attempts=2,
        notify_backoff_seconds=0.01,
    )

    started = time.monotonic()
    response = await sim.authorize("k-auth")

    assert response.status_code == 201
    assert time.monotonic() - started < 0.5
    notifier = sim.simulator.notifier
    assert notifier is not None
    await notifier.drain(5.0)
    assert (notifier.delivered, notifier.abandoned) == (0, 1)


def test_a_tampered_or_stale_notification_does_not_verify() -> None:
    body = json.dumps({"type": "refund.succeeded"}).encode()
    from settle.simulator import sign_notification

    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1000",
        "webhook-signature": sign_notification(SECRET, "msg_1", 1000, body),
    }

    assert verify_notification(SECRET, headers, body, now=1000)
    assert not verify_notification(SECRET, headers, body + b" ", now=1000)
    assert not verify_notification(SECRET, headers, body, now=1000 + 301)
    other = "whsec_" + base64.b64encode(b"another secret").decode()
    assert not verify_notification(other, headers, body, now=1000)
