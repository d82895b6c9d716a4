"""Tenants are isolated: another tenant's ids answer exactly as ids that do not exist (404,
never data), on every route that takes an id or a filter; lists show only one's own books;
and nothing an intruder tries moves money in either tenant.

To cover a new route, add a row to ``PROBES`` (or ``LISTS`` for a list or filter).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from .support import Api, Tenant

SECRET = "victim-secret"  # in the victim's names, metadata and descriptions


@dataclass(frozen=True)
class Probe:
    """An intruder's request naming the victim's objects: ``{wallet}``, ``{bank}``, ``{hold}``,
    ``{paid}`` are the victim's ids, ``{own_bank}``, ``{own_till}`` the intruder's."""

    does: str
    method: str
    path: str
    body: dict[str, Any] | None
    status: int
    code: str
    # Where the answer's code is: "code" for a problem, "data.0.code" for a batch result.
    code_at: str = "code"


def _pay(debit: str, credit: str, amount: int = 100) -> dict[str, Any]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
            "currency": "USD"}  # fmt: skip


PROBES = [
    Probe("read an account", "GET", "/v1/accounts/{wallet}", None, 404, "account_not_found"),
    Probe("rename an account", "PATCH", "/v1/accounts/{wallet}", {"name": "Hijacked"},
          404, "account_not_found"),
    Probe("re-tag an account", "PATCH", "/v1/accounts/{wallet}", {"metadata": {"owner": "me"}},
          404, "account_not_found"),
    Probe("freeze an account", "PATCH", "/v1/accounts/{wallet}", {"status": "frozen"},
          404, "account_not_found"),
    Probe("close an account", "PATCH", "/v1/accounts/{bank}", {"status": "closed"},
          404, "account_not_found"),
    Probe("read a balance", "GET", "/v1/accounts/{wallet}/balance", None,
          404, "account_not_found"),
    Probe("read a past balance", "GET",
          "/v1/accounts/{wallet}/balance?as_of=2100-01-01T00:00:00Z", None,
          404, "account_not_found"),
    Probe("read a statement", "GET", "/v1/accounts/{wallet}/statement", None,
          404, "account_not_found"),
    Probe("read a statement page", "GET", "/v1/accounts/{wallet}/statement?starting_after=1.0",
          None, 404, "account_not_found"),
    Probe("read a transfer", "GET", "/v1/transfers/{paid}", None, 404, "transfer_not_found"),
    Probe("read a hold", "GET", "/v1/transfers/{hold}", None, 404, "transfer_not_found"),
    Probe("post a hold", "POST", "/v1/transfers/{hold}/post", None, 404, "pending_not_found"),
    Probe("post part of a hold", "POST", "/v1/transfers/{hold}/post", {"amount": 1},
          404, "pending_not_found"),
    Probe("void a hold", "POST", "/v1/transfers/{hold}/void", None, 404, "pending_not_found"),
    Probe("reverse a transfer", "POST", "/v1/transfers/{paid}/reverse", None,
          404, "transfer_not_found"),
    Probe("pay out of the victim's wallet", "POST", "/v1/transfers",
          _pay("{wallet}", "{own_till}"), 404, "account_not_found"),
    Probe("pay into the victim's wallet", "POST", "/v1/transfers",
          _pay("{own_bank}", "{wallet}"), 404, "account_not_found"),
    Probe("move money between two of the victim's accounts", "POST", "/v1/transfers",
          _pay("{bank}", "{wallet}"), 404, "account_not_found"),
    Probe("hold the victim's money", "POST", "/v1/transfers",
          {**_pay("{wallet}", "{own_till}"), "pending": True}, 404, "account_not_found"),
    Probe("move money with postings", "POST", "/v1/transfers",
          {"postings": [
              {"account_id": "{own_bank}", "side": "debit", "amount": 100, "currency": "USD"},
              {"account_id": "{wallet}", "side": "credit", "amount": 100, "currency": "USD"},
          ]}, 404, "account_not_found"),
    Probe("move money in a batch", "POST", "/v1/transfers/batch",
          {"transfers": [_pay("{wallet}", "{own_till}")]}, 200, "account_not_found",
          code_at="data.0.code"),
    Probe("open an account under the victim's", "POST", "/v1/accounts",
          {"code": "child", "name": "Child", "type": "liability", "currency": "USD",
           "parent_id": "{wallet}"}, 422, "invalid_parent_account"),
    Probe("page transfers from the victim's", "GET", "/v1/transfers?starting_after={paid}",
          None, 404, "transfer_not_found"),
    Probe("page transfers back from the victim's", "GET", "/v1/transfers?ending_before={paid}",
          None, 404, "transfer_not_found"),
]  # fmt: skip


@dataclass(frozen=True)
class Listing:
    """A list the intruder reads: every item must be the intruder's own."""

    reads: str
    path: str
    # The ids the list may show: "accounts", "transfers", or both for the event feed.
    of: tuple[str, ...]
    # How many of the intruder's own items it shows.
    count: int


