"""Who may call: API keys (missing, malformed, unknown, revoked), scopes, the key cache and its
revocation window, recording key use; and the key material itself (masked, never printed)."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from settle.api import Settings, create_app
from settle.clock import from_micros
from settle.security import (
    ApiKey,
    ApiKeyAuthenticator,
    ApiKeyNotFoundError,
    InsufficientScopeError,
    InvalidApiKeyError,
    InvalidScopeError,
    KeyMode,
    Principal,
    Scope,
    SecretKey,
    generate_secret_key,
    hash_secret_key,
    issue_api_key,
    parse_scopes,
    revoke_api_key,
)
from settle.security.keys import KEY_PATTERN, PREFIX_LENGTH
from settle.store.db import create_db_engine
from settle.store.security_repo import SqlSecurityRepository, find_api_key
from settle.store.uow import SqlUnitOfWork

from .support import make_tenant

ALL_SCOPES = (
    "scopes are: ledger:read, ledger:write, payments:read, payments:write, webhooks:manage, admin"
)

if TYPE_CHECKING:
    import sqlalchemy as sa
    from fastapi import FastAPI

    from .support import Api

# 2030-03-17T17:46:40Z: a realistic "now" for the injected clocks.
T0 = 1_900_000_000_000_000
SECOND = 1_000_000


class ManualClock:
    """The app's clock, moved by the test (integer microseconds)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * SECOND)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    db = create_db_engine(db_url)
    yield db
    db.dispose()


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://settle.test") as client:
            yield client
    finally:
        app.state.settle.close()


def clocked_app(db_url: str, clock: ManualClock, **settings: Any) -> FastAPI:
    return create_app(Settings(database_url=db_url, maintenance_seconds=0, **settings), clock=clock)


def issue(
    engine: sa.Engine, tenant_id: uuid.UUID, scopes: list[str]
) -> tuple[ApiKey, dict[str, str]]:
    key, secret = issue_api_key(SqlUnitOfWork(engine), tenant_id, scopes)
    return key, {"Authorization": f"Bearer {secret.reveal()}"}


def keys_of(engine: sa.Engine, tenant_id: uuid.UUID) -> dict[uuid.UUID, ApiKey]:
    with engine.connect() as conn:
        return {k.id: k for k in SqlSecurityRepository(conn).list_api_keys(tenant_id)}


