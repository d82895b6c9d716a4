"""``/v1/events`` over HTTP: the tenant's feed in commit order, and a consumer that resumes where
it left off while new events keep arriving, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from .support import Api, Tenant


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


async def feed(api: Api, tenant: Tenant | None = None, **params: Any) -> dict[str, Any]:
    headers = (tenant or api.tenant).headers
    response = await api.client.get("/v1/events", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post(api: Api, path: str, body: Any = None) -> dict[str, Any]:
    response = await api.client.post(path, json=body, headers=api.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def pay(api: Api, debit: dict[str, Any], credit: dict[str, Any], amount: int,
              **fields: Any) -> dict[str, Any]:  # fmt: skip
    response = await api.transfer(debit["id"], credit["id"], amount, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def snapshot(account: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What an account event carries: the account's definition at that moment."""
    fields = ("id", "code", "name", "type", "currency", "parent_id", "status", "metadata")
    return {**{f: account[f] for f in fields}, **changes}


async def test_the_feed_tells_the_ledger_story_in_order(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", metadata={"owner": "alice"})
    shop = await api.account("shop")
    funded = await pay(api, bank, wallet, 10_000)
    hold = await pay(api, wallet, shop, 3_000, pending=True)
    void = await post(api, f"/v1/transfers/{hold['id']}/void")
    hold2 = await pay(api, wallet, shop, 2_000, pending=True)
    capture = await post(api, f"/v1/transfers/{hold2['id']}/post", {"amount": 1_500})
    refund = await post(api, f"/v1/transfers/{capture['id']}/reverse")
    renamed = await api.client.patch(f"/v1/accounts/{wallet['id']}", json={"name": "Main"},
                                     headers=api.headers)  # fmt: skip
    assert renamed.status_code == 200

    async def set_status(account: dict[str, Any], status: str) -> None:
        changed = await api.client.patch(
            f"/v1/accounts/{account['id']}", json={"status": status}, headers=api.headers
        )
        assert changed.status_code == 200, changed.text

    await set_status(shop, "frozen")
    await set_status(shop, "active")
    spare = await api.account("spare")
    await set_status(spare, "frozen")
    await set_status(spare, "closed")

    body = await feed(api, limit=100)
    assert body["has_more"] is False
    events = body["data"]
    assert [(e["id"], e["seq"], e["type"], e["object_id"]) for e in events] == [
        ("evt_1", 1, "account.created", bank["id"]),
        ("evt_2", 2, "account.created", wallet["id"]),
        ("evt_3", 3, "account.created", shop["id"]),
        ("evt_4", 4, "transfer.posted", funded["id"]),
        ("evt_5", 5, "transfer.pending", hold["id"]),
        ("evt_6", 6, "transfer.voided", void["id"]),
        ("evt_7", 7, "transfer.pending", hold2["id"]),
        ("evt_8", 8, "transfer.posted", capture["id"]),
        ("evt_9", 9, "transfer.reversed", refund["id"]),
        ("evt_10", 10, "account.updated", wallet["id"]),
        ("evt_11", 11, "account.frozen", shop["id"]),
        ("evt_12", 12, "account.unfrozen", shop["id"]),
        ("evt_13", 13, "account.created", spare["id"]),
        ("evt_14", 14, "account.frozen", spare["id"]),
        ("evt_15", 15, "account.closed", spare["id"]),
    ]
    assert all(e["object"] == "event" for e in events)
    # Account events carry the account as it was; transfer events the transfer as it is now.
    assert events[1]["data"] == snapshot(wallet)
    assert events[9]["data"] == snapshot(wallet, name="Main")
    assert events[10]["data"] == snapshot(shop, status="frozen")
    assert events[11]["data"] == snapshot(shop, status="active")
    assert events[14]["data"] == snapshot(spare, status="closed")
    for event in events[3:9]:
        now = await api.client.get(f"/v1/transfers/{event['object_id']}", headers=api.headers)
        assert event["data"] == now.json()
    assert events[4]["data"]["status"] == "voided"
    assert events[6]["data"]["resolved_by"] == capture["id"]
    assert events[7]["data"]["reversed_by"] == refund["id"]
    # A transfer event is stamped with the transfer's commit time; times never go back.
    assert events[3]["created_at"] == funded["created_at"]
    assert events[8]["created_at"] == refund["created_at"]
    stamps = [e["created_at"] for e in events]
    assert stamps == sorted(stamps)


async def test_refused_transfers_and_replays_emit_nothing(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", debits_must_not_exceed_credits=True)
    chosen = str(uuid.uuid4())
    await pay(api, bank, wallet, 100, id=chosen)
    again = await api.transfer(bank["id"], wallet["id"], 100, id=chosen)
    assert again.status_code == 200
    refused = await api.transfer(wallet["id"], bank["id"], 101)
    assert refused.status_code == 422
    batch = await api.client.post("/v1/transfers/batch", headers=api.headers, json={
        "atomic": True, "transfers": [
            {"debit_account_id": bank["id"], "credit_account_id": wallet["id"], "amount": 5,
             "currency": "USD"},
            {"debit_account_id": wallet["id"], "credit_account_id": bank["id"], "amount": 500,
             "currency": "USD"},
        ]})  # fmt: skip
    assert [r["code"] for r in batch.json()["data"]] == [
        "linked_transfer_failed", "insufficient_funds"
    ]  # fmt: skip
    events = (await feed(api, limit=100))["data"]
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "account.created"), (2, "account.created"), (3, "transfer.posted")
    ]  # fmt: skip


