"""The operator's commands: tenants and API keys, on both databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from typer.testing import CliRunner

from settle.cli import app
from settle.clock import system_clock
from settle.security.errors import InvalidApiKeyError
from settle.security.model import Scope
from settle.security.service import ApiKeyAuthenticator
from settle.store.db import create_db_engine
from settle.store.security_repo import SqlSecurityRepository, find_api_key

runner = CliRunner()


@contextmanager
def _authenticator(db_url: str) -> Iterator[ApiKeyAuthenticator]:
    engine = create_db_engine(db_url)
    try:
        # ttl 0: every call looks the key up, so a revocation shows at once.
        yield ApiKeyAuthenticator(lambda d: find_api_key(engine, d), system_clock, ttl=0)
    finally:
        engine.dispose()


def test_a_new_tenant_gets_an_admin_key_that_authenticates(db_url: str) -> None:
    result = runner.invoke(
        app, ["tenants", "create", "Acme Pay", "--json", "--database-url", db_url]
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["api_key"].startswith("sk_test_")
    with _authenticator(db_url) as authenticator:
        principal = authenticator.authenticate(created["api_key"])
    assert principal.tenant_id == uuid.UUID(created["tenant_id"])
    assert principal.key_id == uuid.UUID(created["key_id"])
    assert principal.scopes == {Scope.LEDGER_READ, Scope.LEDGER_WRITE, Scope.ADMIN}


def test_keys_are_issued_with_scopes_listed_without_secrets_and_revoked(db_url: str) -> None:
    tenant = json.loads(
        runner.invoke(app, ["tenants", "create", "Acme", "--json", "--database-url", db_url]).output
    )["tenant_id"]
    issued = runner.invoke(
        app,
        ["keys", "create", "--tenant", tenant, "--scopes", "ledger:read", "--live", "--json",
         "--database-url", db_url],
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    key = json.loads(issued.output)
    assert key["api_key"].startswith("sk_live_")
    assert key["scopes"] == ["ledger:read"]
    assert key["prefix"] == key["api_key"][:16]

    listed = runner.invoke(
        app, ["keys", "list", "--tenant", tenant, "--json", "--database-url", db_url]
    )
    rows = json.loads(listed.output)
    assert [r["prefix"] for r in rows if r["key_id"] == key["key_id"]] == [key["prefix"]]
    assert key["api_key"] not in listed.output  # only prefixes, never a whole key

    with _authenticator(db_url) as authenticator:
        assert authenticator.authenticate(key["api_key"]).scopes == {Scope.LEDGER_READ}
        revoked = runner.invoke(app, ["keys", "revoke", key["key_id"], "--database-url", db_url])
        assert revoked.exit_code == 0, revoked.output
        with pytest.raises(InvalidApiKeyError):
            authenticator.authenticate(key["api_key"])
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        stored = SqlSecurityRepository(conn).get_api_key(uuid.UUID(key["key_id"]))
    engine.dispose()
    assert stored is not None
    assert stored.revoked_at is not None


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["keys", "create", "--tenant", str(uuid.uuid4())], "tenant_not_found"),
        (["keys", "revoke", str(uuid.uuid4())], "api_key_not_found"),
        (["tenants", "create", "   "], "invalid_tenant"),
        (["tenants", "create", "Acme", "--scopes", "ledger:delete"], "invalid_scope"),
    ],
)
def test_refused_commands_exit_2_with_the_error_code(
    db_url: str, args: list[str], code: str
) -> None:
    result = runner.invoke(app, [*args, "--database-url", db_url])
    assert result.exit_code == 2
    assert f"error: {code}:" in result.output