def assert_invalid_api_key(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    body: dict[str, Any] = response.json()
    assert body["code"] == "invalid_api_key"
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def assert_insufficient_scope(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "insufficient_scope"
    assert body["status"] == 403
    assert body["detail"] == f"this operation needs the {scope} scope"
    assert "www-authenticate" not in response.headers


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


# ---- who is calling ------------------------------------------------------------------------------

_A_WELL_FORMED_STRANGER = "sk_test_" + "Q7" * 16
# (what the client sends as Authorization, or None for no header; why it is refused)
_BAD_AUTHORIZATIONS: list[tuple[str | None, str]] = [
    (None, "no header"),
    ("", "empty"),
    ("Bearer", "scheme only"),
    ("Bearer ", "scheme and a space"),
    ("Basic dXNlcjpwYXNzd29yZA==", "basic auth"),
    ("{key}", "the key without a scheme"),
    ("Token {key}", "another scheme"),
    ("Bearer {key}x", "the key with a character more"),
    ("Bearer {short}", "the key with a character less"),
    ("Bearer {key}\tx", "the key and a tab"),
    ("Bearer sk_prod_" + "a" * 32, "an unknown mode"),
    ("Bearer pk_test_" + "a" * 32, "not a secret key"),
    ("Bearer sk_test_" + "a" * 31 + "-", "a bad character"),
    (f"Bearer {_A_WELL_FORMED_STRANGER}", "well-formed but unknown"),
    ("Bearer sk_live_" + "Z9" * 16, "a well-formed live key, unknown"),
]


async def test_a_request_without_a_live_bearer_key_is_refused_with_a_challenge(
    api: Api,
) -> None:
    baseline = assert_invalid_api_key(await api.client.get("/v1/accounts"))
    for authorization, why in _BAD_AUTHORIZATIONS:
        headers = {}
        if authorization is not None:
            headers["Authorization"] = authorization.format(
                key=api.tenant.key, short=api.tenant.key[:-1]
            )
        for method, path in (("GET", "/v1/accounts"), ("POST", "/v1/transfers")):
            refused = await api.client.request(method, path, headers=headers)
            body = assert_invalid_api_key(refused)
            # Every refusal reads the same: a caller learns nothing about which keys exist.
            assert _without_request_id(body) == _without_request_id(baseline), why
            assert api.tenant.key not in refused.text, why
    # The scheme is case-insensitive and spaces around the key are tolerated.
    for authorization in ("Bearer {key}", "bearer {key}", "BEARER {key}", "Bearer   {key}  "):
        listed = await api.client.get(
            "/v1/accounts", headers={"Authorization": authorization.format(key=api.tenant.key)}
        )
        assert listed.status_code == 200, (authorization, listed.text)
        assert listed.json() == {"data": [], "has_more": False}


async def test_an_unauthenticated_write_is_refused_and_opens_nothing(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    opened = await api.client.post(
        "/v1/accounts",
        json={"code": "sneaky", "name": "Sneaky", "type": "asset", "currency": "USD"},
        headers={"Authorization": f"Bearer {_A_WELL_FORMED_STRANGER}"},
    )
    assert_invalid_api_key(opened)
    paid = await api.client.post(
        "/v1/transfers",
        json={"debit_account_id": bank["id"], "credit_account_id": wallet["id"],
              "amount": 10_000, "currency": "USD"},
        headers={"Idempotency-Key": "no-key-no-money"},
    )  # fmt: skip
    assert_invalid_api_key(paid)
    listed = (await api.client.get("/v1/accounts", headers=api.headers)).json()
    assert sorted(a["code"] for a in listed["data"]) == ["bank", "wallet"]
    assert all(a["balances"]["posted"] == 0 for a in listed["data"])
    assert (await api.client.get("/v1/transfers", headers=api.headers)).json()["data"] == []


async def test_a_revoked_key_is_refused_at_once_by_a_process_that_never_cached_it(
    api: Api, engine: sa.Engine
) -> None:
    key, headers = issue(engine, api.tenant.id, ["ledger:read"])
    revoked = revoke_api_key(SqlUnitOfWork(engine), key.id)
    assert revoked.revoked_at is not None
    # This app never saw the key before: nothing cached, the revocation holds at once.
    assert_invalid_api_key(await api.client.get("/v1/accounts", headers=headers))
    # The tenant's other keys are untouched.
    assert (await api.client.get("/v1/accounts", headers=api.headers)).status_code == 200


# ---- what the key may do -------------------------------------------------------------------------


async def _books(api: Api) -> dict[str, str]:
    """Ids for the write routes: an account, a pending hold and a posted transfer."""
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    hold = await api.transfer(bank["id"], wallet["id"], 300, pending=True)
    assert hold.status_code == 201, hold.text
    paid = await api.transfer(bank["id"], wallet["id"], 700)
    assert paid.status_code == 201, paid.text
    return {"bank": bank["id"], "wallet": wallet["id"], "hold": hold.json()["id"],
            "paid": paid.json()["id"]}  # fmt: skip


def _write_requests(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any] | None]]:
    shorthand = {"debit_account_id": ids["bank"], "credit_account_id": ids["wallet"],
                 "amount": 50, "currency": "USD"}  # fmt: skip
    return [
        ("POST", "/v1/accounts",
         {"code": "new", "name": "New", "type": "asset", "currency": "USD"}),
        ("PATCH", f"/v1/accounts/{ids['wallet']}", {"status": "frozen"}),
        ("POST", "/v1/transfers", shorthand),
        ("POST", "/v1/transfers/batch", {"transfers": [shorthand]}),
        ("POST", f"/v1/transfers/{ids['hold']}/post", None),
        ("POST", f"/v1/transfers/{ids['hold']}/void", None),
        ("POST", f"/v1/transfers/{ids['paid']}/reverse", None),
    ]  # fmt: skip


_READ_PATHS = [
    "/v1/accounts",
    "/v1/accounts/{wallet}",
    "/v1/accounts/{wallet}/balance",
    "/v1/accounts/{wallet}/statement",
    "/v1/transfers",
    "/v1/transfers/{paid}",
    "/v1/events",
]


async def _snapshot(api: Api) -> tuple[bytes, bytes, bytes]:
    got = [
        await api.client.get(f"{path}?limit=100", headers=api.headers)
        for path in ("/v1/accounts", "/v1/transfers", "/v1/events")
    ]
    assert all(r.status_code == 200 for r in got)
    return got[0].content, got[1].content, got[2].content


async def test_a_read_only_key_can_look_at_the_books_but_not_change_them(
    api: Api, engine: sa.Engine
) -> None:
    ids = await _books(api)
    _key, reader = issue(engine, api.tenant.id, ["ledger:read"])
    for path in _READ_PATHS:
        seen = await api.client.get(path.format(**ids), headers=reader)
        assert seen.status_code == 200, (path, seen.text)
    before = await _snapshot(api)
    for method, path, body in _write_requests(ids):
        refused = await api.client.request(
            method, path, json=body, headers={**reader, "Idempotency-Key": f"k-{path}"}
        )
        assert_insufficient_scope(refused, "ledger:write")
    assert await _snapshot(api) == before
    wallet = (await api.client.get(f"/v1/accounts/{ids['wallet']}", headers=reader)).json()
    assert wallet["status"] == "active"
    assert wallet["balances"]["posted"] == 700
    assert wallet["balances"]["pending"] == 300


async def test_a_write_key_can_open_accounts_move_money_and_resolve_holds_but_not_read(
    api: Api, engine: sa.Engine
) -> None:
    ids = await _books(api)
    _key, writer = issue(engine, api.tenant.id, ["ledger:write"])
    # Every write route in turn; the void comes after the hold was posted, so it is a conflict
    # (the key was let through: the ledger answered), and the frozen wallet is patched last.
    requests = {(m, p.rsplit("/", 1)[-1]): (m, p, b) for m, p, b in _write_requests(ids)}
    expected = [
        (("POST", "accounts"), 201, "account"),
        (("POST", "transfers"), 201, "transfer"),
        (("POST", "batch"), 200, "transfer_batch"),
        (("POST", "post"), 201, "transfer"),
        (("POST", "void"), 409, None),
        (("POST", "reverse"), 201, "transfer"),
        (("PATCH", ids["wallet"]), 200, "account"),
    ]
    for name, status, kind in expected:
        method, path, body = requests[name]
        done = await api.client.request(method, path, json=body, headers=writer)
        assert done.status_code == status, (path, done.text)
        if kind is None:
            assert done.json()["code"] == "pending_already_posted"
        else:
            assert done.json()["object"] == kind
    # Scopes do not imply each other (only admin implies them all): it cannot read.
    for path in _READ_PATHS:
        refused = await api.client.get(path.format(**ids), headers=writer)
        assert_insufficient_scope(refused, "ledger:read")
    wallet = (await api.client.get(f"/v1/accounts/{ids['wallet']}", headers=api.headers)).json()
    assert wallet["status"] == "frozen"
    # 700 paid + 50 + 50 (batch) + the 300 hold posted - the 700 reversed.
    assert wallet["balances"]["posted"] == 400
    assert wallet["balances"]["pending"] == 0


# ---- revocation and the key cache ----------------------------------------------------------------


async def test_a_revoked_key_keeps_working_until_the_cache_ttl_passes_then_is_refused(
    db_url: str, engine: sa.Engine
) -> None:
    clock = ManualClock()
    tenant = make_tenant(db_url, "acme", ["admin"])
    key, headers = issue(engine, tenant.id, ["ledger:read", "ledger:write"])
    async with serve(clocked_app(db_url, clock, key_cache_seconds=5.0)) as client:
        assert (await client.get("/v1/accounts", headers=headers)).status_code == 200  # cached
        revoke_api_key(SqlUnitOfWork(engine), key.id, tenant_id=tenant.id)
        clock.advance(4.999_999)
        still = await client.get("/v1/accounts", headers=headers)
        assert still.status_code == 200, "within the TTL the cached key still answers"
        clock.advance(0.000_001)  # exactly the TTL after the lookup
        assert_invalid_api_key(await client.get("/v1/accounts", headers=headers))
        opened = await client.post(
            "/v1/accounts",
            json={"code": "late", "name": "Late", "type": "asset", "currency": "USD"},
            headers=headers,
        )
        assert_invalid_api_key(opened)
        # The tenant's admin key was never revoked.
        listed = await client.get("/v1/accounts", headers=tenant.headers)
        assert listed.status_code == 200
        assert listed.json()["data"] == []


async def test_the_ttl_is_a_setting_a_revocation_with_a_one_second_cache_lands_in_one_second(
    db_url: str, engine: sa.Engine
) -> None:
    clock = ManualClock()
    tenant = make_tenant(db_url, "acme", ["admin"])
    key, headers = issue(engine, tenant.id, ["ledger:read"])
    async with serve(clocked_app(db_url, clock, key_cache_seconds=1.0)) as client:
        assert (await client.get("/v1/events", headers=headers)).status_code == 200
        revoke_api_key(SqlUnitOfWork(engine), key.id)
        clock.advance(0.5)
        assert (await client.get("/v1/events", headers=headers)).status_code == 200
        clock.advance(0.5)
        assert_invalid_api_key(await client.get("/v1/events", headers=headers))
        clock.advance(3600)  # and it stays refused
        assert_invalid_api_key(await client.get("/v1/events", headers=headers))


def test_revoking_through_another_tenant_finds_no_key_and_changes_nothing(
    db_url: str, engine: sa.Engine
) -> None:
    owner = make_tenant(db_url, "owner", ["admin"])
    stranger = make_tenant(db_url, "stranger", ["admin"])
    key, _headers = issue(engine, owner.id, ["ledger:read"])
    with pytest.raises(ApiKeyNotFoundError) as refused:
        revoke_api_key(SqlUnitOfWork(engine), key.id, tenant_id=stranger.id)
    assert refused.value.code == "api_key_not_found"
    with pytest.raises(ApiKeyNotFoundError):
        revoke_api_key(SqlUnitOfWork(engine), uuid.uuid4())
    assert keys_of(engine, owner.id)[key.id].revoked_at is None
    first = revoke_api_key(SqlUnitOfWork(engine), key.id, tenant_id=owner.id)
    again = revoke_api_key(SqlUnitOfWork(engine), key.id)
    assert first.revoked_at is not None
    assert again.revoked_at == first.revoked_at  # revoking twice changes nothing


# ---- recording key use ---------------------------------------------------------------------------


async def test_maintenance_records_when_each_key_was_last_used_at_most_once_a_minute(
    db_url: str, engine: sa.Engine
) -> None:
    clock = ManualClock()
    tenant = make_tenant(db_url, "acme", ["admin"])
    used, used_headers = issue(engine, tenant.id, ["ledger:read"])
    idle, _idle_headers = issue(engine, tenant.id, ["ledger:read"])
    revoked, revoked_headers = issue(engine, tenant.id, ["ledger:read"])
    revoke_api_key(SqlUnitOfWork(engine), revoked.id)
    app = clocked_app(db_url, clock)
    async with serve(app) as client:
        assert (await client.get("/v1/accounts", headers=used_headers)).status_code == 200
        assert_invalid_api_key(await client.get("/v1/accounts", headers=revoked_headers))
        assert keys_of(engine, tenant.id)[used.id].last_used_at is None  # not written yet
        assert app.state.maintenance.run_once()["keys_touched"] == 1
        keys = keys_of(engine, tenant.id)
        assert keys[used.id].last_used_at == from_micros(T0)
        assert keys[idle.id].last_used_at is None
        assert keys[revoked.id].last_used_at is None  # a refused key was not "used"

        clock.advance(30)
        assert (await client.get("/v1/accounts", headers=used_headers)).status_code == 200
        assert app.state.maintenance.run_once()["keys_touched"] == 0
        assert keys_of(engine, tenant.id)[used.id].last_used_at == from_micros(T0)

        clock.advance(31)
        assert (await client.get("/v1/accounts", headers=used_headers)).status_code == 200
        assert app.state.maintenance.run_once()["keys_touched"] == 1
        assert keys_of(engine, tenant.id)[used.id].last_used_at == from_micros(T0 + 61 * SECOND)


async def test_stopping_maintenance_writes_the_last_key_uses(
    db_url: str, engine: sa.Engine
) -> None:
    clock = ManualClock()
    tenant = make_tenant(db_url, "acme", ["admin"])
    used, headers = issue(engine, tenant.id, ["ledger:read"])
    app = clocked_app(db_url, clock)
    async with serve(app) as client:
        assert (await client.get("/v1/events", headers=headers)).status_code == 200
        app.state.maintenance.stop()
    assert keys_of(engine, tenant.id)[used.id].last_used_at == from_micros(T0)


# ---- the authenticator's cache, on the real key table --------------------------------------------


def test_a_flood_of_one_unknown_key_costs_one_lookup_per_ttl(engine: sa.Engine) -> None:
    clock = ManualClock()
    lookups: list[bytes] = []

    def lookup(digest: bytes) -> ApiKey | None:
        lookups.append(digest)
        return find_api_key(engine, digest)

    authenticator = ApiKeyAuthenticator(lookup, clock, ttl=5 * SECOND)
    for _ in range(100):
        with pytest.raises(InvalidApiKeyError):
            authenticator.authenticate(_A_WELL_FORMED_STRANGER)
    assert lookups == [hash_secret_key(_A_WELL_FORMED_STRANGER)]
    assert authenticator.is_cached(_A_WELL_FORMED_STRANGER)
    clock.advance(5)
    assert not authenticator.is_cached(_A_WELL_FORMED_STRANGER)
    with pytest.raises(InvalidApiKeyError):
        authenticator.authenticate(_A_WELL_FORMED_STRANGER)
    assert len(lookups) == 2
    # Malformed keys never reach the database at all.
    for bad in ("", None, "sk_test_short", "Bearer " + _A_WELL_FORMED_STRANGER,
                _A_WELL_FORMED_STRANGER + "\n"):  # fmt: skip
        assert authenticator.is_cached(bad)
        with pytest.raises(InvalidApiKeyError):
            authenticator.authenticate(bad)
    assert len(lookups) == 2


def test_forgetting_the_cache_makes_a_revocation_immediate_in_this_process(
    db_url: str, engine: sa.Engine
) -> None:
    clock = ManualClock()
    tenant = make_tenant(db_url, "acme", ["admin"])
    key, secret = issue_api_key(SqlUnitOfWork(engine), tenant.id, ["ledger:read"])
    authenticator = ApiKeyAuthenticator(lambda d: find_api_key(engine, d), clock)
    principal = authenticator.authenticate(secret.reveal())
    assert principal == Principal(tenant.id, key.id, frozenset({Scope.LEDGER_READ}), KeyMode.TEST)
    revoke_api_key(SqlUnitOfWork(engine), key.id)
    assert authenticator.authenticate(secret.reveal()) == principal  # cached
    authenticator.forget()
    with pytest.raises(InvalidApiKeyError):
        authenticator.authenticate(secret.reveal())


# ---- key material --------------------------------------------------------------------------------


def test_a_secret_key_never_prints_its_secret_part() -> None:
    secret = generate_secret_key()
    value = secret.reveal()
    hidden = value[PREFIX_LENGTH:]
    assert len(hidden) == 24
    renderings = [repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret]),
                  format(secret), repr({"key": secret})]  # fmt: skip
    for text in renderings:
        assert hidden not in text
        assert value not in text
    assert repr(secret) == f"SecretKey('{value[:PREFIX_LENGTH]}…')"
    assert str(secret) == repr(secret)


