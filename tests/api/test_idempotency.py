"""Idempotency-Key on every POST: a retry replays the first answer byte for byte and never moves
money twice: across refusals, bursts of concurrent retries, requests still in flight, two
processes racing, and the purge of old keys."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa

from settle.api import Settings, create_app
from settle.store import tables
from settle.store.db import create_db_engine
from settle.store.idempotency import purge_idempotency_keys
from settle.store.ledger_repo import SqlLedgerRepository

from .support import make_tenant

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .support import Api, Tenant

T0 = 1_900_000_000_000_000  # 2030-03-17T17:46:40Z, in microseconds
SECOND = 1_000_000
REPLAYED = "idempotent-replayed"


class ManualClock:
    """The app's clock, moved by the test (integer microseconds)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * SECOND)


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://settle.test") as client:
            yield client
    finally:
        app.state.settle.close()


def keyed(tenant: Tenant | Api, key: str) -> dict[str, str]:
    return {**tenant.headers, "Idempotency-Key": key}


def payment(debit: str, credit: str, amount: Any, **fields: Any) -> dict[str, Any]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
            "currency": "USD", **fields}  # fmt: skip


async def open_account(
    client: httpx.AsyncClient, headers: dict[str, str], code: str, **fields: Any
) -> str:
    opened = await client.post(
        "/v1/accounts",
        json={"code": code, "name": code.title(), "type": "liability", "currency": "USD",
              **fields},
        headers=headers,
    )  # fmt: skip
    assert opened.status_code == 201, opened.text
    account_id: str = opened.json()["id"]
    return account_id


async def posted(client: httpx.AsyncClient, headers: dict[str, str], account_id: str) -> int:
    got = await client.get(f"/v1/accounts/{account_id}/balance", headers=headers)
    assert got.status_code == 200, got.text
    amount: int = got.json()["balances"]["posted"]
    return amount


async def event_types(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    got = await client.get("/v1/events?limit=100", headers=headers)
    assert got.status_code == 200, got.text
    assert got.json()["has_more"] is False
    return [e["type"] for e in got.json()["data"]]


async def transfer_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    got = await client.get("/v1/transfers?limit=100", headers=headers)
    assert got.status_code == 200, got.text
    return [t["id"] for t in got.json()["data"]]


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    assert replay.status_code == first.status_code, replay.text
    assert replay.content == first.content  # byte for byte
    assert replay.headers[REPLAYED] == "true"
    assert replay.headers["content-type"] == first.headers["content-type"]
    assert REPLAYED not in first.headers


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


def stored_keys(url: str, tenant_id: uuid.UUID) -> dict[str, int]:
    """The tenant's stored idempotency keys and when each was stored."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            k = tables.idempotency_keys
            rows = conn.execute(
                sa.select(k.c.key, k.c.created_at).where(k.c.tenant_id == tenant_id)
            ).all()
    finally:
        engine.dispose()
    return {row[0]: int(row[1]) for row in rows}


@pytest.fixture
async def wallet(api: Api) -> dict[str, str]:
    """A bank and a customer's wallet that may not go below zero."""
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", debits_must_not_exceed_credits=True)
    shop = await api.account("shop")
    return {"bank": bank["id"], "wallet": wallet["id"], "shop": shop["id"]}


# ---- the replay ----------------------------------------------------------------------------------


async def test_retry_after_timeout_replays_the_first_answer(
    api: Api, wallet: dict[str, str]
) -> None:
    body = payment(wallet["bank"], wallet["wallet"], 10_000, description="top-up")
    first = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "top-up-1"))
    assert first.status_code == 201, first.text
    retry = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "top-up-1"))
    assert_replay_of(retry, first)
    again = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "top-up-1"))
    assert_replay_of(again, first)
    assert await posted(api.client, api.headers, wallet["wallet"]) == 10_000
    assert await posted(api.client, api.headers, wallet["bank"]) == 10_000
    assert await transfer_ids(api.client, api.headers) == [first.json()["id"]]
    assert (await event_types(api.client, api.headers)).count("transfer.posted") == 1
    # The control: without a key, the same request twice pays twice.
    for _ in range(2):
        unkeyed = await api.client.post("/v1/transfers", json=body, headers=api.headers)
        assert unkeyed.status_code == 201, unkeyed.text
        assert REPLAYED not in unkeyed.headers
    assert await posted(api.client, api.headers, wallet["wallet"]) == 30_000
    assert len(set(await transfer_ids(api.client, api.headers))) == 3


