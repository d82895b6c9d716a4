"""Capture, void and refund: what each allows, and the proof that a refusal moved nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .support import Sim


async def _authorized(sim: Sim, amount: int = 1000) -> dict[str, Any]:
    response = await sim.authorize("auth-key", amount=amount)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def _code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def test_refund_after_partial_capture_never_exceeds_the_capture(sim: Sim) -> None:
    auth = await _authorized(sim, 1000)

    captured = await sim.post(f"/v1/authorizations/{auth['id']}/capture", "cap", {"amount": 600})
    assert captured.status_code == 200
    assert (captured.json()["status"], captured.json()["captured_amount"]) == ("captured", 600)

    first = await sim.post("/v1/refunds", "re-1", {"authorization": auth["id"], "amount": 400})
    too_much = await sim.post("/v1/refunds", "re-2", {"authorization": auth["id"], "amount": 201})
    rest = await sim.post("/v1/refunds", "re-3", {"authorization": auth["id"], "amount": 200})

    assert first.status_code == rest.status_code == 201
    assert first.json()["id"].startswith("re_")
    assert {k: first.json()[k] for k in ("object", "status", "authorization", "amount")} == {
        "object": "refund",
        "status": "succeeded",
        "authorization": auth["id"],
        "amount": 400,
    }
    assert _code(too_much) == (422, "amount_exceeds_captured")
    after = (await sim.client.get(f"/v1/authorizations/{auth['id']}")).json()
    assert (after["captured_amount"], after["refunded_amount"]) == (600, 600)
    listed = (await sim.client.get("/v1/refunds", params={"authorization": auth["id"]})).json()
    assert [r["amount"] for r in listed["data"]] == [400, 200]


async def test_capture_defaults_to_the_whole_authorization(sim: Sim) -> None:
    auth = await _authorized(sim, 700)

    captured = await sim.post(f"/v1/authorizations/{auth['id']}/capture", "cap", {})

    assert captured.json()["captured_amount"] == 700


async def test_capture_of_more_than_authorized_is_refused(sim: Sim) -> None:
    auth = await _authorized(sim, 1000)

    response = await sim.post(f"/v1/authorizations/{auth['id']}/capture", "cap", {"amount": 1001})

    assert _code(response) == (422, "amount_exceeds_authorized")
    assert (await sim.client.get(f"/v1/authorizations/{auth['id']}")).json() == auth


async def test_an_authorization_is_captured_once(sim: Sim) -> None:
    auth = await _authorized(sim)
    path = f"/v1/authorizations/{auth['id']}/capture"

    await sim.post(path, "cap-1", {"amount": 100})
    second = await sim.post(path, "cap-2", {"amount": 100})

    assert _code(second) == (409, "already_captured")
    assert (await sim.client.get(f"/v1/authorizations/{auth['id']}")).json()[
        "captured_amount"
    ] == 100


async def test_void_releases_an_authorization_that_then_cannot_be_captured(sim: Sim) -> None:
    auth = await _authorized(sim)

    voided = await sim.post(f"/v1/authorizations/{auth['id']}/void", "void-1", {})
    again = await sim.post(f"/v1/authorizations/{auth['id']}/void", "void-2", {})
    capture = await sim.post(f"/v1/authorizations/{auth['id']}/capture", "cap", {})
    refund = await sim.post("/v1/refunds", "re", {"authorization": auth["id"], "amount": 1})

    assert (voided.status_code, voided.json()["status"]) == (200, "voided")
    assert _code(again) == (409, "already_voided")
    assert _code(capture) == (409, "authorization_voided")
    assert _code(refund) == (409, "not_captured")


async def test_a_captured_authorization_cannot_be_voided(sim: Sim) -> None:
    auth = (await sim.authorize("auth-key", capture=True)).json()

    response = await sim.post(f"/v1/authorizations/{auth['id']}/void", "void", {})

    assert _code(response) == (409, "already_captured")


async def test_a_declined_authorization_cannot_be_captured_or_voided(sim: Sim) -> None:
    auth = (await sim.authorize("auth-key", card="4000000000000002")).json()

    capture = await sim.post(f"/v1/authorizations/{auth['id']}/capture", "cap", {})
    void = await sim.post(f"/v1/authorizations/{auth['id']}/void", "void", {})

    assert _code(capture) == _code(void) == (409, "authorization_declined")


async def test_an_uncaptured_authorization_cannot_be_refunded(sim: Sim) -> None:
    auth = await _authorized(sim)

    response = await sim.post("/v1/refunds", "re", {"authorization": auth["id"], "amount": 1})

    assert _code(response) == (409, "not_captured")


async def test_unknown_authorizations_are_not_found(sim: Sim) -> None:
    capture = await sim.post("/v1/authorizations/auth_nope/capture", "cap", {})
    refund = await sim.post("/v1/refunds", "re", {"authorization": "auth_nope", "amount": 1})
    read = await sim.client.get("/v1/authorizations/auth_nope")

    assert _code(capture) == _code(refund) == _code(read) == (404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0},
        {"amount": -5},
        {"amount": 1.5},
        {"amount": True},
        {"amount": "100"},
        {"currency": "usd"},
        {"capture": "yes"},
        {"reference": ""},
    ],
)
async def test_malformed_authorizations_are_invalid_requests(
    sim: Sim, body: dict[str, Any]
) -> None:
    fields = {
        "amount": 100,
        "currency": "USD",
        "card_number": "4242424242424242",
        "capture": False,
        "reference": "pi_1",
        **body,
    }

    response = await sim.post("/v1/authorizations", "key", fields)

    assert _code(response) == (400, "invalid_request")
    assert await sim.authorizations() == []