def test_reveal_gives_the_key_in_the_documented_shape() -> None:
    test_key = generate_secret_key().reveal()
    live_key = generate_secret_key(KeyMode.LIVE).reveal()
    assert KEY_PATTERN.match(test_key)
    assert KEY_PATTERN.match(live_key)
    assert test_key.startswith("sk_test_")
    assert live_key.startswith("sk_live_")
    assert len(test_key) == len("sk_test_") + 32
    assert len(live_key) == len("sk_live_") + 32
    # The mode may also be given by its name (it is read through KeyMode).
    assert generate_secret_key("live").reveal().startswith("sk_live_")  # type: ignore[arg-type]


def test_generated_keys_are_all_different() -> None:
    values = {generate_secret_key().reveal() for _ in range(200)}
    assert len(values) == 200
    assert len({v[len("sk_test_") :] for v in values}) == 200


def test_an_unknown_key_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="prod"):
        generate_secret_key("prod")  # type: ignore[arg-type]


def test_only_the_hash_and_prefix_of_a_key_are_derived_for_storage() -> None:
    secret = generate_secret_key()
    value = secret.reveal()
    assert secret.prefix == value[:PREFIX_LENGTH] == value[:16]
    assert secret.digest() == hash_secret_key(value) == hashlib.sha256(value.encode()).digest()
    assert len(secret.digest()) == 32