async def test_the_replay_is_the_first_answer_not_the_transfer_as_it_is_now(
    api: Api, wallet: dict[str, str]
) -> None:
    body = payment(wallet["bank"], wallet["wallet"], 4_000)
    first = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "pay-4000"))
    assert first.status_code == 201, first.text
    reversed_ = await api.client.post(
        f"/v1/transfers/{first.json()['id']}/reverse", headers=api.headers
    )
    assert reversed_.status_code == 201, reversed_.text
    now = await api.client.get(f"/v1/transfers/{first.json()['id']}", headers=api.headers)
    assert now.json()["reversed_by"] == reversed_.json()["id"]
    retry = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "pay-4000"))
    assert_replay_of(retry, first)
    assert retry.json()["reversed_by"] is None
    assert await posted(api.client, api.headers, wallet["wallet"]) == 0


async def test_the_same_key_with_a_different_body_is_refused_and_moves_nothing(
    api: Api, wallet: dict[str, str]
) -> None:
    first = await api.client.post(
        "/v1/transfers",
        json=payment(wallet["bank"], wallet["wallet"], 1_000),
        headers=keyed(api, "order-7"),
    )
    assert first.status_code == 201, first.text
    tampered = await api.client.post(
        "/v1/transfers",
        json=payment(wallet["bank"], wallet["wallet"], 9_000),
        headers=keyed(api, "order-7"),
    )
    problem = assert_problem(tampered, 422, "idempotency_key_reused")
    assert problem["param"] == "Idempotency-Key"
    assert REPLAYED not in tampered.headers
    # The key is bound to its route too: the same key on another POST is another request.
    elsewhere = await api.client.post(
        "/v1/accounts",
        json={"code": "order-7", "name": "Order", "type": "asset", "currency": "USD"},
        headers=keyed(api, "order-7"),
    )
    assert_problem(elsewhere, 422, "idempotency_key_reused")
    batch = await api.client.post(
        "/v1/transfers/batch",
        json={"transfers": [payment(wallet["bank"], wallet["wallet"], 1_000)]},
        headers=keyed(api, "order-7"),
    )
    assert_problem(batch, 422, "idempotency_key_reused")
    assert await posted(api.client, api.headers, wallet["wallet"]) == 1_000
    codes = [a["code"] for a in (await api.client.get("/v1/accounts", headers=api.headers))
             .json()["data"]]  # fmt: skip
    assert "order-7" not in codes
    # The original request still replays after the refused reuses.
    retry = await api.client.post(
        "/v1/transfers",
        json=payment(wallet["bank"], wallet["wallet"], 1_000),
        headers=keyed(api, "order-7"),
    )
    assert_replay_of(retry, first)


async def test_a_refusal_is_replayed_too_even_after_the_funds_arrive(
    api: Api, wallet: dict[str, str]
) -> None:
    purchase = payment(wallet["wallet"], wallet["shop"], 500, description="coffee")
    refused = await api.client.post("/v1/transfers", json=purchase, headers=keyed(api, "coffee"))
    assert_problem(refused, 422, "insufficient_funds")
    funded = await api.transfer(wallet["bank"], wallet["wallet"], 1_000)
    assert funded.status_code == 201, funded.text
    retry = await api.client.post("/v1/transfers", json=purchase, headers=keyed(api, "coffee"))
    assert_replay_of(retry, refused)
    assert await posted(api.client, api.headers, wallet["wallet"]) == 1_000
    assert await posted(api.client, api.headers, wallet["shop"]) == 0
    # A new key is a new request: now it goes through.
    bought = await api.client.post("/v1/transfers", json=purchase, headers=keyed(api, "coffee-2"))
    assert bought.status_code == 201, bought.text
    assert await posted(api.client, api.headers, wallet["wallet"]) == 500
    assert await posted(api.client, api.headers, wallet["shop"]) == 500


async def test_a_request_refused_before_any_effect_does_not_use_up_its_key(
    api: Api, wallet: dict[str, str]
) -> None:
    typo = payment(wallet["bank"], wallet["wallet"], 12.5)
    bad = await api.client.post("/v1/transfers", json=typo, headers=keyed(api, "invoice-12"))
    assert_problem(bad, 400, "invalid_amount")
    fixed = payment(wallet["bank"], wallet["wallet"], 1_250)
    good = await api.client.post("/v1/transfers", json=fixed, headers=keyed(api, "invoice-12"))
    assert good.status_code == 201, good.text
    assert REPLAYED not in good.headers
    assert await posted(api.client, api.headers, wallet["wallet"]) == 1_250
    # Nor does an account opening that the service refused: nothing was opened or stored.
    taken = {"code": "shop", "name": "Shop 2", "type": "asset", "currency": "USD"}
    refused = await api.client.post("/v1/accounts", json=taken, headers=keyed(api, "open-2"))
    assert_problem(refused, 409, "account_code_taken")
    assert "open-2" not in stored_keys(api.url, api.tenant.id)
    fixed = {**taken, "code": "shop-2"}
    opened = await api.client.post("/v1/accounts", json=fixed, headers=keyed(api, "open-2"))
    assert opened.status_code == 201, opened.text
    assert REPLAYED not in opened.headers