async def test_each_tenant_has_its_own_numbered_feed(api: Api) -> None:
    other = api.other_tenant()
    await api.account("ours-1")
    theirs = await api.client.post(
        "/v1/accounts",
        json={"code": "theirs", "name": "Theirs", "type": "asset", "currency": "EUR"},
        headers=other.headers,
    )
    assert theirs.status_code == 201
    await api.account("ours-2")
    ours = (await feed(api))["data"]
    assert [(e["id"], e["data"]["code"]) for e in ours] == [
        ("evt_1", "ours-1"),
        ("evt_2", "ours-2"),
    ]
    their_feed = (await feed(api, other))["data"]
    assert [(e["id"], e["seq"], e["object_id"]) for e in their_feed] == [
        ("evt_1", 1, theirs.json()["id"])
    ]
    # One tenant's cursor reads nothing of the other's.
    assert await feed(api, other, after="evt_1") == {"data": [], "has_more": False}


async def test_a_consumer_resumes_exactly_where_it_left_off(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    for amount in (1, 2, 3):
        await pay(api, bank, wallet, amount)
    # 5 events so far. The consumer reads two at a time and stores the last id it processed.
    processed: list[int] = []
    cursor: str | None = None

    async def consume(limit: int) -> bool:
        nonlocal cursor
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["after"] = cursor
        body = await feed(api, **params)
        for event in body["data"]:
            processed.append(event["seq"])
            cursor = event["id"]
        more: bool = body["has_more"]
        return more

    assert await consume(2) is True
    assert processed == [1, 2]
    assert await consume(2) is True
    assert processed == [1, 2, 3, 4]
    # New events arrive while the consumer is away.
    for amount in (4, 5, 6):
        await pay(api, bank, wallet, amount)
    assert await consume(2) is True
    assert processed == [1, 2, 3, 4, 5, 6]
    assert await consume(2) is False  # exactly two were left: has_more is exact
    assert processed == [1, 2, 3, 4, 5, 6, 7, 8]
    assert cursor == "evt_8"
    assert await consume(2) is False
    assert processed == [1, 2, 3, 4, 5, 6, 7, 8]
    await api.account("late")
    assert await consume(2) is False
    assert processed == list(range(1, 10))  # no gaps, no duplicates
    # Any event id is a place to resume from.
    body = await feed(api, after="evt_3", limit=3)
    assert ([e["seq"] for e in body["data"]], body["has_more"]) == ([4, 5, 6], True)
    body = await feed(api, after="evt_6", limit=3)
    assert ([e["seq"] for e in body["data"]], body["has_more"]) == ([7, 8, 9], False)
    body = await feed(api, after="evt_0", limit=9)
    assert ([e["seq"] for e in body["data"]], body["has_more"]) == (list(range(1, 10)), False)
    body = await feed(api, limit=8)
    assert ([e["seq"] for e in body["data"]], body["has_more"]) == (list(range(1, 9)), True)
    assert await feed(api, after="evt_9") == {"data": [], "has_more": False}
    assert await feed(api, after="evt_500") == {"data": [], "has_more": False}
    assert [e["seq"] for e in (await feed(api))["data"]] == list(range(1, 10))  # default limit 10


async def test_the_feed_refuses_cursors_it_did_not_issue(api: Api) -> None:
    for after in ("7", "evt_", "evt_x", "evt_-1", "evt_1.5", "cursor"):
        response = await api.client.get("/v1/events", params={"after": after},
                                        headers=api.headers)  # fmt: skip
        assert problem(response, 400, "invalid_request")["param"] == "after"
    for limit in (0, 101):
        response = await api.client.get("/v1/events", params={"limit": limit},
                                        headers=api.headers)  # fmt: skip
        problem(response, 400, "invalid_request")
    unauthenticated = await api.client.get("/v1/events")
    problem(unauthenticated, 401, "invalid_api_key")


async def test_a_consumer_polling_while_writers_commit_sees_every_event_once(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallets = [await api.account(f"wallet-{i}") for i in range(3)]
    writers_done = asyncio.Event()

    async def writer(wallet: dict[str, Any]) -> None:
        for amount in range(1, 9):
            await pay(api, bank, wallet, amount)

    async def writers() -> None:
        await asyncio.gather(*(writer(w) for w in wallets), api.account("late"))
        writers_done.set()

    seen: list[int] = []

    async def consumer() -> None:
        cursor: str | None = None
        for _poll in range(10_000):
            finished = writers_done.is_set()  # read before the page: then nothing is missed
            params: dict[str, Any] = {"limit": 3}
            if cursor is not None:
                params["after"] = cursor
            body = await feed(api, **params)
            for event in body["data"]:
                seen.append(event["seq"])
                cursor = event["id"]
            if finished and not body["has_more"]:
                return
            if not body["data"]:
                await asyncio.sleep(0.001)
        raise AssertionError(f"the consumer never caught up: {seen}")

    await asyncio.gather(writers(), consumer())
    total = 4 + 3 * 8 + 1
    assert seen == list(range(1, total + 1))
    amounts = {}
    for wallet in wallets:
        balance = await api.client.get(f"/v1/accounts/{wallet['id']}/balance",
                                       headers=api.headers)  # fmt: skip
        amounts[wallet["code"]] = balance.json()["balances"]["posted"]
    assert amounts == {"wallet-0": 36, "wallet-1": 36, "wallet-2": 36}