LISTS = [
    Listing("every account", "/v1/accounts?limit=100", ("accounts",), 2),
    Listing("accounts under the victim's", "/v1/accounts?parent_id={wallet}", ("accounts",), 0),
    Listing("accounts after the victim's", "/v1/accounts?starting_after={bank}&limit=100",
            ("accounts",), -1),
    Listing("accounts tagged like the victim's", f"/v1/accounts?metadata[owner]={SECRET}",
            ("accounts",), 0),
    Listing("every transfer", "/v1/transfers?limit=100", ("transfers",), 1),
    Listing("the event feed", "/v1/events?limit=100", ("accounts", "transfers"), 3),
    Listing("the event feed after the victim's last event", "/v1/events?after=evt_1&limit=100",
            ("accounts", "transfers"), 2),
]  # fmt: skip


@dataclass
class Books:
    tenant: Tenant
    ids: dict[str, str]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _anonymous(body: dict[str, Any]) -> str:
    """An answer with its ids blanked and without its request id."""
    return _UUID.sub("<id>", json.dumps({k: v for k, v in body.items() if k != "request_id"}))


def _code(body: Any, where: str) -> Any:
    for part in where.split("."):
        body = body[int(part)] if part.isdigit() else body[part]
    return body


async def _ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def _victim(api: Api) -> Books:
    """The victim: a bank, a wallet with a salary paid in, and a hold on the wallet."""
    c, h = api.client, api.headers
    bank = await api.account("bank", type="asset", metadata={"owner": SECRET})
    wallet = await api.account("wallet", name=f"{SECRET} wallet", metadata={"owner": SECRET})
    paid = await _ok(await api.transfer(bank["id"], wallet["id"], 5_000,
                                        description=f"{SECRET} salary"))  # fmt: skip
    hold = await _ok(await api.transfer(wallet["id"], bank["id"], 700, pending=True,
                                        description=f"{SECRET} hold"))  # fmt: skip
    got = await c.get(f"/v1/accounts/{wallet['id']}", headers=h)
    assert got.json()["balances"]["posted"] == 5_000
    assert got.json()["balances"]["available"] == 4_300
    return Books(api.tenant, {"bank": bank["id"], "wallet": wallet["id"], "paid": paid["id"],
                              "hold": hold["id"]})  # fmt: skip


async def _intruder(api: Api) -> Books:
    """Another tenant with books of its own: a bank, a till and one payment."""
    tenant = api.other_tenant()
    c, h = api.client, tenant.headers
    ids = {}
    for code, kind in (("own_bank", "asset"), ("own_till", "liability")):
        opened = await c.post("/v1/accounts", json={"code": code, "name": code, "type": kind,
                                                    "currency": "USD"}, headers=h)  # fmt: skip
        ids[code] = (await _ok(opened))["id"]
    paid = await c.post("/v1/transfers", json=_pay(ids["own_bank"], ids["own_till"], 900),
                        headers=h)  # fmt: skip
    ids["own_paid"] = (await _ok(paid))["id"]
    return Books(tenant, ids)


async def _snapshot(api: Api, tenant: Tenant) -> list[bytes]:
    """Everything a tenant can read about its books, as bytes."""
    pages = []
    for path in ("/v1/accounts?limit=100", "/v1/transfers?limit=100", "/v1/events?limit=100"):
        got = await api.client.get(path, headers=tenant.headers)
        assert got.status_code == 200, got.text
        pages.append(got.content)
        for item in got.json()["data"]:
            if item.get("object") == "account":
                detail = f"/v1/accounts/{item['id']}"
                for sub in ("", "/balance", "/statement?limit=100"):
                    read = await api.client.get(detail + sub, headers=tenant.headers)
                    assert read.status_code == 200, read.text
                    pages.append(read.content)
    return pages


