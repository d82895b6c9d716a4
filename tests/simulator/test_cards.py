"""Each test card, through the simulator's HTTP API (in process)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest

from .support import APPROVE, LATE, PROCESSING_ERROR, TIMEOUT, Sim

AUTH_ID = re.compile(r"^auth_[0-9a-f]{16}$")


async def test_an_approved_authorization_is_held_and_recorded(sim: Sim) -> None:
    response = await sim.authorize("key-1", amount=1250, reference="pi_42")

    assert response.status_code == 201
    body = response.json()
    assert AUTH_ID.match(body["id"])
    assert body == {
        "id": body["id"],
        "object": "authorization",
        "status": "authorized",
        "amount": 1250,
        "captured_amount": 0,
        "refunded_amount": 0,
        "currency": "USD",
        "card_last4": "4242",
        "reference": "pi_42",
        "idempotency_key": "key-1",
        "decline_code": None,
        "do_not_retry": False,
        "created_at": "2023-11-14T22:13:20.000000Z",
    }
    assert (await sim.client.get(f"/v1/authorizations/{body['id']}")).json() == body
    assert await sim.authorizations("pi_42") == [body]


async def test_authorize_with_capture_charges_the_whole_amount_at_once(sim: Sim) -> None:
    body = (await sim.authorize("key-1", amount=990, capture=True)).json()

    assert (body["status"], body["amount"], body["captured_amount"]) == ("captured", 990, 990)


@pytest.mark.parametrize(
    ("card", "code", "do_not_retry"),
    [
        ("4000000000000002", "card_declined", False),
        ("4000000000009995", "insufficient_funds", False),
        ("4000000000000069", "expired_card", True),
        ("4100000000000019", "stolen_card", True),
    ],
)
async def test_a_declined_card_is_refused_and_recorded_as_declined(
    sim: Sim, card: str, code: str, do_not_retry: bool
) -> None:
    response = await sim.authorize("key-1", card=card)

    assert response.status_code == 402
    body = response.json()
    assert (body["status"], body["decline_code"], body["do_not_retry"]) == (
        "declined",
        code,
        do_not_retry,
    )
    assert (body["amount"], body["captured_amount"]) == (1000, 0)
    assert await sim.authorizations() == [body]
    assert (await sim.lookup("key-1")).json() == {
        "status": "completed",
        "http_status": 402,
        "response": body,
    }


async def test_the_processing_error_card_records_nothing_and_a_repeat_runs_afresh(
    sim: Sim,
) -> None:
    first = await sim.authorize("key-1", card=PROCESSING_ERROR)
    again = await sim.authorize("key-1", card=PROCESSING_ERROR)

    assert first.status_code == again.status_code == 500
    assert first.json()["error"]["code"] == "processing_error"
    assert "idempotent-replayed" not in again.headers
    assert await sim.authorizations() == []
    lookup = await sim.lookup("key-1")
    assert (lookup.status_code, lookup.json()) == (404, {"status": "not_found"})
    # The key was never kept, so even another request may use it now.
    assert (await sim.authorize("key-1", card=APPROVE)).status_code == 201


async def test_the_timeout_card_holds_the_call_then_answers_504_with_nothing_done(
    sim: Sim,
) -> None:
    started = time.monotonic()
    held = asyncio.create_task(sim.authorize("key-1", card=TIMEOUT))

    assert await sim.wait_for("key-1", "processing") == {"status": "processing"}
    repeat = await sim.authorize("key-1", card=TIMEOUT)
    assert repeat.status_code == 409
    assert repeat.json()["error"]["code"] == "request_in_flight"

    answer = await held
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "gateway_timeout"
    assert time.monotonic() - started >= 0.3
    assert (await sim.lookup("key-1")).json() == {"status": "not_found"}
    assert await sim.authorizations() == []


async def test_the_late_success_card_is_recorded_at_once_but_answered_late(sim: Sim) -> None:
    started = time.monotonic()
    late = asyncio.create_task(sim.authorize("key-1", card=LATE))

    found = await sim.wait_for("key-1", "completed")
    assert not late.done()
    assert found["http_status"] == 201
    assert found["response"]["status"] == "authorized"
    # A repeat meanwhile is answered from the record, at once.
    repeat = await sim.authorize("key-1", card=LATE)
    assert (repeat.status_code, repeat.headers["idempotent-replayed"]) == (201, "true")

    answer = await late
    assert time.monotonic() - started >= 0.3
    assert answer.status_code == 201
    assert answer.json() == found["response"] == repeat.json()
    assert len(await sim.authorizations()) == 1


async def test_any_other_card_passing_luhn_approves(sim: Sim) -> None:
    response = await sim.authorize("key-1", card="5555555555554444")

    assert response.status_code == 201
    assert response.json()["card_last4"] == "4444"


@pytest.mark.parametrize("card", ["4242424242424241", "424242424242", "4242-4242-4242-4242"])
async def test_a_card_number_failing_luhn_or_length_is_invalid(sim: Sim, card: str) -> None:
    response = await sim.authorize("key-1", card=card)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_card_number"
    assert await sim.authorizations() == []


async def test_seeded_simulators_hand_out_the_same_ids(make_sim: Callable[..., Sim]) -> None:
    first, second = make_sim(seed=11), make_sim(seed=11)

    a = (await first.authorize("key-1")).json()["id"]
    b = (await second.authorize("key-1")).json()["id"]

    assert a == b
