"""Every error is an RFC 9457 problem with a stable code: bad JSON, bad amounts and currencies,
missing and unknown fields, oversized and non-JSON bodies, unknown routes and methods, bad
cursors and limits, NUL characters. Never a 500."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from settle.api import Settings, create_app

from .support import make_tenant

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .support import Api

TYPE_BASE = "https://settle.dev/errors#"
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
          415: "Unsupported Media Type", 422: "Unprocessable Content",
          500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip
FIELDS = {"type", "title", "status", "detail", "code", "request_id"}
GENERATED_ID = re.compile(r"^req_[0-9a-f]+$")
UNSET: Any = object()


def assert_problem(
    response: httpx.Response, status: int, code: str, param: str | None = None
) -> dict[str, Any]:
    """The response is the problem ``code``, in full RFC 9457 shape; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.content)
    assert FIELDS <= set(body) <= FIELDS | {"param"}, body
    assert body["type"] == TYPE_BASE + code
    assert body["title"] == TITLES[status]
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if param is None:
        assert "param" not in body, body
    else:
        assert body.get("param") == param, body
    return body


def assert_no_server_errors(app: FastAPI) -> None:
    rendered = app.state.settle.metrics.render().decode()
    assert 'status="5' not in rendered, [
        line for line in rendered.splitlines() if 'status="5' in line
    ]


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://settle.test") as client:
            yield client
    finally:
        app.state.settle.close()


@pytest.fixture
async def books(api: Api) -> dict[str, str]:
    """A bank, a wallet that may not go below zero and a euro account."""
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", debits_must_not_exceed_credits=True)
    euros = await api.account("euros", currency="EUR")
    return {"bank": bank["id"], "wallet": wallet["id"], "euros": euros["id"],
            "nowhere": str(uuid.uuid4())}  # fmt: skip


def _pay(debit: str = "{bank}", credit: str = "{wallet}", amount: Any = 100,
         currency: Any = "USD", **fields: Any) -> dict[str, Any]:  # fmt: skip
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
            "currency": currency, **fields}  # fmt: skip


def _account(**fields: Any) -> dict[str, Any]:
    return {"code": "new", "name": "New", "type": "asset", "currency": "USD", **fields}


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids) if "{" in value and "}" in value else value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


@dataclass(frozen=True)
class Bad:
    """A bad request and the problem it must answer. ``{bank}``, ``{wallet}``, ``{euros}`` and
    ``{nowhere}`` in the path or body are the ``books`` fixture's ids."""

    why: str
    method: str
    path: str
    status: int
    code: str
    param: str | None = None
    json: Any = UNSET
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    authenticated: bool = True


async def send(api: Api, bad: Bad, ids: dict[str, str]) -> httpx.Response:
    headers = {**(api.headers if bad.authenticated else {}), **bad.headers}
    if bad.content is not None:
        headers.setdefault("Content-Type", "application/json")
        return await api.client.request(
            bad.method, _fill(bad.path, ids), content=bad.content, headers=headers
        )
    body = None if bad.json is UNSET else _fill(bad.json, ids)
    return await api.client.request(bad.method, _fill(bad.path, ids), json=body, headers=headers)


async def check_all(api: Api, ids: dict[str, str], table: list[Bad]) -> None:
    for bad in table:
        response = await send(api, bad, ids)
        try:
            assert_problem(response, bad.status, bad.code, bad.param)
        except AssertionError as failed:
            raise AssertionError(f"{bad.why}: {failed}") from failed


async def assert_books_untouched(api: Api, ids: dict[str, str]) -> None:
    assert (await api.client.get("/v1/transfers", headers=api.headers)).json()["data"] == []
    accounts = (await api.client.get("/v1/accounts", headers=api.headers)).json()["data"]
    assert sorted(a["code"] for a in accounts) == ["bank", "euros", "wallet"]
    assert all(a["balances"]["posted"] == 0 for a in accounts)


# ---- the shape of every problem ------------------------------------------------------------------