async def test_a_retry_of_a_transfer_that_existed_already_replays_the_200(
    api: Api, wallet: dict[str, str]
) -> None:
    transfer_id = str(uuid.uuid4())
    body = payment(wallet["bank"], wallet["wallet"], 700, id=transfer_id)
    made = await api.client.post("/v1/transfers", json=body, headers=api.headers)
    assert made.status_code == 201, made.text
    exists = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "late-key"))
    assert exists.status_code == 200, exists.text
    assert exists.json()["id"] == transfer_id
    retry = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "late-key"))
    assert_replay_of(retry, exists)
    assert await posted(api.client, api.headers, wallet["wallet"]) == 700


# ---- the key's syntax ----------------------------------------------------------------------------


_WELL_FORMED_KEYS = [
    "x",
    "k" * 255,
    '"' + "q" * 255 + '"',
    '"order 42: coffee & cake"',  # a quoted string may hold spaces
    '"say \\"hi\\" \\\\ bye"',  # and escaped quotes and backslashes
    "9f1c2e3a-0b1d-4c5e-8f90-a1b2c3d4e5f6",
    "!#$%&'*+-.^_`|~:/?@[]{}",
]

_MALFORMED_KEYS: list[tuple[bytes, str]] = [
    (b"", "empty"),
    (b"   ", "blank"),
    (b'""', "an empty quoted string"),
    (b"k" * 256, "256 characters"),
    (b'"' + b"q" * 256 + b'"', "a quoted string of 256 characters"),
    ("clé".encode(), "non-ASCII (UTF-8)"),
    ("clé".encode("latin-1"), "non-ASCII (Latin-1)"),
    ('"clé"'.encode(), "a quoted string with non-ASCII"),
    (b"a\x01b", "a control character"),
    (b"a\x7fb", "DEL"),
    (b"a\tb", "a tab"),
    (b"order 42", "a space in a bare token"),
    (b'ab"c', "a quote in a bare token"),
    (b'"abc', "an unterminated quoted string"),
    (b'"a"b"', "an unescaped quote inside a quoted string"),
    (b'"a\\b"', "an escape of something else than a quote or backslash"),
]


async def test_every_well_formed_key_is_accepted_and_replayed_quoted_or_bare(
    api: Api, wallet: dict[str, str]
) -> None:
    for n, key in enumerate(_WELL_FORMED_KEYS, start=1):
        body = payment(wallet["bank"], wallet["wallet"], n)
        first = await api.client.post("/v1/transfers", json=body, headers=keyed(api, key))
        assert first.status_code == 201, (key, first.text)
        retry = await api.client.post("/v1/transfers", json=body, headers=keyed(api, key))
        assert_replay_of(retry, first)
    count = len(_WELL_FORMED_KEYS)
    assert await posted(api.client, api.headers, wallet["wallet"]) == count * (count + 1) // 2
    assert len(await transfer_ids(api.client, api.headers)) == count
    # A quoted string and the bare token of the same characters name the same key.
    body = payment(wallet["bank"], wallet["wallet"], 300)
    quoted = await api.client.post("/v1/transfers", json=body, headers=keyed(api, '"abc"'))
    assert quoted.status_code == 201, quoted.text
    for same in ("abc", '  "abc"  ', "abc  "):
        assert_replay_of(
            await api.client.post("/v1/transfers", json=body, headers=keyed(api, same)), quoted
        )
    assert await posted(api.client, api.headers, wallet["wallet"]) == count * (count + 1) // 2 + 300


async def test_a_malformed_key_is_refused_before_anything_moves(
    api: Api, wallet: dict[str, str]
) -> None:
    body = payment(wallet["bank"], wallet["wallet"], 100)
    account = {"code": "extra", "name": "Extra", "type": "asset", "currency": "USD"}
    for key, why in _MALFORMED_KEYS:
        headers = [*((k.encode(), v.encode()) for k, v in api.headers.items()),
                   (b"Idempotency-Key", key)]  # fmt: skip
        for path, json in (("/v1/transfers", body), ("/v1/accounts", account)):
            refused = await api.client.post(path, json=json, headers=headers)
            assert refused.status_code == 400, (why, refused.text)
            problem = assert_problem(refused, 400, "invalid_idempotency_key")
            assert problem["param"] == "Idempotency-Key", why
    assert await posted(api.client, api.headers, wallet["wallet"]) == 0
    assert await transfer_ids(api.client, api.headers) == []
    assert len((await api.client.get("/v1/accounts", headers=api.headers)).json()["data"]) == 3


