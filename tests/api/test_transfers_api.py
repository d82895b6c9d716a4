"""``/v1/transfers`` over HTTP: moving money, holds and their capture, voids, reversals, client
ids, batches (independent and atomic) and the transfer lists, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from .support import Api


def balances(dp: int = 0, cp: int = 0, dpe: int = 0, cpe: int = 0, *,
             normal: str = "credit") -> dict[str, int]:  # fmt: skip
    """The balances body of an account with these four counters, on its normal side."""
    sign = 1 if normal == "debit" else -1
    return {
        "posted": sign * (dp - cp),
        "pending": sign * (dpe - cpe),
        "available": dp - cp - cpe if normal == "debit" else cp - dp - dpe,
        "debits_posted": dp,
        "credits_posted": cp,
        "debits_pending": dpe,
        "credits_pending": cpe,
    }


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def line(index: int, account: dict[str, Any], side: str, amount: int, posted: int, pending: int,
         currency: str = "USD") -> dict[str, Any]:  # fmt: skip
    return {"index": index, "account_id": account["id"], "side": side, "amount": amount,
            "currency": currency, "posted_amount": posted, "pending_amount": pending}  # fmt: skip


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


async def get(api: Api, path: str, params: Any = None) -> httpx.Response:
    return await api.client.get(path, params=params, headers=api.headers)


async def post(api: Api, path: str, body: Any = None) -> httpx.Response:
    return await api.client.post(path, json=body, headers=api.headers)


async def pay(api: Api, debit: dict[str, Any], credit: dict[str, Any], amount: int,
              **fields: Any) -> dict[str, Any]:  # fmt: skip
    response = await api.transfer(debit["id"], credit["id"], amount, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def balance_of(api: Api, account: dict[str, Any]) -> dict[str, int]:
    response = await get(api, f"/v1/accounts/{account['id']}/balance")
    assert response.status_code == 200, response.text
    found: dict[str, int] = response.json()["balances"]
    return found


async def transfer_of(api: Api, transfer_id: str) -> dict[str, Any]:
    response = await get(api, f"/v1/transfers/{transfer_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def everyone(api: Api) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A bank, a wallet that cannot go below zero with 10,000 in it, and a shop."""
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", debits_must_not_exceed_credits=True)
    shop = await api.account("shop")
    await pay(api, bank, wallet, 10_000)
    return bank, wallet, shop


# ---- single transfers --------------------------------------------------------------------------


async def test_a_shorthand_transfer_posts_two_lines(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    response = await api.transfer(bank["id"], wallet["id"], 10_000, description="top-up",
                                  metadata={"order": "A-1"})  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{64}", body.pop("hash"))
    transfer_id = body.pop("id")
    created_at = body.pop("created_at")
    assert body == {
        "object": "transfer",
        "seq": 1,
        "kind": "transfer",
        "status": "posted",
        "postings": [
            line(0, bank, "debit", 10_000, 10_000, 0),
            line(1, wallet, "credit", 10_000, 10_000, 0),
        ],
        "pending_id": None,
        "reversal_of": None,
        "timeout_at": None,
        "description": "top-up",
        "metadata": {"order": "A-1"},
        "effective_at": created_at,
        "resolved_by": None,
        "reversed_by": None,
    }
    assert await balance_of(api, bank) == balances(dp=10_000, normal="debit")
    assert await balance_of(api, wallet) == balances(cp=10_000)
    fetched = await transfer_of(api, transfer_id)
    assert fetched == response.json()


async def test_a_card_payment_with_a_fee_in_three_postings(api: Api) -> None:
    _bank, wallet, shop = await everyone(api)
    fees = await api.account("fees", type="revenue")
    response = await post(api, "/v1/transfers", {
        "postings": [
            {"account_id": wallet["id"], "side": "debit", "amount": 2_000, "currency": "USD"},
            {"account_id": shop["id"], "side": "credit", "amount": 1_940, "currency": "USD"},
            {"account_id": fees["id"], "side": "credit", "amount": 60, "currency": "USD"},
        ],
        "description": "coffee, card fee 3%",
    })  # fmt: skip
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["kind"], body["status"], body["seq"]) == ("transfer", "posted", 2)
    assert body["postings"] == [
        line(0, wallet, "debit", 2_000, 2_000, 0),
        line(1, shop, "credit", 1_940, 1_940, 0),
        line(2, fees, "credit", 60, 60, 0),
    ]
    assert await balance_of(api, wallet) == balances(dp=2_000, cp=10_000)
    assert await balance_of(api, shop) == balances(cp=1_940)
    assert await balance_of(api, fees) == balances(cp=60)