EVERY_KIND = [
    Bad("no API key", "GET", "/v1/accounts", 401, "invalid_api_key", authenticated=False),
    Bad("unknown route", "GET", "/v1/ledgers", 404, "route_not_found"),
    Bad("unknown account", "GET", "/v1/accounts/{nowhere}", 404, "account_not_found", "id"),
    Bad("unknown transfer", "GET", "/v1/transfers/{nowhere}", 404, "transfer_not_found", "id"),
    Bad("unknown hold", "POST", "/v1/transfers/{nowhere}/void", 404, "pending_not_found"),
    Bad("paying an unknown account", "POST", "/v1/transfers", 404, "account_not_found",
        json=_pay(credit="{nowhere}")),
    Bad("wrong method", "DELETE", "/v1/accounts", 405, "method_not_allowed"),
    Bad("malformed JSON", "POST", "/v1/transfers", 400, "malformed_json", content=b"{"),
    Bad("a float amount", "POST", "/v1/transfers", 400, "invalid_amount", "amount",
        json=_pay(amount=1.5)),
    Bad("a lower-case currency", "POST", "/v1/transfers", 400, "unknown_currency", "currency",
        json=_pay(currency="usd")),
    Bad("a missing field", "POST", "/v1/accounts", 400, "invalid_request", "name",
        json={"code": "x", "type": "asset", "currency": "USD"}),
    Bad("an unknown field", "POST", "/v1/accounts", 400, "invalid_request", "nickname",
        json=_account(nickname="x")),
    Bad("a bad key", "POST", "/v1/transfers", 400, "invalid_idempotency_key",
        "Idempotency-Key", json=_pay(), headers={"Idempotency-Key": '""'}),
    Bad("a text body", "POST", "/v1/accounts", 415, "unsupported_media_type",
        content=b"code=x", headers={"Content-Type": "text/plain"}),
    Bad("a bad cursor", "GET", "/v1/accounts?starting_after=nope", 400, "invalid_request",
        "starting_after"),
    Bad("a taken code", "POST", "/v1/accounts", 409, "account_code_taken", "code",
        json=_account(code="bank")),
    Bad("not enough money", "POST", "/v1/transfers", 422, "insufficient_funds",
        json=_pay(debit="{wallet}", credit="{bank}")),
    Bad("mixed currencies", "POST", "/v1/transfers", 422, "currency_mismatch",
        json=_pay(credit="{euros}")),
    Bad("unbalanced postings", "POST", "/v1/transfers", 422, "unbalanced", json={"postings": [
        {"account_id": "{bank}", "side": "debit", "amount": 100, "currency": "USD"},
        {"account_id": "{wallet}", "side": "credit", "amount": 90, "currency": "USD"}]}),
    Bad("a NUL character", "POST", "/v1/transfers", 400, "invalid_request", "description",
        json=_pay(description="a\x00b")),
]  # fmt: skip


async def test_every_error_is_a_problem_document_whose_request_id_is_the_header(
    api: Api, books: dict[str, str]
) -> None:
    await check_all(api, books, EVERY_KIND)
    await assert_books_untouched(api, books)
    assert_no_server_errors(api.app)


async def test_a_client_request_id_is_echoed_in_the_header_and_the_problem(api: Api) -> None:
    for given in ("order-42", "a.b:c_d-E9", "x" * 128):
        ok = await api.client.get("/v1/accounts", headers={**api.headers, "X-Request-Id": given})
        assert ok.status_code == 200
        assert ok.headers["x-request-id"] == given
        bad = await api.client.get(
            "/v1/accounts/nope", headers={**api.headers, "X-Request-Id": given}
        )
        assert assert_problem(bad, 400, "invalid_request", "account_id")["request_id"] == given
    # An id that is not a plain token (or too long) is replaced by the server's own.
    for refused in ("has space", "x" * 129, "semi;colon", "", 'quote"d'):
        bad = await api.client.get(
            "/v1/accounts/nope", headers={**api.headers, "X-Request-Id": refused}
        )
        body = assert_problem(bad, 400, "invalid_request", "account_id")
        assert GENERATED_ID.match(body["request_id"]), body["request_id"]
    # Without one, every request gets an id of its own.
    ids = set()
    for _ in range(20):
        response = await api.client.get("/v1/nowhere", headers=api.headers)
        ids.add(assert_problem(response, 404, "route_not_found")["request_id"])
    assert len(ids) == 20
    assert all(GENERATED_ID.match(i) for i in ids)


