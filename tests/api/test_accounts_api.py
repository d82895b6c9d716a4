"""``/v1/accounts`` over HTTP: opening, listing, reading and changing accounts, their balances
(now and in the past) and their statements, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from .support import Api

ZERO = {
    "posted": 0,
    "pending": 0,
    "available": 0,
    "debits_posted": 0,
    "credits_posted": 0,
    "debits_pending": 0,
    "credits_pending": 0,
}


def balances(
    dp: int = 0, cp: int = 0, dpe: int = 0, cpe: int = 0, *, normal: str = "credit"
) -> dict[str, int]:
    """The balances body of an account with these four counters, on its normal side."""
    sign = 1 if normal == "debit" else -1
    posted = sign * (dp - cp)
    pending = sign * (dpe - cpe)
    available = dp - cp - cpe if normal == "debit" else cp - dp - dpe
    return {
        "posted": posted,
        "pending": pending,
        "available": available,
        "debits_posted": dp,
        "credits_posted": cp,
        "debits_pending": dpe,
        "credits_pending": cpe,
    }


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def get(api: Api, path: str, params: Any = None) -> httpx.Response:
    return await api.client.get(path, params=params, headers=api.headers)


async def patch(api: Api, account_id: str, **fields: Any) -> httpx.Response:
    return await api.client.patch(f"/v1/accounts/{account_id}", json=fields, headers=api.headers)


async def post_account(api: Api, **fields: Any) -> httpx.Response:
    return await api.client.post("/v1/accounts", json=fields, headers=api.headers)


async def pay(api: Api, debit: dict[str, Any], credit: dict[str, Any], amount: int,
              **fields: Any) -> dict[str, Any]:  # fmt: skip
    response = await api.transfer(debit["id"], credit["id"], amount, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def codes(api: Api, params: Any) -> tuple[list[str], bool]:
    response = await get(api, "/v1/accounts", params)
    assert response.status_code == 200, response.text
    body = response.json()
    return [a["code"] for a in body["data"]], body["has_more"]


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


# ---- opening ---------------------------------------------------------------------------------


async def test_open_an_account_with_every_field(api: Api) -> None:
    customers = await api.account("customers")
    chosen = uuid.uuid4()
    before = datetime.now().astimezone()
    response = await post_account(
        api,
        id=str(chosen),
        code="wallet:alice",
        name="Alice's wallet",
        type="liability",
        currency="USD",
        parent_id=customers["id"],
        debits_must_not_exceed_credits=True,
        credits_must_not_exceed_debits=False,
        overdraft_limit=500,
        metadata={"customer": "alice", "tier": "gold"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    created_at = body.pop("created_at")
    assert body == {
        "id": str(chosen),
        "object": "account",
        "code": "wallet:alice",
        "name": "Alice's wallet",
        "type": "liability",
        "currency": "USD",
        "parent_id": customers["id"],
        "status": "active",
        "normal_side": "credit",
        "debits_must_not_exceed_credits": True,
        "credits_must_not_exceed_debits": False,
        "overdraft_limit": 500,
        "metadata": {"customer": "alice", "tier": "gold"},
        "balances": ZERO,
        "last_seq": 0,
    }
    assert created_at.endswith("Z")
    assert before - timedelta(seconds=1) <= moment(created_at) <= datetime.now().astimezone()
    fetched = await get(api, f"/v1/accounts/{chosen}")
    assert fetched.status_code == 200
    assert fetched.json() == {**body, "created_at": created_at}


async def test_each_type_has_its_normal_side(api: Api) -> None:
    sides = {}
    for kind in ("asset", "liability", "equity", "revenue", "expense"):
        sides[kind] = (await api.account(f"{kind}-1", type=kind))["normal_side"]
    assert sides == {
        "asset": "debit",
        "liability": "credit",
        "equity": "credit",
        "revenue": "credit",
        "expense": "debit",
    }


async def test_the_overdraft_limit_lets_a_wallet_go_that_far_below_zero(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", debits_must_not_exceed_credits=True, overdraft_limit=500)
    await pay(api, bank, wallet, 1_000)
    refused = await api.transfer(wallet["id"], bank["id"], 1_501)
    problem(refused, 422, "insufficient_funds")
    await pay(api, wallet, bank, 1_500)
    balance = await get(api, f"/v1/accounts/{wallet['id']}/balance")
    assert balance.json()["balances"] == balances(dp=1_500, cp=1_000)
    assert balance.json()["balances"]["posted"] == -500


async def test_a_client_chosen_id_makes_opening_idempotent(api: Api) -> None:
    chosen = str(uuid.uuid4())
    fields = {"id": chosen, "code": "till", "name": "Till", "type": "asset", "currency": "GBP",
              "metadata": {"shop": "soho"}}  # fmt: skip
    first = await post_account(api, **fields)
    again = await post_account(api, **fields)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text  # it existed: as a repeated transfer answers
    assert again.json() == first.json()  # the same account, created once
    listed = await get(api, "/v1/accounts")
    assert [a["id"] for a in listed.json()["data"]] == [chosen]
    events = await get(api, "/v1/events")
    assert [(e["type"], e["object_id"]) for e in events.json()["data"]] == [
        ("account.created", chosen)
    ]


async def test_an_id_reused_with_different_fields_is_refused(api: Api) -> None:
    chosen = str(uuid.uuid4())
    await api.account("till", type="asset", id=chosen)
    for change in ({"name": "Other"}, {"type": "expense"}, {"metadata": {"a": "b"}},
                   {"currency": "EUR"}):  # fmt: skip
        fields = {"id": chosen, "code": "till", "name": "Till", "type": "asset",
                  "currency": "USD", **change}  # fmt: skip
        body = problem(
            await post_account(api, **fields), 409, "account_exists_with_different_fields"
        )
        assert body["param"] == "id"
    fetched = await get(api, f"/v1/accounts/{chosen}")
    assert (fetched.json()["name"], fetched.json()["type"]) == ("Till", "asset")


async def test_a_taken_code_is_refused(api: Api) -> None:
    first = await api.account("fees", type="revenue")
    refused = await post_account(
        api, code="fees", name="Fees again", type="revenue", currency="USD"
    )
    body = problem(refused, 409, "account_code_taken")
    assert body["param"] == "code"
    # Another tenant may use the same code.
    other = api.other_tenant()
    theirs = await api.client.post(
        "/v1/accounts",
        json={"code": "fees", "name": "Fees", "type": "revenue", "currency": "USD"},
        headers=other.headers,
    )
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first["id"]


async def test_an_account_cannot_limit_both_sides(api: Api) -> None:
    refused = await post_account(
        api, code="odd", name="Odd", type="asset", currency="USD",
        debits_must_not_exceed_credits=True, credits_must_not_exceed_debits=True,
    )  # fmt: skip
    body = problem(refused, 422, "invalid_account")
    assert body["param"] == "credits_must_not_exceed_debits"
    assert (await get(api, "/v1/accounts")).json()["data"] == []


async def test_a_parent_must_exist_and_hold_the_same_currency(api: Api) -> None:
    euros = await api.account("customers-eu", currency="EUR")
    refused = await post_account(
        api, code="alice", name="Alice", type="liability", currency="USD", parent_id=euros["id"]
    )
    assert problem(refused, 422, "invalid_parent_account")["param"] == "parent_id"
    missing = await post_account(
        api, code="bob", name="Bob", type="liability", currency="USD", parent_id=str(uuid.uuid4())
    )
    problem(missing, 422, "invalid_parent_account")
    child = await api.account("carol", currency="EUR", parent_id=euros["id"])
    assert child["parent_id"] == euros["id"]


# ---- listing ---------------------------------------------------------------------------------


async def test_list_accounts_by_currency_type_parent_status_and_metadata(api: Api) -> None:
    customers = await api.account("customers")
    alice = await api.account("alice", parent_id=customers["id"],
                              metadata={"tier": "gold", "risk \"level\"": "low"})  # fmt: skip
    bob = await api.account("bob", parent_id=customers["id"], metadata={"tier": "silver"})
    await api.account("bank", type="asset", metadata={"zip": "01234", "vip": "true"})
    await api.account("eu-bank", type="asset", currency="EUR", metadata={"tier": "gold"})
    await api.account("fees", type="revenue", metadata={"tier": "gold", "team.name": "ops"})
    frozen = await patch(api, bob["id"], status="frozen")
    assert frozen.status_code == 200, frozen.text

    def in_id_order(*accounts: str) -> list[str]:
        return [c for _id, c in sorted(ids[c] for c in accounts)]

    listed = (await get(api, "/v1/accounts", {"limit": 100})).json()
    ids = {a["code"]: (uuid.UUID(a["id"]), a["code"]) for a in listed["data"]}
    assert [a["code"] for a in listed["data"]] == in_id_order(*ids)
    assert listed["has_more"] is False
    assert await codes(api, {"currency": "EUR"}) == (["eu-bank"], False)
    assert await codes(api, {"type": "asset"}) == (in_id_order("bank", "eu-bank"), False)
    assert await codes(api, {"type": "asset", "currency": "USD"}) == (["bank"], False)
    assert await codes(api, {"parent_id": customers["id"]}) == (in_id_order("alice", "bob"), False)
    assert await codes(api, {"parent_id": alice["id"]}) == ([], False)
    assert await codes(api, {"status": "frozen"}) == (["bob"], False)
    assert await codes(api, {"status": "active", "parent_id": customers["id"]}) == (
        ["alice"],
        False,
    )
    assert await codes(api, {"status": "closed"}) == ([], False)
    gold = in_id_order("alice", "eu-bank", "fees")
    assert await codes(api, {"metadata[tier]": "gold"}) == (gold, False)
    assert await codes(api, {"metadata[tier]": "gold", "currency": "USD"}) == (
        in_id_order("alice", "fees"), False
    )  # fmt: skip
    assert await codes(api, {"metadata[tier]": "gold", "metadata[team.name]": "ops"}) == (
        ["fees"], False
    )  # fmt: skip
    assert await codes(api, {'metadata[risk "level"]': "low"}) == (["alice"], False)
    assert await codes(api, {"metadata[zip]": "01234"}) == (["bank"], False)
    assert await codes(api, {"metadata[zip]": "1234"}) == ([], False)
    assert await codes(api, {"metadata[vip]": "true"}) == (["bank"], False)
    assert await codes(api, {"metadata[tier]": "bronze"}) == ([], False)
    assert await codes(api, {"metadata[nope]": "gold"}) == ([], False)
    assert await codes(api, {"metadata[tier]": "gold", "limit": 2}) == (gold[:2], True)


async def test_list_filters_are_validated(api: Api) -> None:
    problem(await get(api, "/v1/accounts", {"currency": "usd"}), 400, "unknown_currency")
    for params in ({"type": "cash"}, {"status": "open"},
                   {"parent_id": "nope"}, {"limit": 0}, {"limit": 101}):  # fmt: skip
        problem(await get(api, "/v1/accounts", params), 400, "invalid_request")


async def test_walk_every_page_forwards_and_backwards(api: Api) -> None:
    for i in range(7):
        await api.account(f"acct-{i}")
    other = api.other_tenant()
    theirs = await api.client.post(
        "/v1/accounts",
        json={"code": "theirs", "name": "Theirs", "type": "asset", "currency": "USD"},
        headers=other.headers,
    )
    assert theirs.status_code == 201
    everything = (await get(api, "/v1/accounts", {"limit": 100})).json()
    ids = [a["id"] for a in everything["data"]]
    assert len(ids) == 7
    assert ids == sorted(ids, key=uuid.UUID)
    assert theirs.json()["id"] not in ids

    async def page(**params: Any) -> tuple[list[str], bool]:
        response = await get(api, "/v1/accounts", params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["data"]], response.json()["has_more"]

    # Forwards, three at a time: has_more is exact (false when the last page is full too).
    assert await page(limit=3) == (ids[0:3], True)
    assert await page(limit=3, starting_after=ids[2]) == (ids[3:6], True)
    assert await page(limit=3, starting_after=ids[5]) == (ids[6:7], False)
    assert await page(limit=3, starting_after=ids[3]) == (ids[4:7], False)
    assert await page(limit=3, starting_after=ids[6]) == ([], False)
    assert await page(limit=7) == (ids, False)
    assert await page(limit=6) == (ids[:6], True)
    # Backwards from the last page: pages come in id order, has_more tells of earlier ones.
    assert await page(limit=3, ending_before=ids[6]) == (ids[3:6], True)
    assert await page(limit=3, ending_before=ids[3]) == (ids[0:3], False)
    assert await page(limit=3, ending_before=ids[2]) == (ids[0:2], False)
    assert await page(limit=3, ending_before=ids[0]) == ([], False)
    assert await page(limit=2, ending_before=ids[5]) == (ids[3:5], True)
    # Both cursors: the accounts between them, forwards.
    assert await page(limit=10, starting_after=ids[1], ending_before=ids[5]) == (ids[2:5], False)
    assert await page(limit=2, starting_after=ids[1], ending_before=ids[5]) == (ids[2:4], True)
    # A cursor need not be an account that exists: it is a position in id order.
    assert await page(limit=100, starting_after=str(uuid.UUID(int=0))) == (ids, False)
    assert await page(limit=100, ending_before=str(uuid.UUID(int=2**128 - 1))) == (ids, False)
    # A full walk, forwards then backwards, sees every account once.
    seen: list[str] = []
    cursor: dict[str, Any] = {}
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


# ---- reading and changing ----------------------------------------------------------------------


async def test_read_one_account(api: Api) -> None:
    wallet = await api.account("wallet", metadata={"k": "v"})
    fetched = await get(api, f"/v1/accounts/{wallet['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == wallet
    missing = await get(api, f"/v1/accounts/{uuid.uuid4()}")
    problem(missing, 404, "account_not_found")
    other = api.other_tenant()
    theirs = await api.client.get(f"/v1/accounts/{wallet['id']}", headers=other.headers)
    problem(theirs, 404, "account_not_found")
    problem(await get(api, "/v1/accounts/not-a-uuid"), 400, "invalid_request")


async def test_rename_and_retag_an_account(api: Api) -> None:
    wallet = await api.account("wallet", metadata={"tier": "gold", "region": "eu"})
    renamed = await patch(api, wallet["id"], name="Alice's main wallet")
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {**wallet, "name": "Alice's main wallet"}
    retagged = await patch(api, wallet["id"], metadata={"tier": "platinum"})
    assert retagged.status_code == 200, retagged.text
    # Metadata is replaced as a whole, not merged.
    expected = {**wallet, "name": "Alice's main wallet", "metadata": {"tier": "platinum"}}
    assert retagged.json() == expected
    assert (await get(api, f"/v1/accounts/{wallet['id']}")).json() == expected
    assert await codes(api, {"metadata[tier]": "platinum"}) == (["wallet"], False)
    assert await codes(api, {"metadata[region]": "eu"}) == ([], False)
    problem(await patch(api, str(uuid.uuid4()), name="x"), 404, "account_not_found")
    problem(await patch(api, wallet["id"], name=""), 400, "invalid_request")
    problem(await patch(api, wallet["id"], code="other"), 400, "invalid_request")


async def test_a_frozen_account_takes_no_transfers_until_unfrozen(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    await pay(api, bank, wallet, 1_000)
    frozen = await patch(api, wallet["id"], status="frozen")
    assert frozen.status_code == 200, frozen.text
    assert frozen.json()["status"] == "frozen"
    problem(await api.transfer(bank["id"], wallet["id"], 100), 422, "account_frozen")
    problem(await api.transfer(wallet["id"], bank["id"], 100), 422, "account_frozen")
    held = await api.transfer(wallet["id"], bank["id"], 100, pending=True)
    problem(held, 422, "account_frozen")
    balance = await get(api, f"/v1/accounts/{wallet['id']}/balance")
    assert balance.json()["balances"] == balances(cp=1_000)
    unfrozen = await patch(api, wallet["id"], status="active")
    assert unfrozen.status_code == 200
    assert unfrozen.json()["status"] == "active"
    await pay(api, wallet, bank, 400)
    balance = await get(api, f"/v1/accounts/{wallet['id']}/balance")
    assert balance.json()["balances"] == balances(dp=400, cp=1_000)


async def test_only_an_empty_account_can_be_closed_and_closed_is_for_good(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    await pay(api, bank, wallet, 1_000)
    body = problem(await patch(api, wallet["id"], status="closed"), 409, "account_not_empty")
    assert body["param"] == "status"
    await pay(api, wallet, bank, 1_000)
    hold = await api.transfer(bank["id"], wallet["id"], 50, pending=True)
    assert hold.status_code == 201
    problem(await patch(api, wallet["id"], status="closed"), 409, "account_not_empty")
    voided = await api.client.post(f"/v1/transfers/{hold.json()['id']}/void", headers=api.headers)
    assert voided.status_code == 201, voided.text
    closed = await patch(api, wallet["id"], status="closed")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    assert closed.json()["balances"] == balances(dp=1_000, cp=1_000)
    problem(await api.transfer(bank["id"], wallet["id"], 1), 422, "account_closed")
    for status in ("active", "frozen"):
        reopened = await patch(api, wallet["id"], status=status)
        assert problem(reopened, 409, "invalid_status_transition")["param"] == "status"
    assert (await patch(api, wallet["id"], status="closed")).status_code == 200
    assert await codes(api, {"status": "closed"}) == (["wallet"], False)


# ---- balances ----------------------------------------------------------------------------------


async def test_balance_now_with_holds_and_rolled_up_children(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    customers = await api.account("customers")
    alice = await api.account("alice", parent_id=customers["id"],
                              debits_must_not_exceed_credits=True)  # fmt: skip
    savings = await api.account("alice-savings", parent_id=alice["id"])
    shop = await api.account("shop")
    await pay(api, bank, customers, 1_000)
    await pay(api, bank, alice, 10_000)
    await pay(api, bank, savings, 500)
    hold = await api.transfer(alice["id"], shop["id"], 3_000, pending=True)
    assert hold.status_code == 201, hold.text

    async def balance(account: dict[str, Any]) -> dict[str, Any]:
        response = await get(api, f"/v1/accounts/{account['id']}/balance")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    body = await balance(alice)
    assert body == {
        "object": "balance",
        "account_id": alice["id"],
        "currency": "USD",
        "as_of": None,
        "balances": balances(cp=10_000, dpe=3_000),
        "rolled_up": balances(cp=10_500, dpe=3_000),
    }
    assert body["balances"]["posted"] == 10_000
    assert body["balances"]["pending"] == -3_000
    assert body["balances"]["available"] == 7_000
    parent = await balance(customers)
    assert parent["balances"] == balances(cp=1_000)
    assert parent["rolled_up"] == balances(cp=11_500, dpe=3_000)
    assert parent["rolled_up"]["available"] == 8_500
    leaf = await balance(savings)
    assert leaf["balances"] == leaf["rolled_up"] == balances(cp=500)
    # An incoming hold is pending on the shop but not available yet.
    incoming = await balance(shop)
    assert incoming["balances"] == balances(cpe=3_000)
    assert (incoming["balances"]["pending"], incoming["balances"]["available"]) == (3_000, 0)
    # The bank is an asset: its normal side is debit.
    assert (await balance(bank))["balances"] == balances(dp=11_500, normal="debit")
    problem(await get(api, f"/v1/accounts/{uuid.uuid4()}/balance"), 404, "account_not_found")


async def test_balance_as_of_a_past_moment(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    shop = await api.account("shop")
    funded = await pay(api, bank, wallet, 10_000)
    paid = await pay(api, wallet, shop, 2_500)
    held = (await api.transfer(wallet["id"], shop["id"], 1_000, pending=True)).json()
    refund = await pay(api, shop, wallet, 300)

    async def as_of(when: str) -> dict[str, Any]:
        response = await get(api, f"/v1/accounts/{wallet['id']}/balance", {"as_of": when})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["rolled_up"] is None
        assert body["account_id"] == wallet["id"]
        return body

    def just_before(stamp: str) -> str:
        return rfc3339(moment(stamp) - timedelta(microseconds=1))

    first = await as_of(funded["created_at"])
    assert first["as_of"] == funded["created_at"]
    assert first["balances"] == balances(cp=10_000)
    assert (await as_of(just_before(paid["created_at"])))["balances"] == balances(cp=10_000)
    assert (await as_of(paid["created_at"]))["balances"] == balances(dp=2_500, cp=10_000)
    then = (await as_of(held["created_at"]))["balances"]
    assert then == balances(dp=2_500, cp=10_000, dpe=1_000)
    assert (then["posted"], then["pending"], then["available"]) == (7_500, -1_000, 6_500)
    assert (await as_of(refund["created_at"]))["balances"] == balances(
        dp=2_500, cp=10_300, dpe=1_000
    )
    assert (await as_of(just_before(funded["created_at"])))["balances"] == ZERO
    assert (await as_of("2001-01-01T00:00:00Z"))["balances"] == ZERO
    # The same moment in another offset is the same moment.
    paris = moment(paid["created_at"]).astimezone(
        datetime.fromisoformat("2000-01-01T00:00:00+02:00").tzinfo
    )
    in_paris = await as_of(paris.isoformat())
    assert in_paris["balances"] == balances(dp=2_500, cp=10_000)
    assert in_paris["as_of"] == paid["created_at"]  # timestamps are answered in UTC
    # Now and as of now agree.
    now = await get(api, f"/v1/accounts/{wallet['id']}/balance")
    later = await as_of(rfc3339(datetime.now().astimezone() + timedelta(days=1)))
    assert later["balances"] == now.json()["balances"] == balances(dp=2_500, cp=10_300, dpe=1_000)
    naive = await get(api, f"/v1/accounts/{wallet['id']}/balance", {"as_of": "2024-01-01T00:00:00"})
    assert problem(naive, 400, "invalid_request")["param"] == "as_of"
    problem(await get(api, f"/v1/accounts/{wallet['id']}/balance", {"as_of": "yesterday"}), 400,
            "invalid_request")  # fmt: skip


# ---- statements --------------------------------------------------------------------------------


async def test_statement_shows_every_posting_with_the_running_balance(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", debits_must_not_exceed_credits=True)
    shop = await api.account("shop")
    t1 = await pay(api, bank, wallet, 10_000)
    t2 = await pay(api, wallet, shop, 2_500)
    await pay(api, bank, shop, 7)  # does not touch the wallet
    t3 = (await api.transfer(wallet["id"], shop["id"], 4_000, pending=True)).json()
    t4 = (
        await api.client.post(
            f"/v1/transfers/{t3['id']}/post", json={"amount": 1_000}, headers=api.headers
        )
    ).json()
    t5 = await pay(api, shop, wallet, 500)
    response = await get(api, f"/v1/accounts/{wallet['id']}/statement", {"limit": 100})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["object"], body["account_id"], body["currency"], body["has_more"]) == (
        "statement", wallet["id"], "USD", False
    )  # fmt: skip
    entries = body["data"]
    assert [(e["id"], e["transfer_id"], e["seq"], e["index"]) for e in entries] == [
        ("1.1", t1["id"], 1, 1),
        ("2.0", t2["id"], 2, 0),
        ("4.0", t3["id"], 4, 0),
        ("5.0", t4["id"], 5, 0),
        ("6.1", t5["id"], 6, 1),
    ]
    assert [
        (e["side"], e["amount"], e["posted_amount"], e["pending_amount"], e["currency"])
        for e in entries
    ] == [
        ("credit", 10_000, 10_000, 0, "USD"),
        ("debit", 2_500, 2_500, 0, "USD"),
        ("debit", 4_000, 0, 4_000, "USD"),
        ("debit", 1_000, 1_000, -4_000, "USD"),
        ("credit", 500, 500, 0, "USD"),
    ]
    assert [e["balance_after"] for e in entries] == [
        balances(cp=10_000),
        balances(dp=2_500, cp=10_000),
        balances(dp=2_500, cp=10_000, dpe=4_000),
        balances(dp=3_500, cp=10_000),
        balances(dp=3_500, cp=10_500),
    ]
    assert [e["balance_after"]["available"] for e in entries] == [
        10_000,
        7_500,
        3_500,
        6_500,
        7_000,
    ]
    assert [e["created_at"] for e in entries] == [t["created_at"] for t in (t1, t2, t3, t4, t5)]
    # The last running balance is the account's balance.
    now = await get(api, f"/v1/accounts/{wallet['id']}/balance")
    assert now.json()["balances"] == entries[-1]["balance_after"]

    # [from, to): from is inclusive, to exclusive.
    window = await get(
        api,
        f"/v1/accounts/{wallet['id']}/statement",
        {"from": t2["created_at"], "to": t4["created_at"]},
    )
    assert [e["id"] for e in window.json()["data"]] == ["2.0", "4.0"]
    assert window.json()["has_more"] is False
    since = await get(api, f"/v1/accounts/{wallet['id']}/statement", {"from": t4["created_at"]})
    assert [e["id"] for e in since.json()["data"]] == ["5.0", "6.1"]
    until = await get(api, f"/v1/accounts/{wallet['id']}/statement", {"to": t2["created_at"]})
    assert [e["id"] for e in until.json()["data"]] == ["1.1"]
    empty = await get(api, f"/v1/accounts/{wallet['id']}/statement",
                      {"from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00Z"})  # fmt: skip
    assert empty.json()["data"] == []


async def test_statement_pages_with_entry_cursors_both_ways(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    for amount in (100, 200, 300, 400, 500):
        await pay(api, bank, wallet, amount)
    path = f"/v1/accounts/{wallet['id']}/statement"

    async def page(**params: Any) -> tuple[list[str], list[int], bool]:
        response = await get(api, path, params)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return (
            [e["id"] for e in data],
            [e["balance_after"]["posted"] for e in data],
            response.json()["has_more"],
        )

    ids = ["1.1", "2.1", "3.1", "4.1", "5.1"]
    running = [100, 300, 600, 1_000, 1_500]
    assert await page(limit=2) == (ids[0:2], running[0:2], True)
    assert await page(limit=2, starting_after="2.1") == (ids[2:4], running[2:4], True)
    assert await page(limit=2, starting_after="4.1") == (ids[4:5], running[4:5], False)
    assert await page(limit=2, starting_after="3.1") == (ids[3:5], running[3:5], False)
    assert await page(limit=2, starting_after="5.1") == ([], [], False)
    assert await page(limit=2, ending_before="5.1") == (ids[2:4], running[2:4], True)
    assert await page(limit=2, ending_before="3.1") == (ids[0:2], running[0:2], False)
    assert await page(limit=2, ending_before="2.1") == (ids[0:1], running[0:1], False)
    assert await page(limit=2, ending_before="1.1") == ([], [], False)
    # Cursors are positions: the same seq with a lower index sorts before the entry.
    assert await page(limit=1, starting_after="3.0") == (["3.1"], [600], True)
    assert await page(limit=1, ending_before="3.2") == (["3.1"], [600], True)
    # A filtered window pages within the window.
    everything = (await get(api, path)).json()["data"]
    start, end = everything[1]["created_at"], everything[4]["created_at"]
    assert await page(limit=2, **{"from": start, "to": end}) == (ids[1:3], running[1:3], True)
    assert await page(limit=2, starting_after="3.1", **{"from": start, "to": end}) == (
        ids[3:4], running[3:4], False
    )  # fmt: skip
    assert await page(limit=2, ending_before="4.1", **{"from": start, "to": end}) == (
        ids[1:3], running[1:3], False
    )  # fmt: skip
    for bad in ("3", "x.1", "3.-1", "1.2.3"):
        refused = await get(api, path, {"starting_after": bad})
        assert problem(refused, 400, "invalid_request")["param"] == "starting_after"
    # Both cursors: the entries between them.
    assert await page(limit=5, starting_after="1.1", ending_before="4.1") == (
        ids[1:3], running[1:3], False
    )  # fmt: skip
    assert await page(limit=1, starting_after="1.1", ending_before="4.1") == (
        ids[1:2], running[1:2], True
    )  # fmt: skip
    problem(await get(api, f"/v1/accounts/{uuid.uuid4()}/statement"), 404, "account_not_found")