async def test_partial_capture_releases_the_rest(api: Api) -> None:
    _bank, wallet, shop = await everyone(api)
    held = await api.transfer(wallet["id"], shop["id"], 6_000, pending=True, timeout_seconds=3600)
    assert held.status_code == 201, held.text
    hold = held.json()
    assert (hold["kind"], hold["status"], hold["resolved_by"]) == ("pending", "pending", None)
    assert hold["postings"] == [
        line(0, wallet, "debit", 6_000, 0, 6_000),
        line(1, shop, "credit", 6_000, 0, 6_000),
    ]
    assert moment(hold["timeout_at"]) - moment(hold["created_at"]) == timedelta(hours=1)
    wallet_now = await balance_of(api, wallet)
    assert wallet_now == balances(cp=10_000, dpe=6_000)
    assert (wallet_now["posted"], wallet_now["pending"], wallet_now["available"]) == (
        10_000, -6_000, 4_000
    )  # fmt: skip
    shop_now = await balance_of(api, shop)
    assert (shop_now["posted"], shop_now["pending"], shop_now["available"]) == (0, 6_000, 0)
    # The hold counts against what the wallet can spend.
    problem(await api.transfer(wallet["id"], shop["id"], 4_001), 422, "insufficient_funds")

    captured = await post(api, f"/v1/transfers/{hold['id']}/post",
                          {"amount": 2_500, "description": "shipped 1 of 2"})  # fmt: skip
    assert captured.status_code == 201, captured.text
    capture = captured.json()
    assert (capture["kind"], capture["status"], capture["pending_id"]) == (
        "post_pending", "posted", hold["id"]
    )  # fmt: skip
    assert capture["seq"] == hold["seq"] + 1
    assert capture["description"] == "shipped 1 of 2"
    assert capture["timeout_at"] is None
    assert capture["postings"] == [
        line(0, wallet, "debit", 2_500, 2_500, -6_000),
        line(1, shop, "credit", 2_500, 2_500, -6_000),
    ]
    wallet_now = await balance_of(api, wallet)
    assert wallet_now == balances(dp=2_500, cp=10_000)
    assert (wallet_now["posted"], wallet_now["pending"], wallet_now["available"]) == (
        7_500, 0, 7_500
    )  # fmt: skip
    assert await balance_of(api, shop) == balances(cp=2_500)

    pending = await transfer_of(api, hold["id"])
    assert (pending["status"], pending["resolved_by"]) == ("posted", capture["id"])
    assert pending["postings"] == hold["postings"]  # the hold itself never changes
    again = await post(api, f"/v1/transfers/{hold['id']}/post", {"amount": 100})
    problem(again, 409, "pending_already_posted")
    problem(await post(api, f"/v1/transfers/{hold['id']}/void"), 409, "pending_already_posted")
    assert await balance_of(api, wallet) == balances(dp=2_500, cp=10_000)