# ---- bodies --------------------------------------------------------------------------------------


async def test_a_body_that_is_not_json_is_refused_as_malformed(
    api: Api, books: dict[str, str]
) -> None:
    bodies = [b"{", b"{x}", b'{"code": "a",}', b"   ", b"[1, 2", b'{"a": 1} trailing',
              b"\xff\xfe\x00{", "{\"name\": \"caf\xe9\"}".encode("latin-1"),
              b'{"amount": 1' + b"0" * 5_000 + b"}"]  # fmt: skip
    table = [
        Bad(f"{path}: {body[:20]!r}", "POST", path, 400, "malformed_json", content=body)
        for body in bodies
        for path in ("/v1/accounts", "/v1/transfers", "/v1/transfers/{nowhere}/void")
    ]
    await check_all(api, books, table)
    await assert_books_untouched(api, books)
    assert_no_server_errors(api.app)


async def test_amounts_are_json_integers_of_minor_units(api: Api, books: dict[str, str]) -> None:
    table = []
    for amount in (1.5, 100.0, "100", True, False, -1, 0, 2**63, [100], {"v": 100}):
        table += [
            Bad(f"amount {amount!r}", "POST", "/v1/transfers", 400, "invalid_amount", "amount",
                json=_pay(amount=amount)),
            Bad(f"posting amount {amount!r}", "POST", "/v1/transfers", 400, "invalid_amount",
                "postings[1].amount", json={"postings": [
                    {"account_id": "{bank}", "side": "debit", "amount": 100, "currency": "USD"},
                    {"account_id": "{wallet}", "side": "credit", "amount": amount,
                     "currency": "USD"}]}),
            Bad(f"batch amount {amount!r}", "POST", "/v1/transfers/batch", 400,
                "invalid_amount", "transfers[1].amount",
                json={"transfers": [_pay(), _pay(amount=amount)]}),
            Bad(f"partial post amount {amount!r}", "POST", "/v1/transfers/{nowhere}/post", 400,
                "invalid_amount", "amount", json={"amount": amount}),
        ]  # fmt: skip
    for limit in (-1, 1.5, "10", True, 2**63):
        table.append(
            Bad(f"overdraft_limit {limit!r}", "POST", "/v1/accounts", 400, "invalid_amount",
                "overdraft_limit",
                json=_account(debits_must_not_exceed_credits=True, overdraft_limit=limit))
        )  # fmt: skip
    await check_all(api, books, table)
    await assert_books_untouched(api, books)


async def test_the_largest_amount_is_accepted_and_one_more_overflows_the_balance(
    api: Api, books: dict[str, str]
) -> None:
    biggest = 2**63 - 1
    paid = await api.transfer(books["bank"], books["wallet"], biggest)
    assert paid.status_code == 201, paid.text
    assert paid.json()["postings"][0]["amount"] == biggest
    more = await api.transfer(books["bank"], books["wallet"], 1)
    assert_problem(more, 422, "balance_overflow")
    wallet = await api.client.get(f"/v1/accounts/{books['wallet']}", headers=api.headers)
    assert wallet.json()["balances"]["posted"] == biggest


_NOT_CURRENCIES: list[Any] = ["usd", "ABC", "XAU", "XXX", "US", "USDX", "", 840, "U$D"]


def _posting_in(currency: Any) -> dict[str, Any]:
    return {"postings": [
        {"account_id": "{bank}", "side": "debit", "amount": 1, "currency": currency},
        {"account_id": "{wallet}", "side": "credit", "amount": 1, "currency": "USD"}]}  # fmt: skip