async def test_two_tenants_may_use_the_same_key_for_their_own_payments(api: Api) -> None:
    other = api.other_tenant()
    books = {}
    for tenant in (api.tenant, other):
        bank = await open_account(api.client, tenant.headers, "bank")
        till = await open_account(api.client, tenant.headers, "till")
        books[tenant.id] = (bank, till)
    answers = {}
    for tenant, amount in ((api.tenant, 1_111), (other, 2_222)):
        bank, till = books[tenant.id]
        answers[tenant.id] = await api.client.post(
            "/v1/transfers", json=payment(bank, till, amount), headers=keyed(tenant, "daily-1")
        )
        assert answers[tenant.id].status_code == 201, answers[tenant.id].text
        assert REPLAYED not in answers[tenant.id].headers
    assert answers[api.tenant.id].json()["id"] != answers[other.id].json()["id"]
    assert await posted(api.client, api.headers, books[api.tenant.id][1]) == 1_111
    assert await posted(api.client, other.headers, books[other.id][1]) == 2_222
    # Each tenant's retry replays its own answer.
    for tenant, amount in ((api.tenant, 1_111), (other, 2_222)):
        bank, till = books[tenant.id]
        retry = await api.client.post(
            "/v1/transfers", json=payment(bank, till, amount), headers=keyed(tenant, "daily-1")
        )
        assert_replay_of(retry, answers[tenant.id])


# ---- every POST ----------------------------------------------------------------------------------


async def test_opening_an_account_with_a_key_is_replayed_not_refused_as_a_taken_code(
    api: Api,
) -> None:
    body = {"code": "float", "name": "Float", "type": "asset", "currency": "EUR",
            "metadata": {"desk": "treasury"}}  # fmt: skip
    first = await api.client.post("/v1/accounts", json=body, headers=keyed(api, "open-float"))
    assert first.status_code == 201, first.text
    retry = await api.client.post("/v1/accounts", json=body, headers=keyed(api, "open-float"))
    assert_replay_of(retry, first)
    # Without the key the same request is a second opening, which the code forbids.
    unkeyed = await api.client.post("/v1/accounts", json=body, headers=api.headers)
    assert_problem(unkeyed, 409, "account_code_taken")
    listed = (await api.client.get("/v1/accounts", headers=api.headers)).json()["data"]
    assert [a["id"] for a in listed] == [first.json()["id"]]
    assert (await event_types(api.client, api.headers)) == ["account.created"]


async def test_a_batch_is_replayed_as_a_whole_and_pays_once(
    api: Api, wallet: dict[str, str]
) -> None:
    batch = {
        "transfers": [
            payment(wallet["bank"], wallet["wallet"], 1_000),
            payment(wallet["wallet"], wallet["shop"], 400),
            payment(wallet["wallet"], wallet["shop"], 5_000),  # refused: not enough left
        ]
    }
    first = await api.client.post("/v1/transfers/batch", json=batch, headers=keyed(api, "b-1"))
    assert first.status_code == 200, first.text
    codes = [r["code"] for r in first.json()["data"]]
    assert codes == ["ok", "ok", "insufficient_funds"]
    retry = await api.client.post("/v1/transfers/batch", json=batch, headers=keyed(api, "b-1"))
    assert_replay_of(retry, first)
    assert await posted(api.client, api.headers, wallet["wallet"]) == 600
    assert await posted(api.client, api.headers, wallet["shop"]) == 400
    assert len(await transfer_ids(api.client, api.headers)) == 2
    assert (await event_types(api.client, api.headers)).count("transfer.posted") == 2
    # An atomic batch refused as a whole is replayed as refused.
    atomic = {"atomic": True, "transfers": batch["transfers"]}
    refused = await api.client.post("/v1/transfers/batch", json=atomic, headers=keyed(api, "b-2"))
    assert refused.status_code == 200, refused.text
    assert [r["code"] for r in refused.json()["data"]] == [
        "linked_transfer_failed", "linked_transfer_failed", "insufficient_funds"
    ]  # fmt: skip
    again = await api.client.post("/v1/transfers/batch", json=atomic, headers=keyed(api, "b-2"))
    assert_replay_of(again, refused)
    assert await posted(api.client, api.headers, wallet["wallet"]) == 600


