"""Card payments as accounting stories: every flow ends with exact balances in the ledger and
exact processor records (read over the simulators' own HTTP API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from .support import Shop, fee

if TYPE_CHECKING:
    from settle.simulator import SimulatorThread

MERCHANT = "payments:merchant:USD"
FEES = "payments:fees:USD"


def clearing(processor: str) -> str:
    return f"payments:clearing:{processor}:USD"


def authorizations(sim: SimulatorThread, reference: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sim.base_url}/v1/authorizations", params={"reference": reference})
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def test_automatic_payment_is_captured_and_posted_with_the_fee(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    created = await shop.pay(10_000)
    assert created["status"] == "processing"
    assert created["processing_action"] == "authorize"

    paid = await shop.until_status(created["id"], "succeeded")

    assert paid["amount_received"] == 10_000
    assert paid["fee"] == fee(10_000) == 320
    assert paid["processor"] == "sim_a"
    assert [a["outcome"] for a in paid["attempts"]] == ["approved"]
    assert shop.balance(clearing("sim_a")) == 10_000
    assert shop.balance(MERCHANT) == 10_000 - 320
    assert shop.balance(FEES) == 320
    [auth] = authorizations(sim_a, created["id"])
    assert auth["status"] == "captured"
    assert auth["captured_amount"] == 10_000


async def test_manual_capture_holds_then_partial_capture_releases_the_rest(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    created = await shop.pay(10_000, capture_method="manual")
    held = await shop.until_status(created["id"], "requires_capture")
    assert held["amount_capturable"] == 10_000
    assert shop.balance(MERCHANT) == 0
    assert shop.held(clearing("sim_a")) == (10_000, 0)
    assert shop.held(MERCHANT) == (0, 10_000 - fee(10_000))

    response = await shop.post(
        f"/v1/payment_intents/{created['id']}/capture", {"amount_to_capture": 6_000}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processing"
    captured = await shop.until_status(created["id"], "succeeded")

    assert captured["amount_received"] == 6_000
    assert captured["amount_capturable"] == 0
    assert captured["fee"] == fee(6_000) == 204
    assert shop.balance(clearing("sim_a")) == 6_000
    assert shop.balance(MERCHANT) == 6_000 - 204
    assert shop.balance(FEES) == 204
    assert shop.held(clearing("sim_a")) == (0, 0)  # the other 4,000 are released
    assert shop.held(MERCHANT) == (0, 0)
    [auth] = authorizations(sim_a, created["id"])
    assert auth["captured_amount"] == 6_000


async def test_cancel_of_an_authorized_payment_voids_the_hold(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    created = await shop.pay(5_000, capture_method="manual")
    await shop.until_status(created["id"], "requires_capture")

    response = await shop.post(
        f"/v1/payment_intents/{created['id']}/cancel",
        {"cancellation_reason": "requested_by_customer"},
    )
    assert response.status_code == 200, response.text
    canceled = await shop.until_status(created["id"], "canceled")

    assert canceled["cancellation_reason"] == "requested_by_customer"
    assert canceled["amount_capturable"] == 0
    assert shop.held(clearing("sim_a")) == (0, 0)
    assert shop.balance(clearing("sim_a")) == 0
    assert shop.balance(MERCHANT) == 0
    [auth] = authorizations(sim_a, created["id"])
    assert auth["status"] == "voided"


async def test_soft_decline_asks_for_another_card_and_moves_nothing(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    created = await shop.pay(2_500, "pm_card_insufficientFunds")
    declined = await shop.until_status(created["id"], "requires_payment_method")

    assert declined["last_payment_error"] == {
        "code": "card_declined",
        "message": "the card was declined",
        "decline_code": "insufficient_funds",
        "do_not_retry": False,
    }
    assert shop.balance(clearing("sim_a")) == 0
    assert shop.held(clearing("sim_a")) == (0, 0)

    # Another card: a new confirmation, a new attempt.
    retried = await shop.post(
        f"/v1/payment_intents/{created['id']}/confirm", {"payment_method": "pm_card_visa"}
    )
    assert retried.status_code == 200, retried.text
    paid = await shop.until_status(created["id"], "succeeded")
    assert [a["outcome"] for a in paid["attempts"]] == ["declined", "approved"]
    assert shop.balance(MERCHANT) == 2_500 - fee(2_500)


async def test_hard_decline_fails_the_payment(shop: Shop, sim_a: SimulatorThread) -> None:
    created = await shop.pay(2_500, "pm_card_stolen")
    failed = await shop.until_status(created["id"], "failed")

    assert failed["last_payment_error"]["decline_code"] == "stolen_card"
    assert failed["last_payment_error"]["do_not_retry"] is True
    assert len(failed["attempts"]) == 1
    assert shop.balance(clearing("sim_a")) == 0


async def test_5xx_on_the_first_processor_fails_over_to_the_second(
    shop: Shop, sim_a: SimulatorThread, sim_b: SimulatorThread
) -> None:
    httpx.post(f"{sim_a.base_url}/_control/faults", json={"down": True})

    created = await shop.pay(7_000)
    paid = await shop.until_status(created["id"], "succeeded")

    assert [(a["processor"], a["outcome"]) for a in paid["attempts"]] == [
        ("sim_a", "not_processed"),
        ("sim_b", "approved"),
    ]
    assert paid["processor"] == "sim_b"
    httpx.post(f"{sim_a.base_url}/_control/faults", json={"down": False})
    assert authorizations(sim_a, created["id"]) == []
    assert len(authorizations(sim_b, created["id"])) == 1
    assert shop.balance(clearing("sim_b")) == 7_000
    assert shop.balance(clearing("sim_a")) == 0


async def test_late_success_stays_processing_then_resolves_without_a_second_charge(
    shop: Shop, sim_a: SimulatorThread, sim_b: SimulatorThread
) -> None:
    created = await shop.pay(4_000, "pm_card_lateSuccess")

    await shop.work()  # the call times out: the outcome is unknown
    unknown = await shop.intent(created["id"])
    assert unknown["status"] == "processing"
    assert [a["outcome"] for a in unknown["attempts"]] == ["unknown"]

    paid = await shop.until_status(created["id"], "succeeded")
    assert [a["outcome"] for a in paid["attempts"]] == ["approved"]
    assert len(authorizations(sim_a, created["id"])) == 1
    assert authorizations(sim_b, created["id"]) == []
    assert shop.balance(MERCHANT) == 4_000 - fee(4_000)


async def test_timeout_that_did_nothing_is_resolved_then_retried_elsewhere(
    shop: Shop, sim_a: SimulatorThread, sim_b: SimulatorThread
) -> None:
    created = await shop.pay(3_000, "pm_card_timeout")

    failed = await shop.until_status(created["id"], "failed")

    # Each attempt timed out; asked afterwards, each processor had kept nothing, so the next
    # attempt went out — never while an earlier one's outcome was unknown.
    assert [a["outcome"] for a in failed["attempts"]] == ["not_processed"] * 3
    assert failed["last_payment_error"]["code"] == "processor_unavailable"
    assert authorizations(sim_a, created["id"]) == []
    assert authorizations(sim_b, created["id"]) == []
    assert shop.balance(clearing("sim_a")) == shop.balance(clearing("sim_b")) == 0


async def test_refunds_partial_then_the_rest_and_never_more(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    created = await shop.pay(10_000)
    await shop.until_status(created["id"], "succeeded")
    merchant_after_payment = 10_000 - fee(10_000)

    first = await shop.post("/v1/refunds", {"payment_intent": created["id"], "amount": 3_000})
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "pending"
    assert shop.held(MERCHANT) == (3_000, 0)  # held out of the merchant's balance at once

    too_much = await shop.post("/v1/refunds", {"payment_intent": created["id"], "amount": 7_001})
    assert too_much.status_code == 422
    assert too_much.json()["code"] == "refund_exceeds_captured"

    rest = await shop.post("/v1/refunds", {"payment_intent": created["id"]})
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 7_000

    for refund in (first.json(), rest.json()):
        done = await shop.settle(
            lambda r=refund: shop.refund(r["id"]), lambda r: r["status"] != "pending"
        )
        assert done["status"] == "succeeded"

    intent = await shop.intent(created["id"])
    assert intent["amount_refunded"] == 10_000
    # The platform keeps its fee: the merchant bears the whole refund.
    assert shop.balance(MERCHANT) == merchant_after_payment - 10_000
    assert shop.balance(FEES) == fee(10_000)
    assert shop.balance(clearing("sim_a")) == 0
    assert shop.held(MERCHANT) == (0, 0)
    refunds = httpx.get(
        f"{sim_a.base_url}/v1/refunds", params={"authorization": intent["processor_reference"]}
    ).json()["data"]
    assert sorted(r["amount"] for r in refunds) == [3_000, 7_000]


async def test_a_retried_create_with_the_same_key_makes_one_payment(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    first = await shop.pay(1_500, key="order-42")
    again = await shop.post(
        "/v1/payment_intents",
        {
            "amount": 1_500,
            "currency": "USD",
            "payment_method": "pm_card_visa",
            "capture_method": "automatic",
            "confirm": True,
            "customer": "cus_1",
        },
        key="order-42",
    )
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"]
    await shop.until_status(first["id"], "succeeded")
    listed = await shop.client.get("/v1/payment_intents", headers=shop.tenant.headers)
    assert [i["id"] for i in listed.json()["data"]] == [first["id"]]
    assert len(authorizations(sim_a, first["id"])) == 1