async def test_currencies_are_iso_4217_codes_with_minor_units(
    api: Api, books: dict[str, str]
) -> None:
    table = []
    for currency in _NOT_CURRENCIES:
        table += [
            Bad(f"transfer in {currency!r}", "POST", "/v1/transfers", 400, "unknown_currency",
                "currency", json=_pay(currency=currency)),
            Bad(f"account in {currency!r}", "POST", "/v1/accounts", 400, "unknown_currency",
                "currency", json=_account(currency=currency)),
        ]  # fmt: skip
    for currency in ("usd", "US", "USDX", "", 840):  # not even shaped like a code
        table.append(Bad(f"posting in {currency!r}", "POST", "/v1/transfers", 400,
                         "unknown_currency", "postings[0].currency",
                         json=_posting_in(currency)))  # fmt: skip
    for currency in ("usd", "US", "USDX"):
        table.append(Bad(f"filter on {currency!r}", "GET", f"/v1/accounts?currency={currency}",
                         400, "unknown_currency", "currency"))  # fmt: skip
    await check_all(api, books, table)
    await assert_books_untouched(api, books)


async def test_a_nested_unknown_currency_names_the_field_at_fault(
    api: Api, books: dict[str, str]
) -> None:
    table = []
    for currency in ("ABC", "XAU"):
        table += [
            Bad(f"posting in {currency!r}", "POST", "/v1/transfers", 400, "unknown_currency",
                "postings[0].currency", json=_posting_in(currency)),
            Bad(f"batch in {currency!r}", "POST", "/v1/transfers/batch", 400,
                "unknown_currency", "transfers[1].currency",
                json={"transfers": [_pay(), _pay(currency=currency)]}),
        ]  # fmt: skip
    await check_all(api, books, table)


async def test_missing_and_unknown_fields_are_refused_naming_the_field(
    api: Api, books: dict[str, str]
) -> None:
    posting = {"account_id": "{bank}", "side": "debit", "amount": 1, "currency": "USD"}
    table = [
        Bad("an empty account", "POST", "/v1/accounts", 400, "invalid_request", "code", json={}),
        Bad("an account without a type", "POST", "/v1/accounts", 400, "invalid_request", "type",
            json={"code": "x", "name": "X", "currency": "USD"}),
        Bad("an account without a currency", "POST", "/v1/accounts", 400, "invalid_request",
            "currency", json={"code": "x", "name": "X", "type": "asset"}),
        Bad("a posting without an amount", "POST", "/v1/transfers", 400, "invalid_request",
            "postings[0].amount", json={"postings": [
                {k: v for k, v in posting.items() if k != "amount"},
                {**posting, "side": "credit"}]}),
        Bad("no body at all", "POST", "/v1/accounts", 400, "invalid_request"),
        Bad("an empty transfer", "POST", "/v1/transfers", 400, "invalid_request", "postings",
            json={}),
        Bad("a transfer without an amount", "POST", "/v1/transfers", 400, "invalid_request",
            "amount", json={k: v for k, v in _pay().items() if k != "amount"}),
        Bad("a transfer in both shapes", "POST", "/v1/transfers", 400, "invalid_request",
            "postings", json={**_pay(), "postings": [posting, {**posting, "side": "credit"}]}),
        Bad("a single posting", "POST", "/v1/transfers", 400, "invalid_request", "postings",
            json={"postings": [posting]}),
        Bad("a posting without a side", "POST", "/v1/transfers", 400, "invalid_request",
            "postings[1].side", json={"postings": [posting, {
                k: v for k, v in posting.items() if k != "side"}]}),
        Bad("a bad side", "POST", "/v1/transfers", 400, "invalid_request", "postings[1].side",
            json={"postings": [posting, {**posting, "side": "sideways"}]}),
        Bad("a bad account id", "POST", "/v1/transfers", 400, "invalid_request",
            "debit_account_id", json=_pay(debit="bank")),
        Bad("an empty batch", "POST", "/v1/transfers/batch", 400, "invalid_request",
            "transfers", json={"transfers": []}),
        Bad("a naive effective_at", "POST", "/v1/transfers", 400, "invalid_request",
            "effective_at", json=_pay(effective_at="2030-01-01T00:00:00")),
        Bad("postings and the shorthand in a batch", "POST", "/v1/transfers/batch", 400,
            "invalid_request", "transfers[1].postings", json={"transfers": [_pay(), {
                **_pay(), "postings": [posting, {**posting, "side": "credit"}]}]}),
        Bad("metadata that is not text", "POST", "/v1/transfers", 400, "invalid_request",
            "metadata.order", json=_pay(metadata={"order": 42})),
        Bad("a string for a flag", "POST", "/v1/transfers", 400, "invalid_request", "pending",
            json=_pay(pending="yes")),
        Bad("an array body", "POST", "/v1/transfers", 400, "invalid_request", json=[_pay()]),
        Bad("a JSON string body", "POST", "/v1/accounts", 400, "invalid_request", json="acct"),
        Bad("an unknown transfer field", "POST", "/v1/transfers", 400, "invalid_request",
            "memo", json=_pay(memo="hi")),
        Bad("an unknown posting field", "POST", "/v1/transfers", 400, "invalid_request",
            "postings[0].memo", json={"postings": [{**posting, "memo": "x"},
                                                   {**posting, "side": "credit"}]}),
        Bad("an unknown batch field", "POST", "/v1/transfers/batch", 400, "invalid_request",
            "linked", json={"transfers": [_pay()], "linked": True}),
        Bad("an unknown void field", "POST", "/v1/transfers/{nowhere}/void", 400,
            "invalid_request", "reason", json={"reason": "x"}),
        Bad("an unknown update field", "PATCH", "/v1/accounts/{wallet}", 400, "invalid_request",
            "code", json={"code": "renamed"}),
        Bad("an unknown status", "PATCH", "/v1/accounts/{wallet}", 400, "invalid_request",
            "status", json={"status": "asleep"}),
    ]  # fmt: skip
    await check_all(api, books, table)
    await assert_books_untouched(api, books)