async def test_resolving_a_hold_with_a_key_is_replayed_not_refused_as_resolved(
    api: Api, wallet: dict[str, str]
) -> None:
    await api.transfer(wallet["bank"], wallet["wallet"], 5_000)
    for action, status_after, code_without_key, shop_posted in (
        ("post", "posted", "pending_already_posted", 1_500),
        ("void", "voided", "pending_already_voided", 1_500),  # the void moved nothing more
    ):
        hold = await api.transfer(wallet["wallet"], wallet["shop"], 1_500, pending=True)
        assert hold.status_code == 201, hold.text
        path = f"/v1/transfers/{hold.json()['id']}/{action}"
        first = await api.client.post(path, headers=keyed(api, f"{action}-hold"))
        assert first.status_code == 201, first.text
        retry = await api.client.post(path, headers=keyed(api, f"{action}-hold"))
        assert_replay_of(retry, first)
        unkeyed = await api.client.post(path, headers=api.headers)
        assert_problem(unkeyed, 409, code_without_key)
        held = await api.client.get(f"/v1/transfers/{hold.json()['id']}", headers=api.headers)
        assert held.json()["status"] == status_after
        balance = (await api.client.get(f"/v1/accounts/{wallet['shop']}/balance",
                                        headers=api.headers)).json()["balances"]  # fmt: skip
        assert balance["posted"] == shop_posted
        assert balance["pending"] == 0
    assert await posted(api.client, api.headers, wallet["wallet"]) == 3_500


async def test_posting_part_of_a_hold_with_a_key_is_replayed_with_its_amount(
    api: Api, wallet: dict[str, str]
) -> None:
    await api.transfer(wallet["bank"], wallet["wallet"], 5_000)
    hold = await api.transfer(wallet["wallet"], wallet["shop"], 2_000, pending=True)
    path = f"/v1/transfers/{hold.json()['id']}/post"
    first = await api.client.post(path, json={"amount": 1_200}, headers=keyed(api, "capture"))
    assert first.status_code == 201, first.text
    different = await api.client.post(path, json={"amount": 800}, headers=keyed(api, "capture"))
    assert_problem(different, 422, "idempotency_key_reused")
    retry = await api.client.post(path, json={"amount": 1_200}, headers=keyed(api, "capture"))
    assert_replay_of(retry, first)
    assert await posted(api.client, api.headers, wallet["shop"]) == 1_200
    assert await posted(api.client, api.headers, wallet["wallet"]) == 3_800


async def test_a_reversal_with_a_key_is_replayed_not_refused_as_already_reversed(
    api: Api, wallet: dict[str, str]
) -> None:
    paid = await api.transfer(wallet["bank"], wallet["wallet"], 3_000)
    path = f"/v1/transfers/{paid.json()['id']}/reverse"
    first = await api.client.post(path, json={"description": "refund"},
                                  headers=keyed(api, "refund-1"))  # fmt: skip
    assert first.status_code == 201, first.text
    retry = await api.client.post(path, json={"description": "refund"},
                                  headers=keyed(api, "refund-1"))  # fmt: skip
    assert_replay_of(retry, first)
    unkeyed = await api.client.post(path, headers=api.headers)
    assert_problem(unkeyed, 409, "already_reversed")
    assert await posted(api.client, api.headers, wallet["wallet"]) == 0
    assert (await event_types(api.client, api.headers)).count("transfer.reversed") == 1


# ---- concurrency ---------------------------------------------------------------------------------


async def test_fifty_concurrent_identical_requests_with_one_key_pay_exactly_once(
    api: Api, wallet: dict[str, str]
) -> None:
    body = payment(wallet["bank"], wallet["wallet"], 9_900, description="burst")
    responses = await asyncio.gather(
        *(
            api.client.post("/v1/transfers", json=body, headers=keyed(api, "burst"))
            for _ in range(50)
        )
    )
    originals = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(originals) == 1, [r.status_code for r in responses]
    first = originals[0]
    for response in responses:
        if response is first:
            continue
        if response.status_code == 201:
            assert_replay_of(response, first)
        else:
            problem = assert_problem(response, 409, "idempotency_key_in_flight")
            assert problem["param"] == "Idempotency-Key"
    assert await transfer_ids(api.client, api.headers) == [first.json()["id"]]
    assert (await event_types(api.client, api.headers)).count("transfer.posted") == 1
    assert await posted(api.client, api.headers, wallet["wallet"]) == 9_900
    # Once the burst is over every retry is a replay.
    late = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "burst"))
    assert_replay_of(late, first)