async def test_posting_a_hold_in_full_and_over_its_amount(api: Api) -> None:
    _bank, wallet, shop = await everyone(api)
    hold = (await api.transfer(wallet["id"], shop["id"], 3_000, pending=True)).json()
    assert hold["timeout_at"] is None
    over = await post(api, f"/v1/transfers/{hold['id']}/post", {"amount": 3_001})
    problem(over, 422, "amount_exceeds_pending")
    full = await api.client.post(f"/v1/transfers/{hold['id']}/post", headers=api.headers)
    assert full.status_code == 201, full.text
    assert full.json()["postings"] == [
        line(0, wallet, "debit", 3_000, 3_000, -3_000),
        line(1, shop, "credit", 3_000, 3_000, -3_000),
    ]
    assert await balance_of(api, wallet) == balances(dp=3_000, cp=10_000)
    assert await balance_of(api, shop) == balances(cp=3_000)


async def test_a_three_line_hold_is_captured_line_by_line(api: Api) -> None:
    _bank, wallet, shop = await everyone(api)
    fees = await api.account("fees", type="revenue")
    held = await post(api, "/v1/transfers", {"pending": True, "postings": [
        {"account_id": wallet["id"], "side": "debit", "amount": 5_000, "currency": "USD"},
        {"account_id": shop["id"], "side": "credit", "amount": 4_850, "currency": "USD"},
        {"account_id": fees["id"], "side": "credit", "amount": 150, "currency": "USD"},
    ]})  # fmt: skip
    assert held.status_code == 201, held.text
    hold = held.json()
    path = f"/v1/transfers/{hold['id']}/post"
    problem(await post(api, path, {"amount": 1_000}), 422, "invalid_postings")

    def capture(wallet_amount: int, shop_amount: int, fee: int) -> dict[str, Any]:
        return {"postings": [
            {"account_id": wallet["id"], "side": "debit", "amount": wallet_amount,
             "currency": "USD"},
            {"account_id": shop["id"], "side": "credit", "amount": shop_amount,
             "currency": "USD"},
            {"account_id": fees["id"], "side": "credit", "amount": fee, "currency": "USD"},
        ]}  # fmt: skip

    problem(await post(api, path, capture(2_000, 1_940, 50)), 422, "unbalanced")
    problem(await post(api, path, capture(5_001, 4_851, 150)), 422, "amount_exceeds_pending")
    problem(await post(api, path, {**capture(2_000, 1_940, 60), "amount": 2_000}), 422,
            "invalid_postings")  # fmt: skip
    assert await balance_of(api, wallet) == balances(cp=10_000, dpe=5_000)
    captured = await post(api, path, capture(2_000, 1_940, 60))
    assert captured.status_code == 201, captured.text
    assert captured.json()["postings"] == [
        line(0, wallet, "debit", 2_000, 2_000, -5_000),
        line(1, shop, "credit", 1_940, 1_940, -4_850),
        line(2, fees, "credit", 60, 60, -150),
    ]
    wallet_now = await balance_of(api, wallet)
    assert wallet_now == balances(dp=2_000, cp=10_000)
    assert wallet_now["available"] == 8_000
    assert await balance_of(api, shop) == balances(cp=1_940)
    assert await balance_of(api, fees) == balances(cp=60)


async def test_a_void_releases_the_whole_hold(api: Api) -> None:
    _bank, wallet, shop = await everyone(api)
    hold = (await api.transfer(wallet["id"], shop["id"], 4_000, pending=True)).json()
    assert (await balance_of(api, wallet))["available"] == 6_000
    voided = await post(api, f"/v1/transfers/{hold['id']}/void", {"description": "cancelled"})
    assert voided.status_code == 201, voided.text
    void = voided.json()
    assert (void["kind"], void["status"], void["pending_id"], void["description"]) == (
        "void_pending", "voided", hold["id"], "cancelled"
    )  # fmt: skip
    assert void["postings"] == [
        line(0, wallet, "debit", 4_000, 0, -4_000),
        line(1, shop, "credit", 4_000, 0, -4_000),
    ]
    assert await balance_of(api, wallet) == balances(cp=10_000)
    assert await balance_of(api, shop) == balances()
    pending = await transfer_of(api, hold["id"])
    assert (pending["status"], pending["resolved_by"]) == ("voided", void["id"])
    problem(await post(api, f"/v1/transfers/{hold['id']}/void"), 409, "pending_already_voided")
    problem(await post(api, f"/v1/transfers/{hold['id']}/post"), 409, "pending_already_voided")
    # A void is not a movement of money: there is nothing to reverse.
    problem(await post(api, f"/v1/transfers/{void['id']}/reverse"), 422, "not_reversible")
    problem(await post(api, f"/v1/transfers/{hold['id']}/reverse"), 422, "not_reversible")