async def test_a_body_over_the_limit_is_refused_and_nothing_is_done(db_url: str) -> None:
    tenant = make_tenant(db_url, "acme", ["admin"])
    app = create_app(Settings(database_url=db_url, maintenance_seconds=0, max_body_bytes=1000))
    async with serve(app) as client:
        h = {**tenant.headers, "Content-Type": "application/json"}
        exactly = json.dumps(_account(code="exact")).encode()
        exactly += b" " * (1000 - len(exactly))
        assert len(exactly) == 1000
        opened = await client.post("/v1/accounts", content=exactly, headers=h)
        assert opened.status_code == 201, opened.text

        over = json.dumps(_account(code="over")).encode()
        over += b" " * (1001 - len(over))
        declared = await client.post("/v1/accounts", content=over, headers=h)
        body = assert_problem(declared, 413, "payload_too_large")
        assert "1000 bytes" in body["detail"]

        async def streamed() -> AsyncIterator[bytes]:
            yield b'{"code": "streamed", "name": "'
            yield b"x" * 2_000
            yield b'", "type": "asset", "currency": "USD"}'

        chunked = await client.post("/v1/accounts", content=streamed(), headers=h)
        assert "content-length" not in chunked.request.headers
        assert_problem(chunked, 413, "payload_too_large")

        keyed = await client.post("/v1/accounts", content=over,
                                  headers={**h, "Idempotency-Key": "big"})  # fmt: skip
        assert_problem(keyed, 413, "payload_too_large")
        accounts = (await client.get("/v1/accounts", headers=tenant.headers)).json()["data"]
        assert [a["code"] for a in accounts] == ["exact"]
        assert_no_server_errors(app)


async def test_a_body_that_is_not_sent_as_json_is_an_unsupported_media_type(
    api: Api, books: dict[str, str]
) -> None:
    body = json.dumps(_account(code="typed")).encode()
    table = [
        Bad(f"{path} as {kind!r}", "POST", path, 415, "unsupported_media_type", content=body,
            headers={"Content-Type": kind})
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                     "application/xml", "text/json", "")
        for path in ("/v1/accounts", "/v1/transfers", "/v1/transfers/batch",
                     "/v1/transfers/{nowhere}/reverse")
    ]  # fmt: skip
    await check_all(api, books, table)
    await assert_books_untouched(api, books)
    # A JSON media type with parameters, or a +json one, is JSON.
    for n, kind in enumerate(("application/json; charset=utf-8", "application/vnd.api+json")):
        opened = await api.client.post(
            "/v1/accounts",
            content=json.dumps(_account(code=f"typed-{n}")).encode(),
            headers={**api.headers, "Content-Type": kind},
        )
        assert opened.status_code == 201, (kind, opened.text)


