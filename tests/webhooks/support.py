"""What the webhook tests share: a client on the app with one tenant's key, and story helpers
that produce events through the ledger and read deliveries through the API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from settle.ledger.model import AccountType, NewAccount
from settle.ledger.service import open_account
from settle.security import create_tenant, issue_api_key
from settle.store.db import create_db_engine
from settle.store.uow import SqlUnitOfWork

if TYPE_CHECKING:
    import httpx
    import sqlalchemy as sa

    from settle.ledger.model import Account

    from .conftest import SteppingClock


@dataclass
class Tenant:
    id: uuid.UUID
    key: str
    headers: dict[str, str] = field(default_factory=dict)


def make_tenant(url: str, name: str, scopes: list[str]) -> Tenant:
    """A tenant and a key with ``scopes``."""
    engine = create_db_engine(url)
    try:
        tenant = create_tenant(SqlUnitOfWork(engine), name)
        _key, secret = issue_api_key(SqlUnitOfWork(engine), tenant.id, scopes)
    finally:
        engine.dispose()
    key = secret.reveal()
    return Tenant(tenant.id, key, {"Authorization": f"Bearer {key}"})


@dataclass
class Hooks:
    client: httpx.AsyncClient
    url: str
    engine: sa.Engine
    clock: SteppingClock
    tenant: Tenant

    def other_tenant(self, scopes: list[str] | None = None) -> Tenant:
        name = f"other-{uuid.uuid4().hex[:6]}"
        return make_tenant(self.url, name, scopes or ["webhooks:manage"])

    def _headers(self, tenant: Tenant | None) -> dict[str, str]:
        return (tenant or self.tenant).headers

    async def request(
        self, method: str, path: str, body: Any = None, tenant: Tenant | None = None,
        headers: dict[str, str] | None = None, **kwargs: Any,
    ) -> httpx.Response:  # fmt: skip
        return await self.client.request(
            method, path, json=body, headers={**self._headers(tenant), **(headers or {})},
            **kwargs,
        )  # fmt: skip

    async def create(
        self, url: str, events: list[str] | None = None, tenant: Tenant | None = None,
        **fields: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """A new endpoint (with its secret)."""
        body = {"url": url, "enabled_events": events or ["*"], **fields}
        response = await self.request("POST", "/v1/webhook_endpoints", body, tenant)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def endpoint(self, endpoint_id: str, tenant: Tenant | None = None) -> dict[str, Any]:
        response = await self.request("GET", f"/v1/webhook_endpoints/{endpoint_id}", None, tenant)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def deliveries(
        self, endpoint_id: str, tenant: Tenant | None = None
    ) -> list[dict[str, Any]]:
        response = await self.request(
            "GET", f"/v1/webhook_endpoints/{endpoint_id}/deliveries", None, tenant,
            params={"limit": 100},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def open_account(self, code: str, tenant: Tenant | None = None) -> Account:
        """An account opened through the ledger: one ``account.created`` event."""
        cmd = NewAccount(
            tenant_id=(tenant or self.tenant).id,
            code=code,
            name=code.title(),
            type=AccountType.LIABILITY,
            currency="USD",
        )
        return open_account(SqlUnitOfWork(self.engine, self.clock), cmd)