async def test_a_reversal_undoes_a_posted_transfer_once(api: Api) -> None:
    _bank, wallet, shop = await everyone(api)
    paid = await pay(api, wallet, shop, 2_500)
    reversed_ = await post(api, f"/v1/transfers/{paid['id']}/reverse", {"description": "refund"})
    assert reversed_.status_code == 201, reversed_.text
    reversal = reversed_.json()
    assert (reversal["kind"], reversal["status"], reversal["reversal_of"]) == (
        "reversal", "posted", paid["id"]
    )  # fmt: skip
    assert reversal["postings"] == [
        line(0, wallet, "credit", 2_500, 2_500, 0),
        line(1, shop, "debit", 2_500, 2_500, 0),
    ]
    assert await balance_of(api, wallet) == balances(dp=2_500, cp=12_500)
    assert (await balance_of(api, wallet))["posted"] == 10_000
    assert (await balance_of(api, shop))["posted"] == 0
    original = await transfer_of(api, paid["id"])
    assert original["reversed_by"] == reversal["id"]
    assert original == {**paid, "reversed_by": reversal["id"]}
    problem(await post(api, f"/v1/transfers/{paid['id']}/reverse"), 409, "already_reversed")
    # A captured hold is reversible: its capture moved money.
    hold = (await api.transfer(wallet["id"], shop["id"], 1_000, pending=True)).json()
    capture = (await post(api, f"/v1/transfers/{hold['id']}/post", {"amount": 400})).json()
    undone = await post(api, f"/v1/transfers/{capture['id']}/reverse")
    assert undone.status_code == 201, undone.text
    assert undone.json()["postings"] == [
        line(0, wallet, "credit", 400, 400, 0),
        line(1, shop, "debit", 400, 400, 0),
    ]
    assert (await balance_of(api, wallet))["available"] == 10_000
    problem(await post(api, f"/v1/transfers/{uuid.uuid4()}/reverse"), 404, "transfer_not_found")


async def test_refusals_name_what_is_wrong(api: Api) -> None:
    bank, wallet, shop = await everyone(api)
    euros = await api.account("euros", currency="EUR")
    missing = str(uuid.uuid4())
    body = problem(await post(api, f"/v1/transfers/{missing}/post"), 404, "pending_not_found")
    assert body["detail"] == f"no pending transfer {missing}"
    problem(await post(api, f"/v1/transfers/{missing}/void"), 404, "pending_not_found")
    body = problem(await api.transfer(bank["id"], missing, 100), 404, "account_not_found")
    assert body["detail"] == f"account {missing} not found"
    body = problem(await api.transfer(bank["id"], euros["id"], 100), 422, "currency_mismatch")
    assert body["detail"] == f"account {euros['id']} holds EUR, not USD"
    problem(await api.transfer(bank["id"], euros["id"], 100, currency="EUR"), 422,
            "currency_mismatch")  # fmt: skip
    unbalanced = await post(api, "/v1/transfers", {"postings": [
        {"account_id": bank["id"], "side": "debit", "amount": 100, "currency": "USD"},
        {"account_id": shop["id"], "side": "credit", "amount": 99, "currency": "USD"},
    ]})  # fmt: skip
    problem(unbalanced, 422, "unbalanced")
    problem(await api.transfer(wallet["id"], shop["id"], 10_001), 422, "insufficient_funds")
    problem(await api.transfer(bank["id"], bank["id"], 1), 422, "invalid_postings")
    for amount in (0, -5, 1.5, "100", True):
        problem(await api.transfer(bank["id"], shop["id"], amount), 400, "invalid_amount")
    problem(await api.transfer(bank["id"], shop["id"], 1, currency="usd"), 400, "unknown_currency")
    # A timeout for a transfer that is not pending: the ledger refuses it (nothing to expire).
    problem(await api.transfer(bank["id"], shop["id"], 1, timeout_seconds=60), 422,
            "invalid_timeout")  # fmt: skip
    # Nothing of that moved money.
    assert await balance_of(api, wallet) == balances(cp=10_000)
    assert await balance_of(api, shop) == balances()
    listed = (await get(api, "/v1/transfers")).json()["data"]
    assert len(listed) == 1