# ---- routes --------------------------------------------------------------------------------------


async def test_an_unknown_route_is_a_404_problem_even_without_a_key(api: Api) -> None:
    for method, path in (
        ("GET", "/"),
        ("GET", "/v1"),
        ("GET", "/v1/ledger"),
        ("GET", "/v2/accounts"),
        ("POST", "/v1/transfers/x/y/z"),
        ("GET", "/v1/accounts/x/balances"),
        ("DELETE", "/v1/things/1"),
    ):
        for headers in (api.headers, {}):
            response = await api.client.request(method, path, headers=headers)
            body = assert_problem(response, 404, "route_not_found")
            assert body["detail"] == f"no route for {path}"


async def test_a_wrong_method_is_a_405_problem_naming_the_allowed_methods(
    api: Api, books: dict[str, str]
) -> None:
    wallet = books["wallet"]
    for method, path, allowed in (
        ("DELETE", "/v1/accounts", "GET, POST"),
        ("PUT", "/v1/accounts", "GET, POST"),
        ("DELETE", f"/v1/accounts/{wallet}", "GET, PATCH"),
        ("POST", f"/v1/accounts/{wallet}/balance", "GET"),
        ("PATCH", f"/v1/transfers/{wallet}", "GET"),
        ("GET", f"/v1/transfers/{wallet}/reverse", "POST"),
        ("POST", "/v1/events", "GET"),
        ("PUT", "/v1/transfers", "GET, POST"),
    ):
        response = await api.client.request(method, path, headers=api.headers)
        body = assert_problem(response, 405, "method_not_allowed")
        assert body["detail"] == f"{method} is not allowed on {path}"
        assert response.headers["allow"] == allowed, (method, path)


# ---- queries -------------------------------------------------------------------------------------