async def test_fifty_concurrent_account_openings_with_one_key_open_one_account(
    api: Api,
) -> None:
    body = {"code": "escrow", "name": "Escrow", "type": "liability", "currency": "USD"}
    responses = await asyncio.gather(
        *(
            api.client.post("/v1/accounts", json=body, headers=keyed(api, "escrow"))
            for _ in range(50)
        )
    )
    originals = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(originals) == 1, [r.status_code for r in responses]
    for response in responses:
        if response is not originals[0]:
            if response.status_code == 201:
                assert_replay_of(response, originals[0])
            else:
                assert_problem(response, 409, "idempotency_key_in_flight")
    listed = (await api.client.get("/v1/accounts", headers=api.headers)).json()["data"]
    assert [a["code"] for a in listed] == ["escrow"]


@contextlib.contextmanager
def tenant_write_lock(url: str, tenant_id: uuid.UUID) -> Iterator[None]:
    """Hold the tenant's chain head (on SQLite: the database's write lock) from outside the
    app, so that requests reaching the database wait there: in flight, for as long as wanted."""
    engine = create_db_engine(url)
    try:
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            transaction = conn.begin()
            SqlLedgerRepository(conn, lambda: T0).lock_tenant(tenant_id)
            try:
                yield
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


async def until_in_flight(app: FastAPI, tenant_id: uuid.UUID, key: str) -> None:
    """Wait until ``app`` holds ``key`` in flight (probing the claim table as a request would)."""
    in_flight = app.state.settle.in_flight
    for _ in range(500):
        if in_flight.claim(tenant_id, key, b"probe") is not None:
            return
        in_flight.release(tenant_id, key)  # it was free: the probe took it; give it back
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} never went in flight")


async def until_waiting_on_locks(url: str, waiting: int) -> None:
    """PostgreSQL: wait until ``waiting`` backends of this database wait for a lock."""
    engine = create_db_engine(url)
    try:
        for _ in range(500):
            with engine.connect() as conn:
                count = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            if count >= waiting:
                return
            await asyncio.sleep(0.01)
    finally:
        engine.dispose()
    raise AssertionError(f"never saw {waiting} requests waiting for the tenant's lock")


async def settle_into_the_database(url: str, waiting: int) -> None:
    if url.startswith("postgresql"):
        await until_waiting_on_locks(url, waiting)
    else:  # SQLite cannot tell who waits for its lock: give them time to get there
        await asyncio.sleep(0.2)


async def test_a_request_still_in_flight_makes_its_retry_wait_and_a_changed_retry_fail(
    api: Api, wallet: dict[str, str]
) -> None:
    body = payment(wallet["bank"], wallet["wallet"], 6_000)
    with tenant_write_lock(api.url, api.tenant.id):
        held = asyncio.ensure_future(
            api.client.post("/v1/transfers", json=body, headers=keyed(api, "slow"))
        )
        await until_in_flight(api.app, api.tenant.id, "slow")
        await settle_into_the_database(api.url, 1)
        retry = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "slow"))
        problem = assert_problem(retry, 409, "idempotency_key_in_flight")
        assert problem["param"] == "Idempotency-Key"
        changed = await api.client.post(
            "/v1/transfers",
            json=payment(wallet["bank"], wallet["wallet"], 60),
            headers=keyed(api, "slow"),
        )
        assert_problem(changed, 422, "idempotency_key_reused")
        assert not held.done()
    first = await held
    assert first.status_code == 201, first.text
    after = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "slow"))
    assert_replay_of(after, first)
    assert await posted(api.client, api.headers, wallet["wallet"]) == 6_000


async def test_a_claimed_key_blocks_only_its_own_tenant_and_is_free_once_released(
    api: Api, wallet: dict[str, str]
) -> None:
    other = api.other_tenant()
    in_flight = api.app.state.settle.in_flight
    assert in_flight.claim(api.tenant.id, "claimed", b"a request with another body") is None
    body = payment(wallet["bank"], wallet["wallet"], 250)
    refused = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "claimed"))
    assert_problem(refused, 422, "idempotency_key_reused")
    assert await posted(api.client, api.headers, wallet["wallet"]) == 0
    # The other tenant's "claimed" is another key.
    bank = await open_account(api.client, other.headers, "bank")
    till = await open_account(api.client, other.headers, "till")
    theirs = await api.client.post(
        "/v1/transfers", json=payment(bank, till, 250), headers=keyed(other, "claimed")
    )
    assert theirs.status_code == 201, theirs.text
    in_flight.release(api.tenant.id, "claimed")
    done = await api.client.post("/v1/transfers", json=body, headers=keyed(api, "claimed"))
    assert done.status_code == 201, done.text
    assert REPLAYED not in done.headers
    assert await posted(api.client, api.headers, wallet["wallet"]) == 250


