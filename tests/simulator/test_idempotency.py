"""Idempotency keys: a repeat replays, another request with the key is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .support import Sim


async def test_a_repeat_replays_the_stored_answer_and_charges_once(sim: Sim) -> None:
    first = await sim.authorize("key-1", amount=500)
    again = await sim.authorize("key-1", amount=500)

    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(await sim.authorizations()) == 1
    calls = [c for c in sim.simulator.state.calls() if c["method"] == "POST"]
    assert [(c["idempotency_key"], c["status"], c["replayed"]) for c in calls] == [
        ("key-1", 201, False),
        ("key-1", 201, True),
    ]


async def test_the_same_json_in_another_key_order_is_the_same_request(sim: Sim) -> None:
    await sim.authorize("key-1")
    body = {
        "reference": "pi_1",
        "capture": False,
        "card_number": "4242424242424242",
        "currency": "USD",
        "amount": 1000,
    }

    again = await sim.post("/v1/authorizations", "key-1", body)

    assert (again.status_code, again.headers["idempotent-replayed"]) == (201, "true")


async def test_a_key_reused_for_another_request_is_refused(sim: Sim) -> None:
    auth = (await sim.authorize("key-1", amount=500)).json()

    other_amount = await sim.authorize("key-1", amount=501)
    other_path = await sim.post(f"/v1/authorizations/{auth['id']}/capture", "key-1", {})

    for response in (other_amount, other_path):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert await sim.authorizations() == [auth]


async def test_a_post_without_a_key_is_refused_with_nothing_done(sim: Sim) -> None:
    response = await sim.post("/v1/authorizations", None, {"amount": 1})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "missing_idempotency_key",
            "message": "send an Idempotency-Key header of 1 to 255 characters",
        }
    }
    assert await sim.authorizations(reference="pi_1") == []


async def test_a_refusal_is_stored_and_replayed_like_a_success(sim: Sim) -> None:
    first = await sim.post("/v1/authorizations", "key-1", {"amount": "ten"})
    again = await sim.post("/v1/authorizations", "key-1", {"amount": "ten"})

    assert first.status_code == again.status_code == 400
    assert first.json()["error"]["code"] == "invalid_request"
    assert again.headers["idempotent-replayed"] == "true"
    lookup = (await sim.lookup("key-1")).json()
    assert (lookup["status"], lookup["http_status"]) == ("completed", 400)