async def test_bad_cursors_limits_and_filters_are_refused_naming_the_parameter(
    api: Api, books: dict[str, str]
) -> None:
    statement = "/v1/accounts/{wallet}/statement"
    u = str(uuid.uuid4())
    table = [
        Bad("accounts after a non-UUID", "GET", "/v1/accounts?starting_after=acct_1", 400,
            "invalid_request", "starting_after"),
        Bad("accounts before a non-UUID", "GET", "/v1/accounts?ending_before=12", 400,
            "invalid_request", "ending_before"),
        Bad("transfers after a non-UUID", "GET", "/v1/transfers?starting_after=x", 400,
            "invalid_request", "starting_after"),
        Bad("transfers after no transfer", "GET", f"/v1/transfers?starting_after={u}", 404,
            "transfer_not_found", "starting_after"),
        Bad("transfers before no transfer", "GET", f"/v1/transfers?ending_before={u}", 404,
            "transfer_not_found", "ending_before"),
        Bad("transfers of a non-UUID account", "GET", "/v1/transfers?account_id=wallet", 400,
            "invalid_request", "account_id"),
        Bad("transfers created after garbage", "GET", "/v1/transfers?created_after=yesterday",
            400, "invalid_request", "created_after"),
        Bad("transfers created before a naive time", "GET",
            "/v1/transfers?created_before=2030-01-01T00:00:00", 400, "invalid_request",
            "created_before"),
        Bad("a statement after x", "GET", statement + "?starting_after=x", 400,
            "invalid_request", "starting_after"),
        Bad("a statement before '1.'", "GET", statement + "?ending_before=1.", 400,
            "invalid_request", "ending_before"),
        Bad("a statement after '1.2.3'", "GET", statement + "?starting_after=1.2.3", 400,
            "invalid_request", "starting_after"),
        Bad("a statement after '-1.0'", "GET", statement + "?starting_after=-1.0", 400,
            "invalid_request", "starting_after"),
        Bad("a statement after a 19-digit seq", "GET",
            statement + "?starting_after=" + "9" * 19 + ".0", 400, "invalid_request",
            "starting_after"),
        Bad("a statement after 41 characters", "GET",
            statement + "?starting_after=1." + "0" * 39, 400, "invalid_request",
            "starting_after"),
        Bad("a statement from a naive time", "GET", statement + "?from=2030-01-01T00:00:00",
            400, "invalid_request", "from"),
        Bad("a balance as of garbage", "GET", "/v1/accounts/{wallet}/balance?as_of=now", 400,
            "invalid_request", "as_of"),
        Bad("a balance as of a naive time", "GET",
            "/v1/accounts/{wallet}/balance?as_of=2030-01-01T00:00:00", 400, "invalid_request",
            "as_of"),
        Bad("events after evt_x", "GET", "/v1/events?after=evt_x", 400, "invalid_request",
            "after"),
        Bad("events after a bare number", "GET", "/v1/events?after=12", 400, "invalid_request",
            "after"),
        Bad("events after evt_", "GET", "/v1/events?after=evt_", 400, "invalid_request",
            "after"),
        Bad("events after evt_-1", "GET", "/v1/events?after=evt_-1", 400, "invalid_request",
            "after"),
        Bad("events after 19 digits", "GET", "/v1/events?after=evt_" + "9" * 19, 400,
            "invalid_request", "after"),
        Bad("events after 41 characters", "GET", "/v1/events?after=evt_" + "1" * 37, 400,
            "invalid_request", "after"),
        Bad("accounts of a bad type", "GET", "/v1/accounts?type=cash", 400, "invalid_request",
            "type"),
        Bad("accounts of a bad status", "GET", "/v1/accounts?status=asleep", 400,
            "invalid_request", "status"),
        Bad("accounts under a non-UUID", "GET", "/v1/accounts?parent_id=bank", 400,
            "invalid_request", "parent_id"),
        Bad("an account by a non-UUID", "GET", "/v1/accounts/bank", 400, "invalid_request",
            "account_id"),
        Bad("a transfer by a non-UUID", "GET", "/v1/transfers/first", 400, "invalid_request",
            "transfer_id"),
    ]  # fmt: skip
    for path in ("/v1/accounts", "/v1/transfers", "/v1/events", statement):
        for limit in ("0", "101", "-1", "1.5", "ten", ""):
            table.append(Bad(f"{path} limit={limit!r}", "GET", f"{path}?limit={limit}", 400,
                             "invalid_request", "limit"))  # fmt: skip
    await check_all(api, books, table)
    for path in ("/v1/accounts", "/v1/transfers", "/v1/events", statement):
        for limit in ("1", "100"):
            fine = await api.client.get(_fill(f"{path}?limit={limit}", books), headers=api.headers)
            assert fine.status_code == 200, (path, limit, fine.text)
    assert_no_server_errors(api.app)


async def test_a_statement_cursor_with_an_index_past_any_posting_is_not_a_server_error(
    api: Api, books: dict[str, str]
) -> None:
    paid = await api.transfer(books["bank"], books["wallet"], 100)
    assert paid.status_code == 201, paid.text
    path = f"/v1/accounts/{books['wallet']}/statement?ending_before="
    # A transfer has at most 64 postings: an index of four digits is the most a cursor takes.
    fine = await api.client.get(f"{path}999999999999999999.9999", headers=api.headers)
    assert fine.status_code == 200, fine.text
    assert [e["amount"] for e in fine.json()["data"]] == [100]
    for cursor in ("1.32767", "1.32768", "1.99999", "999999999999999999.99999"):
        page = await api.client.get(f"{path}{cursor}", headers=api.headers)
        assert (page.status_code, page.json()["code"], page.json()["param"]) == (
            400, "invalid_request", "ending_before"
        ), cursor  # fmt: skip


# ---- NUL characters ------------------------------------------------------------------------------