async def _race(api: Api, path: str, body: dict[str, Any], key: str) -> list[httpx.Response]:
    """The same request from two app instances (two processes) at the same moment: both are
    held at the tenant's lock, then let go together."""
    second = create_app(Settings(database_url=api.url, maintenance_seconds=0))
    async with serve(second) as other_process:
        with tenant_write_lock(api.url, api.tenant.id):
            racers = [
                asyncio.ensure_future(client.post(path, json=body, headers=keyed(api, key)))
                for client in (api.client, other_process)
            ]
            await until_in_flight(api.app, api.tenant.id, key)
            await until_in_flight(second, api.tenant.id, key)
            await settle_into_the_database(api.url, 2)
            assert not any(r.done() for r in racers)
        return list(await asyncio.gather(*racers))


async def test_two_processes_racing_with_one_key_pay_once_and_answer_alike(
    api: Api, wallet: dict[str, str]
) -> None:
    body = payment(wallet["bank"], wallet["wallet"], 8_800, description="race")
    answers = await _race(api, "/v1/transfers", body, "race-1")
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert answers[0].content == answers[1].content
    assert sum(REPLAYED in a.headers for a in answers) == 1
    assert await transfer_ids(api.client, api.headers) == [answers[0].json()["id"]]
    assert (await event_types(api.client, api.headers)).count("transfer.posted") == 1
    assert await posted(api.client, api.headers, wallet["wallet"]) == 8_800


async def test_two_processes_racing_a_refused_payment_refuse_it_alike(
    api: Api, wallet: dict[str, str]
) -> None:
    body = payment(wallet["wallet"], wallet["shop"], 100)
    answers = await _race(api, "/v1/transfers", body, "race-2")
    assert [a.status_code for a in answers] == [422, 422], [a.text for a in answers]
    assert answers[0].content == answers[1].content
    assert answers[0].json()["code"] == "insufficient_funds"
    assert sum(REPLAYED in a.headers for a in answers) == 1


async def test_two_processes_racing_to_open_one_account_open_it_once_and_answer_alike(
    api: Api,
) -> None:
    body = {"code": "settlement", "name": "Settlement", "type": "asset", "currency": "USD"}
    answers = await _race(api, "/v1/accounts", body, "race-3")
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    assert answers[0].content == answers[1].content
    assert sum(REPLAYED in a.headers for a in answers) == 1
    listed = (await api.client.get("/v1/accounts", headers=api.headers)).json()["data"]
    assert [a["code"] for a in listed] == ["settlement"]


async def test_two_processes_racing_with_one_key_and_two_bodies_let_only_one_through(
    api: Api, wallet: dict[str, str]
) -> None:
    second = create_app(Settings(database_url=api.url, maintenance_seconds=0))
    async with serve(second) as other_process:
        with tenant_write_lock(api.url, api.tenant.id):
            racers = [
                asyncio.ensure_future(
                    client.post(
                        "/v1/transfers",
                        json=payment(wallet["bank"], wallet["wallet"], amount),
                        headers=keyed(api, "race-4"),
                    )
                )
                for client, amount in ((api.client, 111), (other_process, 222))
            ]
            await until_in_flight(api.app, api.tenant.id, "race-4")
            await until_in_flight(second, api.tenant.id, "race-4")
            await settle_into_the_database(api.url, 2)
        answers = await asyncio.gather(*racers)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 422], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 201)
    loser = next(a for a in answers if a.status_code == 422)
    assert loser.json()["code"] == "idempotency_key_reused"
    assert (
        await posted(api.client, api.headers, wallet["wallet"])
        == winner.json()["postings"][1]["amount"]
    )
    assert len(await transfer_ids(api.client, api.headers)) == 1


# ---- how long keys are kept ----------------------------------------------------------------------


