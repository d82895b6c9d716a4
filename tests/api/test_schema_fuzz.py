"""Schemathesis against the app's own OpenAPI document, in process, on a migrated SQLite file.

Every operation of ``/openapi.json`` is called with generated requests (valid and invalid:
schemathesis' examples, coverage and fuzzing phases) under a real admin key, on a database
seeded with accounts, a posted transfer and open holds; generated ids are mostly pointed at
those rows so that both existing and missing ids are tried. Every response goes through
schemathesis' default checks: no 5xx, a status code the operation documents, the documented
content type, headers and body schema, invalid requests refused, valid ones accepted.

One adjustment, made on purpose: a schema-valid request refused with 422 counts as accepted by
``positive_data_acceptance``. In Settle, 422 is only ever a ledger rule refusing a well-formed
request (insufficient funds, a frozen account, a reversal of a hold), documented as such on the
operations; no schema can express those. Input the server rejects as malformed (400) still
fails the check.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from settle.api import Settings, create_app
from settle.ledger.model import AccountType, NewAccount
from settle.ledger.requests import TransferSpec
from settle.ledger.service import open_account
from settle.store.db import create_db_engine, upgrade_database
from settle.store.ledger_store import LedgerStore

from .support import Tenant, make_tenant

# Per operation and phase; small enough that the whole file runs in well under 90 s on a slow
# two-core machine (the coverage phase adds its own, bounded, set of cases).
MAX_EXAMPLES = 12
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429",
                                      "5xx"],
            },
        },
    }
)  # fmt: skip


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, rendered by an app that never touches a database (its
    store connects lazily). The fixture checks that the app under test serves this one."""
    app = create_app(Settings(database_url="sqlite:///:memory:", maintenance_seconds=0))
    try:
        document: dict[str, Any] = app.openapi()
    finally:
        app.state.settle.close()
    return document


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@dataclass
class FuzzDatabase:
    url: str
    tenant: Tenant
    accounts: list[uuid.UUID]
    transfers: list[uuid.UUID]


@dataclass
class FuzzTarget:
    app: Any
    db: FuzzDatabase

    @property
    def headers(self) -> dict[str, str]:
        return self.db.tenant.headers


def _seed(url: str, tenant_id: uuid.UUID) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    store = LedgerStore(url)
    try:

        def account(code: str, kind: AccountType, **flags: Any) -> uuid.UUID:
            cmd = NewAccount(tenant_id, code, code.title(), kind, "USD", **flags)
            return open_account(store.uow(), cmd).id

        bank = account("bank", AccountType.ASSET)
        wallet = account("wallet", AccountType.LIABILITY, debits_must_not_exceed_credits=True)
        shop = account("shop", AccountType.LIABILITY)
        posted, hold, hold2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        results = store.submit([
            TransferSpec.shorthand(tenant_id, posted, debit_account_id=bank,
                                   credit_account_id=wallet, amount=100_000, currency="USD"),
            TransferSpec.shorthand(tenant_id, hold, debit_account_id=wallet,
                                   credit_account_id=shop, amount=2_000, currency="USD",
                                   pending=True),
            TransferSpec.shorthand(tenant_id, hold2, debit_account_id=wallet,
                                   credit_account_id=shop, amount=3_000, currency="USD",
                                   pending=True),
        ])  # fmt: skip
    finally:
        store.close()
    assert [r.code.value for r in results] == ["ok", "ok", "ok"]
    return [bank, wallet, shop], [posted, hold, hold2]


@pytest.fixture(scope="module")
def fuzz_database(tmp_path_factory: pytest.TempPathFactory) -> FuzzDatabase:
    """One migrated SQLite file for the module, with a tenant, its admin key and seeded rows."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "settle.db"
    url = f"sqlite:///{path}"
    engine = create_db_engine(url)
    upgrade_database(engine)
    engine.dispose()
    tenant = make_tenant(url, "fuzz", ["ledger:read", "ledger:write", "admin"])
    accounts, transfers = _seed(url, tenant.id)
    return FuzzDatabase(url, tenant, accounts, transfers)


@pytest.fixture
def fuzz_target(fuzz_database: FuzzDatabase) -> Iterator[FuzzTarget]:
    """An app per test item (one item per operation): schemathesis ends the ASGI lifespan it
    started when the item ends, and the app's shutdown closes its store for good."""
    app = create_app(Settings(database_url=fuzz_database.url, maintenance_seconds=0))
    try:
        probe = asgi.get_client(app)  # not entered: no lifespan
        try:
            served = probe.get("/openapi.json")
        finally:
            probe.close()
        assert served.status_code == 200
        assert served.json() == DOCUMENT  # the document fuzzed is the one served
        yield FuzzTarget(app, fuzz_database)
    finally:
        asgi.shutdown_lifespans()
        app.state.settle.close()


def _seeded(value: object, ids: list[uuid.UUID]) -> object:
    """A generated UUID mapped onto the seeded ids, or kept (an id that does not exist).

    Only canonical UUID strings are mapped (a value generated to be invalid stays invalid),
    and the choice depends on the generated value alone, so examples replay and shrink.
    """
    if not isinstance(value, str):
        return value
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return value
    if str(parsed) != value:
        return value
    slot = parsed.int % (len(ids) + 1)
    return value if slot == len(ids) else str(ids[slot])


def _with_seeded_ids(value: object, db: FuzzDatabase) -> object:
    if isinstance(value, list):
        return [_with_seeded_ids(item, db) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for name, item in value.items():
        if name in ("parent_id", "account_id", "debit_account_id", "credit_account_id"):
            out[name] = _seeded(item, db.accounts)
        else:
            out[name] = _with_seeded_ids(item, db)
    return out


def _integral_floats_as_ints(value: object) -> object:
    """``797.0`` -> ``797``. JSON Schema counts 797.0 as an integer; Settle's contract refuses
    float literals for amounts (400 ``invalid_amount``, tested in test_problems.py), which no
    schema can express: the fuzzer sends the integer it meant."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    return value


def use_seeded_ids(case: Any, db: FuzzDatabase) -> None:
    """Point the ids a case names (path, query, body) at seeded rows most of the time."""
    pools = {"account_id": db.accounts, "parent_id": db.accounts, "transfer_id": db.transfers}
    for container in (case.path_parameters, case.query):
        if isinstance(container, dict):
            for name, pool in pools.items():
                if name in container:
                    container[name] = _seeded(container[name], pool)
    if isinstance(case.body, dict | list):
        case.body = _integral_floats_as_ints(_with_seeded_ids(case.body, db))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    # `fuzz_target` is per test item on purpose: one app serves every example of an operation.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_every_response_is_documented(case: Any, fuzz_target: FuzzTarget) -> None:
    use_seeded_ids(case, fuzz_target.db)
    # On the operation, not only on the call: the checks that send requests of their own
    # (e.g. the same request without its key) go to this app too.
    case.operation.app = case.operation.schema.app = fuzz_target.app
    case.call_and_validate(headers=fuzz_target.headers)
