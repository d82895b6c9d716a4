"""What the API tests share: a tenant with a key, and a client with story helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from settle.security import create_tenant, issue_api_key
from settle.store.db import create_db_engine
from settle.store.uow import SqlUnitOfWork

if TYPE_CHECKING:
    import httpx


@dataclass
class Tenant:
    id: uuid.UUID
    key: str
    headers: dict[str, str] = field(default_factory=dict)


def make_tenant(url: str, name: str, scopes: list[str]) -> Tenant:
    engine = create_db_engine(url)
    try:
        tenant = create_tenant(SqlUnitOfWork(engine), name)
        _key, secret = issue_api_key(SqlUnitOfWork(engine), tenant.id, scopes)
    finally:
        engine.dispose()
    return Tenant(tenant.id, secret.reveal(), {"Authorization": f"Bearer {secret.reveal()}"})


@dataclass
class Api:
    """A client on the app, with one tenant's admin key in ``headers``."""

    client: httpx.AsyncClient
    app: Any
    url: str
    tenant: Tenant

    @property
    def headers(self) -> dict[str, str]:
        return self.tenant.headers

    def other_tenant(self, scopes: list[str] | None = None) -> Tenant:
        return make_tenant(self.url, f"other-{uuid.uuid4().hex[:6]}", scopes or ["admin"])

    async def account(self, code: str, type: str = "liability", currency: str = "USD",
                      **fields: Any) -> dict[str, Any]:  # fmt: skip
        response = await self.client.post(
            "/v1/accounts",
            json={"code": code, "name": code.title(), "type": type, "currency": currency,
                  **fields},
            headers=self.headers,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def transfer(self, debit: str, credit: str, amount: int, currency: str = "USD",
                       **fields: Any) -> httpx.Response:  # fmt: skip
        return await self.client.post(
            "/v1/transfers",
            json={"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
                  "currency": currency, **fields},
            headers=self.headers,
        )  # fmt: skip