async def test_purging_removes_only_the_keys_stored_before_the_cutoff(db_url: str) -> None:
    clock = ManualClock()
    tenant = make_tenant(db_url, "acme", ["admin"])
    app = create_app(Settings(database_url=db_url, maintenance_seconds=0), clock=clock)
    async with serve(app) as client:
        h = tenant.headers
        bank = await open_account(client, h, "bank")
        till = await open_account(client, h, "till")
        old = await client.post("/v1/transfers", json=payment(bank, till, 100),
                                headers=keyed(tenant, "old"))  # fmt: skip
        old_account = {"code": "kept", "name": "Kept", "type": "asset", "currency": "USD"}
        opened = await client.post("/v1/accounts", json=old_account,
                                   headers=keyed(tenant, "old-account"))  # fmt: skip
        assert (old.status_code, opened.status_code) == (201, 201)
        clock.advance(3600)
        new = await client.post("/v1/transfers", json=payment(bank, till, 200),
                                headers=keyed(tenant, "new"))  # fmt: skip
        assert new.status_code == 201, new.text
        assert stored_keys(db_url, tenant.id) == {
            "old": T0, "old-account": T0, "new": T0 + 3600 * SECOND
        }  # fmt: skip

        engine = app.state.settle.store.db
        assert purge_idempotency_keys(engine, T0 + 3600 * SECOND) == 2
        assert stored_keys(db_url, tenant.id) == {"new": T0 + 3600 * SECOND}
        assert purge_idempotency_keys(engine, T0 + 3600 * SECOND) == 0  # nothing else is old

        # The kept key still replays.
        retry_new = await client.post("/v1/transfers", json=payment(bank, till, 200),
                                      headers=keyed(tenant, "new"))  # fmt: skip
        assert_replay_of(retry_new, new)
        # A purged key is forgotten: its retry is a new request. The transfer's id is derived
        # from the key, so it still cannot pay twice: it answers the existing transfer.
        retry_old = await client.post("/v1/transfers", json=payment(bank, till, 100),
                                      headers=keyed(tenant, "old"))  # fmt: skip
        assert retry_old.status_code == 200, retry_old.text
        assert REPLAYED not in retry_old.headers
        assert retry_old.json()["id"] == old.json()["id"]
        assert await posted(client, h, till) == 300
        # ...and the account opening retried after the purge meets its own account's code.
        reopened = await client.post("/v1/accounts", json=old_account,
                                     headers=keyed(tenant, "old-account"))  # fmt: skip
        assert_problem(reopened, 409, "account_code_taken")


async def test_purging_in_chunks_removes_every_old_key(db_url: str) -> None:
    clock = ManualClock()
    tenant = make_tenant(db_url, "acme", ["admin"])
    app = create_app(Settings(database_url=db_url, maintenance_seconds=0), clock=clock)
    async with serve(app) as client:
        bank = await open_account(client, tenant.headers, "bank")
        till = await open_account(client, tenant.headers, "till")
        for i in range(5):
            clock.advance(1)
            done = await client.post("/v1/transfers", json=payment(bank, till, 10 + i),
                                     headers=keyed(tenant, f"old-{i}"))  # fmt: skip
            assert done.status_code == 201, done.text
        clock.advance(60)
        cutoff = clock.now
        fresh = await client.post("/v1/transfers", json=payment(bank, till, 99),
                                  headers=keyed(tenant, "fresh"))  # fmt: skip
        assert fresh.status_code == 201, fresh.text
        engine = app.state.settle.store.db
        assert purge_idempotency_keys(engine, cutoff, chunk=2) == 5
        assert stored_keys(db_url, tenant.id) == {"fresh": cutoff}
        assert purge_idempotency_keys(engine, cutoff + 1, chunk=1) == 1
        assert stored_keys(db_url, tenant.id) == {}


async def test_maintenance_purges_keys_older_than_the_retention_setting(db_url: str) -> None:
    clock = ManualClock()
    tenant = make_tenant(db_url, "acme", ["admin"])
    settings = Settings(
        database_url=db_url, maintenance_seconds=0, idempotency_retention_seconds=3600
    )
    app = create_app(settings, clock=clock)
    async with serve(app) as client:
        bank = await open_account(client, tenant.headers, "bank")
        till = await open_account(client, tenant.headers, "till")
        first = await client.post("/v1/transfers", json=payment(bank, till, 100),
                                  headers=keyed(tenant, "at-0"))  # fmt: skip
        clock.advance(1800)
        second = await client.post("/v1/transfers", json=payment(bank, till, 200),
                                   headers=keyed(tenant, "at-30min"))  # fmt: skip
        assert (first.status_code, second.status_code) == (201, 201)

        clock.advance(1800)  # exactly the retention after the first: kept
        assert app.state.maintenance.run_once()["purged"] == 0
        clock.advance(0.000_001)
        assert app.state.maintenance.run_once()["purged"] == 1
        assert stored_keys(db_url, tenant.id) == {"at-30min": T0 + 1800 * SECOND}
        retry = await client.post("/v1/transfers", json=payment(bank, till, 200),
                                  headers=keyed(tenant, "at-30min"))  # fmt: skip
        assert_replay_of(retry, second)

        clock.advance(1800)
        assert app.state.maintenance.run_once()["purged"] == 1
        assert stored_keys(db_url, tenant.id) == {}
        assert await posted(client, tenant.headers, till) == 300