async def test_a_nul_character_anywhere_is_a_400_not_a_500(api: Api, books: dict[str, str]) -> None:
    nul = "before\x00after"
    table = [
        Bad("in a description", "POST", "/v1/transfers", 400, "invalid_request", "description",
            json=_pay(description=nul)),
        Bad("in a metadata value", "POST", "/v1/transfers", 400, "invalid_request",
            "metadata.order", json=_pay(metadata={"order": nul})),
        Bad("in a metadata key", "POST", "/v1/transfers", 400, "invalid_request",
            f"metadata.{nul}.[key]", json=_pay(metadata={nul: "x"})),
        Bad("in a batch", "POST", "/v1/transfers/batch", 400, "invalid_request",
            "transfers[0].description", json={"transfers": [_pay(description=nul)]}),
        Bad("in an account code", "POST", "/v1/accounts", 400, "invalid_request", "code",
            json=_account(code=nul)),
        Bad("in an account name", "POST", "/v1/accounts", 400, "invalid_request", "name",
            json=_account(name=nul)),
        Bad("in account metadata", "POST", "/v1/accounts", 400, "invalid_request",
            "metadata.desk", json=_account(metadata={"desk": nul})),
        Bad("in a new name", "PATCH", "/v1/accounts/{wallet}", 400, "invalid_request", "name",
            json={"name": nul}),
        Bad("in a reversal", "POST", "/v1/transfers/{nowhere}/reverse", 400, "invalid_request",
            "description", json={"description": nul}),
        Bad("in a void", "POST", "/v1/transfers/{nowhere}/void", 400, "invalid_request",
            "metadata.why", json={"metadata": {"why": nul}}),
        Bad("in a metadata filter", "GET", "/v1/accounts?metadata[desk]=a%00b", 400,
            "invalid_request"),
        Bad("in a metadata filter's key", "GET", "/v1/accounts?metadata[de%00sk]=a", 400,
            "invalid_request"),
        Bad("in a currency filter", "GET", "/v1/accounts?currency=US%00", 400,
            "invalid_request"),
        Bad("in an events cursor", "GET", "/v1/events?after=evt_1%00", 400, "invalid_request"),
        Bad("in a statement cursor", "GET", "/v1/accounts/{wallet}/statement?starting_after=1."
            "%000", 400, "invalid_request"),
    ]  # fmt: skip
    await check_all(api, books, table)
    # An escaped "%00" in a value is just text.
    literal = await api.client.get("/v1/accounts?metadata[desk]=100%2500", headers=api.headers)
    assert literal.status_code == 200, literal.text
    await assert_books_untouched(api, books)
    wallet = await api.client.get(f"/v1/accounts/{books['wallet']}", headers=api.headers)
    assert wallet.json()["name"] == "Wallet"
    assert_no_server_errors(api.app)


# ---- the last resort -----------------------------------------------------------------------------


async def test_a_failure_of_the_database_is_a_500_problem_without_its_details(
    tmp_path: Path,
) -> None:
    # A database that was never migrated: every query fails.
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}",
                              maintenance_seconds=0))  # fmt: skip
    async with serve(app) as client:
        failed = await client.get(
            "/v1/accounts", headers={"Authorization": "Bearer sk_test_" + "a" * 32}
        )
        body = assert_problem(failed, 500, "internal_error")
        assert "api_keys" not in failed.text
        assert "SELECT" not in failed.text
        assert "Idempotency-Key is safe" in body["detail"]
        not_ready = await client.get("/readyz")
        assert_problem(not_ready, 503, "service_unavailable")
        assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_a_misspelt_filter_is_refused_rather_than_ignored(api: Api) -> None:
    await api.account("usd-wallet")
    await api.account("eur-wallet", currency="EUR")
    for path, name in (("/v1/accounts?curency=EUR", "curency"),
                       ("/v1/transfers?acount_id=x", "acount_id"),
                       ("/v1/events?afterr=evt_1", "afterr")):  # fmt: skip
        refused = await api.client.get(path, headers=api.headers)
        assert refused.status_code == 400, refused.text
        assert (refused.json()["code"], refused.json()["param"]) == ("invalid_request", name)
    # The metadata filter is a family of parameters, and the spelt-right filter still works.
    tagged = await api.client.get("/v1/accounts?metadata[team]=ops", headers=api.headers)
    assert tagged.json() == {"data": [], "has_more": False}
    euros = await api.client.get("/v1/accounts?currency=EUR", headers=api.headers)
    assert [a["code"] for a in euros.json()["data"]] == ["eur-wallet"]