async def test_a_client_id_makes_a_transfer_idempotent(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    chosen = str(uuid.uuid4())
    first = await api.transfer(bank["id"], wallet["id"], 700, id=chosen, metadata={"n": "1"})
    assert first.status_code == 201, first.text
    assert first.json()["id"] == chosen
    again = await api.transfer(bank["id"], wallet["id"], 700, id=chosen, metadata={"n": "1"})
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await balance_of(api, wallet) == balances(cp=700)  # moved once
    for change in ({"amount": 701}, {"metadata": {"n": "2"}}, {"description": "other"},
                   {"pending": True}):  # fmt: skip
        fields = {"id": chosen, "metadata": {"n": "1"}, "amount": 700, **change}
        amount = fields.pop("amount")
        refused = await api.transfer(bank["id"], wallet["id"], amount, **fields)
        body = problem(refused, 409, "exists_with_different_fields")
        assert body["detail"] == f"transfer {chosen} exists with different fields"
    assert await balance_of(api, wallet) == balances(cp=700)
    listed = (await get(api, "/v1/transfers")).json()["data"]
    assert [t["id"] for t in listed] == [chosen]


async def test_effective_at_is_stored_and_answered_in_utc(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    booked = await pay(api, bank, wallet, 100, effective_at="2024-02-01T01:00:00.25+02:00")
    assert booked["effective_at"] == "2024-01-31T23:00:00.250000Z"
    assert moment(booked["created_at"]) > moment("2025-01-01T00:00:00Z")
    fetched = await transfer_of(api, booked["id"])
    assert fetched["effective_at"] == "2024-01-31T23:00:00.250000Z"
    assert fetched == booked
    naive = await api.transfer(bank["id"], wallet["id"], 100, effective_at="2024-02-01T01:00:00")
    problem(naive, 400, "invalid_request")


# ---- batches -----------------------------------------------------------------------------------


def shorthand(debit: dict[str, Any], credit: dict[str, Any], amount: int,
              currency: str = "USD", **fields: Any) -> dict[str, Any]:  # fmt: skip
    return {"debit_account_id": debit["id"], "credit_account_id": credit["id"],
            "amount": amount, "currency": currency, **fields}  # fmt: skip


async def test_a_batch_answers_one_result_per_transfer_in_order(api: Api) -> None:
    bank, wallet, shop = await everyone(api)
    missing = {"id": str(uuid.uuid4())}
    ids = [str(uuid.uuid4()) for _ in range(5)]
    response = await post(api, "/v1/transfers/batch", {"transfers": [
        shorthand(wallet, shop, 3_000, id=ids[0]),
        shorthand(wallet, shop, 100, "EUR", id=ids[1]),
        shorthand(bank, missing, 100, id=ids[2]),
        shorthand(wallet, shop, 7_000, id=ids[3]),
        shorthand(wallet, shop, 1, id=ids[4]),  # the wallet is empty by now
        shorthand(wallet, shop, 3_000, id=ids[0]),  # the first one again
    ]})  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["object"], body["atomic"]) == ("transfer_batch", False)
    assert body["data"] == [
        {"id": ids[0], "code": "ok", "seq": 2, "detail": None},
        {"id": ids[1], "code": "currency_mismatch", "seq": None,
         "detail": f"account {wallet['id']} holds USD, not EUR"},
        {"id": ids[2], "code": "account_not_found", "seq": None,
         "detail": f"account {missing['id']} not found"},
        {"id": ids[3], "code": "ok", "seq": 3, "detail": None},
        {"id": ids[4], "code": "insufficient_funds", "seq": None,
         "detail": f"account {wallet['id']} has insufficient available funds"},
        {"id": ids[0], "code": "exists", "seq": None, "detail": None},
    ]  # fmt: skip
    assert await balance_of(api, wallet) == balances(dp=10_000, cp=10_000)
    assert await balance_of(api, shop) == balances(cp=10_000)
    listed = (await get(api, "/v1/transfers")).json()["data"]
    assert [t["seq"] for t in listed] == [1, 2, 3]
    assert [t["id"] for t in listed[1:]] == [ids[0], ids[3]]
    assert (await transfer_of(api, ids[3]))["postings"][0]["amount"] == 7_000
    problem(await get(api, f"/v1/transfers/{ids[1]}"), 404, "transfer_not_found")


async def test_an_atomic_batch_moves_all_or_nothing(api: Api) -> None:
    bank, wallet, shop = await everyone(api)
    fees = await api.account("fees", type="revenue")
    events_before = len((await get(api, "/v1/events", {"limit": 100})).json()["data"])
    ids = [str(uuid.uuid4()) for _ in range(4)]
    failing = await post(api, "/v1/transfers/batch", {"atomic": True, "transfers": [
        shorthand(wallet, shop, 6_000, id=ids[0]),
        shorthand(wallet, fees, 100, id=ids[1]),
        shorthand(wallet, shop, 4_000, id=ids[2]),  # 100 short
        shorthand(bank, wallet, 1, id=ids[3]),
    ]})  # fmt: skip
    assert failing.status_code == 200, failing.text
    detail = f"transfer {ids[2]} in the same atomic group failed"
    assert failing.json() == {
        "object": "transfer_batch",
        "atomic": True,
        "data": [
            {"id": ids[0], "code": "linked_transfer_failed", "seq": None, "detail": detail},
            {"id": ids[1], "code": "linked_transfer_failed", "seq": None, "detail": detail},
            {"id": ids[2], "code": "insufficient_funds", "seq": None,
             "detail": f"account {wallet['id']} has insufficient available funds"},
            {"id": ids[3], "code": "linked_transfer_failed", "seq": None, "detail": detail},
        ],
    }  # fmt: skip
    # Nothing moved, nothing was journaled, no event was emitted.
    assert await balance_of(api, wallet) == balances(cp=10_000)
    assert await balance_of(api, shop) == balances()
    assert await balance_of(api, fees) == balances()
    assert len((await get(api, "/v1/transfers")).json()["data"]) == 1
    assert len((await get(api, "/v1/events", {"limit": 100})).json()["data"]) == events_before
    for transfer_id in ids:
        problem(await get(api, f"/v1/transfers/{transfer_id}"), 404, "transfer_not_found")
    # The same group, with the last payment fitting, goes through whole.
    fitting = await post(api, "/v1/transfers/batch", {"atomic": True, "transfers": [
        shorthand(wallet, shop, 6_000, id=ids[0]),
        shorthand(wallet, fees, 100, id=ids[1]),
        shorthand(wallet, shop, 3_900, id=ids[2]),
        shorthand(bank, wallet, 1, id=ids[3]),
    ]})  # fmt: skip
    assert fitting.status_code == 200, fitting.text
    assert [(r["code"], r["seq"]) for r in fitting.json()["data"]] == [
        ("ok", 2), ("ok", 3), ("ok", 4), ("ok", 5)
    ]  # fmt: skip
    assert await balance_of(api, wallet) == balances(dp=10_000, cp=10_001)
    assert await balance_of(api, shop) == balances(cp=9_900)
    assert await balance_of(api, fees) == balances(cp=100)


async def test_a_batch_takes_up_to_8190_transfers(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    one = shorthand(bank, wallet, 1)
    too_many = await post(api, "/v1/transfers/batch", {"transfers": [one] * 8_191})
    body = problem(too_many, 400, "invalid_request")
    assert body["param"] == "transfers"
    assert await balance_of(api, wallet) == balances()
    problem(await post(api, "/v1/transfers/batch", {"transfers": []}), 400, "invalid_request")
    accepted = await post(api, "/v1/transfers/batch", {"transfers": [one] * 8_190})
    assert accepted.status_code == 200, accepted.text[:500]
    results = accepted.json()["data"]
    assert len(results) == 8_190
    assert all(r["code"] == "ok" for r in results)
    assert [r["seq"] for r in results] == list(range(1, 8_191))
    assert len({r["id"] for r in results}) == 8_190
    assert await balance_of(api, wallet) == balances(cp=8_190)
    assert await balance_of(api, bank) == balances(dp=8_190, normal="debit")


# ---- reading -----------------------------------------------------------------------------------


async def test_read_a_transfer_as_it_is_now(api: Api) -> None:
    _bank, wallet, shop = await everyone(api)
    hold = (await api.transfer(wallet["id"], shop["id"], 500, pending=True)).json()
    assert (await transfer_of(api, hold["id"])) == hold
    assert hold["status"] == "pending"
    capture = (await post(api, f"/v1/transfers/{hold['id']}/post")).json()
    now = await transfer_of(api, hold["id"])
    assert now == {**hold, "status": "posted", "resolved_by": capture["id"]}
    reversal = (await post(api, f"/v1/transfers/{capture['id']}/reverse")).json()
    captured = await transfer_of(api, capture["id"])
    assert captured == {**capture, "reversed_by": reversal["id"]}
    assert (await transfer_of(api, reversal["id"])) == reversal
    problem(await get(api, f"/v1/transfers/{uuid.uuid4()}"), 404, "transfer_not_found")
    other = api.other_tenant()
    theirs = await api.client.get(f"/v1/transfers/{hold['id']}", headers=other.headers)
    problem(theirs, 404, "transfer_not_found")


async def test_list_transfers_all_by_account_and_by_creation_time(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    alice = await api.account("alice")
    bob = await api.account("bob")
    t1 = await pay(api, bank, alice, 1_000)
    t2 = await pay(api, bank, bob, 2_000)
    t3 = await pay(api, alice, bob, 300)
    t4 = (await api.transfer(bob["id"], bank["id"], 50, pending=True)).json()
    t5 = (await post(api, f"/v1/transfers/{t4['id']}/void")).json()

    async def listed(**params: Any) -> tuple[list[str], bool]:
        response = await get(api, "/v1/transfers", params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["data"]], response.json()["has_more"]

    every = [t["id"] for t in (t1, t2, t3, t4, t5)]
    assert await listed() == (every, False)
    everything = (await get(api, "/v1/transfers")).json()["data"]
    assert everything[3] == {**t4, "status": "voided", "resolved_by": t5["id"]}
    assert everything[4] == t5
    assert await listed(account_id=alice["id"]) == ([t1["id"], t3["id"]], False)
    assert await listed(account_id=bob["id"]) == ([t2["id"], t3["id"], t4["id"], t5["id"]], False)
    assert await listed(account_id=bank["id"], limit=2) == ([t1["id"], t2["id"]], True)
    unknown = await get(api, "/v1/transfers", {"account_id": str(uuid.uuid4())})
    assert problem(unknown, 404, "account_not_found")["param"] == "account_id"
    # created_after and created_before are both exclusive.
    assert await listed(created_after=t2["created_at"]) == (every[2:], False)
    assert await listed(created_before=t2["created_at"]) == (every[:1], False)
    assert await listed(created_after=t1["created_at"], created_before=t4["created_at"]) == (
        every[1:3], False
    )  # fmt: skip
    window = {"created_after": t2["created_at"], "created_before": t5["created_at"]}
    assert await listed(account_id=bob["id"], **window) == ([t3["id"], t4["id"]], False)
    after_all = (moment(t5["created_at"]) + timedelta(seconds=1)).isoformat()
    assert await listed(created_after=after_all) == ([], False)
    naive = await get(api, "/v1/transfers", {"created_after": "2024-01-01T00:00:00"})
    assert problem(naive, 400, "invalid_request")["param"] == "created_after"
    other = api.other_tenant()
    theirs = await api.client.get("/v1/transfers", headers=other.headers)
    assert theirs.json() == {"data": [], "has_more": False}


async def test_transfer_pages_both_ways(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    alice = await api.account("alice")
    bob = await api.account("bob")
    made = []
    for i in range(7):
        made.append(await pay(api, bank, alice if i % 2 == 0 else bob, 100 + i))
    ids = [t["id"] for t in made]

    async def page(**params: Any) -> tuple[list[str], bool]:
        response = await get(api, "/v1/transfers", params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["data"]], response.json()["has_more"]

    assert await page(limit=3) == (ids[0:3], True)
    assert await page(limit=3, starting_after=ids[2]) == (ids[3:6], True)
    assert await page(limit=3, starting_after=ids[5]) == (ids[6:], False)
    assert await page(limit=3, starting_after=ids[3]) == (ids[4:], False)
    assert await page(limit=3, starting_after=ids[6]) == ([], False)
    assert await page(limit=3, ending_before=ids[6]) == (ids[3:6], True)
    assert await page(limit=3, ending_before=ids[3]) == (ids[0:3], False)
    assert await page(limit=3, ending_before=ids[1]) == (ids[0:1], False)
    assert await page(limit=3, ending_before=ids[0]) == ([], False)
    # Pages of one account's transfers (alice has 0, 2, 4, 6).
    mine = ids[0::2]
    assert await page(account_id=alice["id"], limit=2) == (mine[:2], True)
    assert await page(account_id=alice["id"], limit=2, starting_after=mine[1]) == (mine[2:], False)
    assert await page(account_id=alice["id"], limit=2, ending_before=mine[3]) == (mine[1:3], True)
    assert await page(account_id=alice["id"], limit=2, ending_before=mine[2]) == (mine[:2], False)
    # A cursor of a transfer that is not the account's is a position in the journal.
    assert await page(account_id=alice["id"], limit=2, starting_after=ids[1]) == (mine[1:3], True)
    # With a time window.
    window = {"created_after": made[0]["created_at"], "created_before": made[6]["created_at"]}
    assert await page(limit=2, **window) == (ids[1:3], True)
    assert await page(limit=2, starting_after=ids[4], **window) == ([ids[5]], False)
    assert await page(limit=2, ending_before=ids[3], **window) == (ids[1:3], False)
    # A full walk each way.
    seen, cursor = [], {}
    while True:
        got, more = await page(limit=2, **cursor)
        seen += got
        if not more:
            break
        cursor = {"starting_after": got[-1]}
    assert seen == ids
    back, more = [ids[-1]], True
    while more:
        got, more = await page(limit=2, ending_before=back[0])
        back = [*got, *back]
    assert back == ids
    unknown = str(uuid.uuid4())
    refused = await get(api, "/v1/transfers", {"starting_after": unknown})
    assert problem(refused, 404, "transfer_not_found")["param"] == "starting_after"
    refused = await get(api, "/v1/transfers", {"ending_before": unknown})
    assert problem(refused, 404, "transfer_not_found")["param"] == "ending_before"
    # Both cursors: the transfers between them.
    assert await page(limit=10, starting_after=ids[0], ending_before=ids[3]) == (ids[1:3], False)
    assert await page(limit=1, starting_after=ids[0], ending_before=ids[3]) == (ids[1:2], True)
