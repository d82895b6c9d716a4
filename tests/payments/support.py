"""A merchant's view of Settle in the payments tests: story helpers over the HTTP API."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from settle.security import create_tenant, issue_api_key
from settle.store.db import create_db_engine
from settle.store.uow import SqlUnitOfWork

if TYPE_CHECKING:
    import httpx

HOLD_SECONDS = 0.8  # the simulators' --hang-seconds and --late-seconds here
PROCESSOR_TIMEOUT = 0.3  # Settle's read timeout towards them: well under the hold
FEE_BPS, FEE_FIXED = 290, 30
NOTIFY_SECRET = "whsec_" + base64.b64encode(b"sim-a-notifies-settle-with-this").decode()


@dataclass
class Tenant:
    id: uuid.UUID
    headers: dict[str, str]


def make_tenant(url: str, name: str, scopes: list[str]) -> Tenant:
    engine = create_db_engine(url)
    try:
        tenant = create_tenant(SqlUnitOfWork(engine), name)
        _key, secret = issue_api_key(SqlUnitOfWork(engine), tenant.id, scopes)
    finally:
        engine.dispose()
    return Tenant(tenant.id, {"Authorization": f"Bearer {secret.reveal()}"})


def fee(amount: int) -> int:
    return min(amount, FEE_FIXED + (amount * FEE_BPS + 5_000) // 10_000)


@dataclass
class Shop:
    client: httpx.AsyncClient
    app: Any
    tenant: Tenant

    @property
    def state(self) -> Any:
        return self.app.state.settle

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {**self.tenant.headers, "Idempotency-Key": key or uuid.uuid4().hex}

    async def post(self, path: str, body: Any = None, key: str | None = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.headers(key))

    async def pay(
        self,
        amount: int = 10_000,
        method: str = "pm_card_visa",
        *,
        capture_method: str = "automatic",
        confirm: bool = True,
        key: str | None = None,
    ) -> dict[str, Any]:
        body = {"amount": amount, "currency": "USD", "payment_method": method,
                "capture_method": capture_method, "confirm": confirm,
                "customer": "cus_1"}  # fmt: skip
        response = await self.post("/v1/payment_intents", body, key)
        assert response.status_code == 201, response.text
        intent: dict[str, Any] = response.json()
        return intent

    async def intent(self, intent_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/payment_intents/{intent_id}", headers=self.tenant.headers
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def refund(self, refund_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/refunds/{refund_id}", headers=self.tenant.headers)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def work(self) -> int:
        """One round of the job runner (in a thread: its processor calls block)."""
        ran: int = await asyncio.to_thread(self.state.jobs.run_once)
        return ran

    async def settle(
        self,
        read: Callable[[], Any],
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 8.0,
    ) -> dict[str, Any]:
        """Run the worker until ``done(await read())``."""
        deadline = time.monotonic() + timeout
        while True:
            found: dict[str, Any] = await read()
            if done(found):
                return found
            assert time.monotonic() < deadline, f"not settled: {found}"
            if not await self.work():
                await asyncio.sleep(0.02)

    async def until_status(self, intent_id: str, *statuses: str) -> dict[str, Any]:
        return await self.settle(lambda: self.intent(intent_id), lambda i: i["status"] in statuses)

    def balance(self, code: str) -> int:
        """The posted balance of a payments account (on its normal side); 0 if not opened."""
        with self.state.store.read() as repo:
            account = repo.get_account_by_code(self.tenant.id, code)
        if account is None:
            return 0
        b = account.balances
        if account.normal_side.value == "debit":
            return int(b.debits_posted - b.credits_posted)
        return int(b.credits_posted - b.debits_posted)

    def held(self, code: str) -> tuple[int, int]:
        """(debits_pending, credits_pending) of a payments account."""
        with self.state.store.read() as repo:
            account = repo.get_account_by_code(self.tenant.id, code)
        if account is None:
            return 0, 0
        return int(account.balances.debits_pending), int(account.balances.credits_pending)