def test_secret_keys_compare_by_value_and_hash_alike() -> None:
    secret = generate_secret_key()
    same = SecretKey(secret.reveal())
    other = generate_secret_key()
    assert secret == same
    assert hash(secret) == hash(same)
    assert secret != other
    assert secret != secret.reveal()  # a key is not equal to its text
    assert len({secret, same, other}) == 2


@pytest.mark.parametrize(
    "text",
    [
        "sk_test_" + "a" * 32,
        "sk_live_" + "A" * 32,
        "sk_test_" + "0123456789" * 3 + "Zz",
    ],
)
def test_the_key_pattern_accepts_well_formed_keys(text: str) -> None:
    assert KEY_PATTERN.match(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("sk_test_" + "a" * 31, id="31-characters"),
        pytest.param("sk_test_" + "a" * 33, id="33-characters"),
        pytest.param("sk_prod_" + "a" * 32, id="unknown-mode"),
        pytest.param("SK_TEST_" + "a" * 32, id="upper-case-prefix"),
        pytest.param("sk_test_" + "a" * 31 + "_", id="underscore"),
        pytest.param("sk_test_" + "a" * 31 + "é", id="non-ascii"),
        pytest.param(" sk_test_" + "a" * 32, id="leading-space"),
        pytest.param("sk_test_" + "a" * 32 + " ", id="trailing-space"),
        pytest.param("sk_test_" + "a" * 32 + "\n", id="trailing-newline"),
        pytest.param("Bearer sk_test_" + "a" * 32, id="with-scheme"),
    ],
)
def test_the_key_pattern_refuses_anything_else(text: str) -> None:
    assert KEY_PATTERN.match(text) is None


