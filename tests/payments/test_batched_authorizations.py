"""Authorizations run in batches: one transaction records the attempts of every payment in
the batch, one records every answer with one ledger apply, and a payment whose transaction
fails is run again alone so it cannot hold up the rest of its batch."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

from settle.store import job_tables

from .support import Shop, fee

if TYPE_CHECKING:
    from settle.simulator import SimulatorThread

CARDS = ["pm_card_visa", "pm_card_chargeDeclined", "pm_card_stolen"]


def _authorizations(sim: SimulatorThread) -> list[dict[str, Any]]:
    response = httpx.get(f"{sim.base_url}/v1/authorizations")
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def _commits(engine: sa.Engine) -> list[int]:
    """A counter of the commits made on ``engine`` from now on (a list of one int)."""
    count = [0]

    def counted(_conn: Any) -> None:
        count[0] += 1

    sa.event.listen(engine, "commit", counted)
    return count


async def test_a_batch_of_payments_is_recorded_in_a_few_transactions_with_exact_balances(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    payments = []
    for n in range(30):
        card = CARDS[n % 3]
        capture = "manual" if n % 5 == 0 else "automatic"
        payments.append(await shop.pay(1_000 + n, card, capture_method=capture))
    commits = _commits(shop.state.store.db)

    assert await shop.work() == 30  # one round: all thirty, as one batch

    # claim, attempts, answers, jobs done: four commits for thirty payments
    assert commits[0] == 4
    found = [await shop.intent(p["id"]) for p in payments]
    for n, intent in enumerate(found):
        card, manual = CARDS[n % 3], n % 5 == 0
        want = {
            "pm_card_visa": "requires_capture" if manual else "succeeded",
            "pm_card_chargeDeclined": "requires_payment_method",  # soft: another card
            "pm_card_stolen": "failed",  # hard
        }[card]
        assert intent["status"] == want, (n, intent)
        assert [a["processor"] for a in intent["attempts"]] == ["sim_a"]
    approved = [(1_000 + n) for n in range(30) if CARDS[n % 3] == "pm_card_visa" and n % 5 != 0]
    held = [(1_000 + n) for n in range(30) if CARDS[n % 3] == "pm_card_visa" and n % 5 == 0]
    assert shop.balance("payments:clearing:sim_a:USD") == sum(approved)
    assert shop.balance("payments:fees:USD") == sum(fee(a) for a in approved)
    assert shop.balance("payments:merchant:USD") == sum(a - fee(a) for a in approved)
    assert shop.held("payments:clearing:sim_a:USD") == (sum(held), 0)
    # The processor saw each payment exactly once.
    per_reference = Counter(a["reference"] for a in _authorizations(sim_a))
    assert per_reference == Counter({p["id"]: 1 for p in payments})
    # Each payment tells its story once, in order, in the outbox.
    told: dict[str, list[str]] = {}
    after: str | None = None
    while True:
        params = {"limit": 100} | ({"after": after} if after else {})
        page = await shop.client.get("/v1/events", params=params, headers=shop.tenant.headers)
        body = page.json()
        for event in body["data"]:
            if event["type"].startswith("payment_intent."):
                told.setdefault(event["data"]["id"], []).append(event["type"][15:])
        if not body["has_more"]:
            break
        after = body["data"][-1]["id"]
    answer = {"succeeded": "succeeded", "requires_capture": "requires_capture"}
    assert told == {
        i["id"]: ["created", "processing", answer.get(i["status"], "payment_failed")] for i in found
    }


async def test_a_payment_the_ledger_refuses_does_not_hold_up_its_batch(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    # An EUR payment opens the EUR accounts; the operator then freezes the EUR balance.
    first = await shop.pay(500)
    eur = await shop.post(
        "/v1/payment_intents",
        {"amount": 700, "currency": "EUR", "payment_method": "pm_card_visa", "confirm": True},
    )
    assert eur.status_code == 201, eur.text
    await shop.until_status(eur.json()["id"], "succeeded")
    await shop.until_status(first["id"], "succeeded")
    with shop.state.store.read() as repo:
        merchant_eur = repo.get_account_by_code(shop.tenant.id, "payments:merchant:EUR")
    assert merchant_eur is not None
    frozen = await shop.client.patch(
        f"/v1/accounts/{merchant_eur.id}",
        json={"status": "frozen"},
        headers=shop.headers(),
    )
    assert frozen.status_code == 200, frozen.text

    usd = [await shop.pay(1_000 + n) for n in range(5)]
    refused = await shop.post(
        "/v1/payment_intents",
        {"amount": 900, "currency": "EUR", "payment_method": "pm_card_visa", "confirm": True},
    )
    assert refused.status_code == 201
    refused_id = refused.json()["id"]

    assert await shop.work() == 6
    for p in usd:
        assert (await shop.intent(p["id"]))["status"] == "succeeded"
    stuck = await shop.intent(refused_id)
    assert stuck["status"] == "processing"  # its answer could not be recorded: asked again
    with shop.state.store.db.connect() as conn:
        jobs = job_tables.jobs
        row = conn.execute(
            sa.select(jobs.c.status, jobs.c.last_error).where(
                jobs.c.payload["intent_id"].as_string() == refused_id
            )
        ).one()
    assert row.status == "queued"
    assert row.last_error == "settle.payments.errors.PaymentLedgerRefusedError"

    # Unfrozen, its retry asks the processor (the charge exists) instead of charging again.
    thawed = await shop.client.patch(
        f"/v1/accounts/{merchant_eur.id}", json={"status": "active"}, headers=shop.headers()
    )
    assert thawed.status_code == 200, thawed.text
    settled = await shop.until_status(refused_id, "succeeded")
    assert [a["outcome"] for a in settled["attempts"]] == ["approved"]
    assert len([a for a in _authorizations(sim_a) if a["reference"] == refused_id]) == 1
    assert shop.balance("payments:clearing:sim_a:USD") == 500 + sum(1_000 + n for n in range(5))