async def test_another_tenants_ids_answer_as_ids_that_do_not_exist_on_every_route(
    api: Api,
) -> None:
    victim = await _victim(api)
    intruder = await _intruder(api)
    victim_before = await _snapshot(api, victim.tenant)
    intruder_before = await _snapshot(api, intruder.tenant)
    nowhere = {name: str(uuid.uuid4()) for name in victim.ids}  # ids no tenant has

    for probe in PROBES:
        answers = []
        for ids in (victim.ids, nowhere):
            named = {**ids, **intruder.ids}
            answer = await api.client.request(
                probe.method,
                _fill(probe.path, named),
                json=_fill(probe.body, named),
                headers=intruder.tenant.headers,
            )
            assert answer.status_code == probe.status, (probe.does, answer.text)
            assert _code(answer.json(), probe.code_at) == probe.code, (probe.does, answer.text)
            assert SECRET not in answer.text, probe.does
            answers.append(answer.json())
        seen, unknown = answers
        # Indistinguishable from ids nobody has: the same answer but for the ids themselves.
        assert _anonymous(seen) == _anonymous(unknown), probe.does

    # Nothing moved, changed or opened in either tenant.
    assert await _snapshot(api, victim.tenant) == victim_before
    assert await _snapshot(api, intruder.tenant) == intruder_before


async def test_every_list_shows_only_the_callers_own_books(api: Api) -> None:
    victim = await _victim(api)
    intruder = await _intruder(api)
    theirs = set(victim.ids.values())
    own = {
        "accounts": {intruder.ids["own_bank"], intruder.ids["own_till"]},
        "transfers": {intruder.ids["own_paid"]},
    }
    for listing in LISTS:
        got = await api.client.get(
            _fill(listing.path, {**victim.ids, **intruder.ids}), headers=intruder.tenant.headers
        )
        assert got.status_code == 200, (listing.reads, got.text)
        assert SECRET not in got.text, listing.reads
        items = got.json()["data"]
        shown = {item.get("object_id", item["id"]) for item in items}
        allowed = set().union(*(own[kind] for kind in listing.of))
        assert shown <= allowed, listing.reads
        assert not shown & theirs, listing.reads
        if listing.count >= 0:
            assert len(items) == listing.count, (listing.reads, items)
    # And the other way round: the victim sees none of the intruder's books.
    for path in ("/v1/accounts?limit=100", "/v1/transfers?limit=100", "/v1/events?limit=100"):
        got = await api.client.get(path, headers=victim.tenant.headers)
        shown = {item.get("object_id", item["id"]) for item in got.json()["data"]}
        assert not shown & set(intruder.ids.values()), path
        assert shown <= theirs, path


async def test_the_event_feeds_are_numbered_per_tenant(api: Api) -> None:
    victim = await _victim(api)
    intruder = await _intruder(api)
    for books, types in (
        (victim, ["account.created", "account.created", "transfer.posted", "transfer.pending"]),
        (intruder, ["account.created", "account.created", "transfer.posted"]),
    ):
        feed = (await api.client.get("/v1/events", headers=books.tenant.headers)).json()["data"]
        assert [e["type"] for e in feed] == types
        assert [e["id"] for e in feed] == [f"evt_{n}" for n in range(1, len(types) + 1)]


async def test_choosing_another_tenants_id_names_a_new_object_of_ones_own(api: Api) -> None:
    victim = await _victim(api)
    intruder = await _intruder(api)
    victim_before = await _snapshot(api, victim.tenant)
    h = intruder.tenant.headers
    account = await api.client.post(
        "/v1/accounts",
        json={"id": victim.ids["wallet"], "code": "wallet", "name": "Mine", "type": "liability",
              "currency": "USD"},
        headers=h,
    )  # fmt: skip
    mine = await _ok(account)
    assert mine["id"] == victim.ids["wallet"]
    assert mine["balances"]["posted"] == 0
    transfer = await api.client.post(
        "/v1/transfers",
        json={**_pay(intruder.ids["own_bank"], victim.ids["wallet"], 42), "id": victim.ids["paid"]},
        headers=h,
    )
    moved = await _ok(transfer)
    assert moved["id"] == victim.ids["paid"]
    assert [p["amount"] for p in moved["postings"]] == [42, 42]
    # Each tenant reads its own object under the shared id.
    for books, posted in ((intruder, 42), (victim, 5_000)):
        got = await api.client.get(f"/v1/accounts/{victim.ids['wallet']}",
                                   headers=books.tenant.headers)  # fmt: skip
        assert got.json()["balances"]["posted"] == posted
    assert await _snapshot(api, victim.tenant) == victim_before


async def test_filtering_transfers_by_another_tenants_account_answers_404(api: Api) -> None:
    victim = await _victim(api)
    intruder = await _intruder(api)
    got = await api.client.get(
        f"/v1/transfers?account_id={victim.ids['wallet']}", headers=intruder.tenant.headers
    )
    assert got.status_code == 404, got.text
    assert got.json()["code"] == "account_not_found"
    assert got.json()["param"] == "account_id"