def test_parse_scopes_reads_the_closed_list() -> None:
    assert parse_scopes(["ledger:read"]) == frozenset({Scope.LEDGER_READ})
    assert parse_scopes([" admin ", "ledger:write", "ledger:write", ""]) == frozenset(
        {Scope.ADMIN, Scope.LEDGER_WRITE}
    )
    assert parse_scopes(iter(["ledger:read", "ledger:write"])) == frozenset(
        {Scope.LEDGER_READ, Scope.LEDGER_WRITE}
    )


@pytest.mark.parametrize(
    ("scopes", "detail"),
    [
        pytest.param([], "a key needs at least one scope", id="none"),
        pytest.param(["", "  "], "a key needs at least one scope", id="blank"),
        pytest.param(["ledger:reed"], ALL_SCOPES, id="typo"),
        pytest.param(["LEDGER:READ"], ALL_SCOPES, id="case"),
        pytest.param(["ledger:read", "root"], ALL_SCOPES,
                     id="one-bad-among-good"),
        pytest.param(["ledger:read ledger:write"], ALL_SCOPES,
                     id="space-separated-in-one"),
    ],
)  # fmt: skip
def test_parse_scopes_refuses_an_empty_or_unknown_scope(scopes: list[str], detail: str) -> None:
    with pytest.raises(InvalidScopeError) as refused:
        parse_scopes(scopes)
    assert refused.value.code == "invalid_scope"
    assert refused.value.param == "scopes"
    assert refused.value.detail == detail


def test_issuing_a_key_with_a_bad_scope_stores_nothing(db_url: str, engine: sa.Engine) -> None:
    tenant = make_tenant(db_url, "acme", ["admin"])
    before = keys_of(engine, tenant.id)
    with pytest.raises(InvalidScopeError):
        issue_api_key(SqlUnitOfWork(engine), tenant.id, ["ledger:read", "superuser"])
    assert keys_of(engine, tenant.id) == before


def test_admin_implies_every_scope_and_the_others_imply_nothing() -> None:
    def principal(*scopes: Scope) -> Principal:
        return Principal(uuid.uuid4(), uuid.uuid4(), frozenset(scopes), KeyMode.TEST)

    admin = principal(Scope.ADMIN)
    assert all(admin.allows(s) for s in Scope)
    reader = principal(Scope.LEDGER_READ)
    assert reader.allows(Scope.LEDGER_READ)
    assert not reader.allows(Scope.LEDGER_WRITE)
    assert not reader.allows(Scope.ADMIN)
    writer = principal(Scope.LEDGER_WRITE)
    assert not writer.allows(Scope.LEDGER_READ)
    assert not writer.allows(Scope.ADMIN)
    writer.require(Scope.LEDGER_WRITE)
    with pytest.raises(InsufficientScopeError, match="needs the ledger:read scope") as refused:
        writer.require(Scope.LEDGER_READ)
    assert refused.value.code == "insufficient_scope"
