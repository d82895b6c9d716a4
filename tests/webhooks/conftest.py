"""Webhook tests: a database of each kind, an app on a clock the tests move, a runner on the
same clock, tenants with keys, and a real loopback receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from settle.api import Settings, create_app
from settle.clock import system_clock
from settle.store.db import create_db_engine
from settle.worker.webhooks import WebhookRunner

from .receiver import Receiver
from .support import Hooks, Tenant, make_tenant

if TYPE_CHECKING:
    import sqlalchemy as sa


class SteppingClock:
    """The system clock, plus however far a test has moved it forward."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return system_clock() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += int(seconds * 1_000_000)


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    db = create_db_engine(db_url)
    yield db
    db.dispose()


@pytest.fixture
def runner(engine: sa.Engine, clock: SteppingClock) -> Iterator[WebhookRunner]:
    """Loopback allowed; jitter pinned to none (rng 0.5), so retries are due exactly."""
    worker = WebhookRunner(engine, clock, allow_private=True, timeout=2.0, rng=lambda: 0.5)
    yield worker
    worker.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def app(db_url: str, clock: SteppingClock) -> Iterator[Any]:
    settings = Settings(
        database_url=db_url,
        maintenance_seconds=0,
        webhook_delivery=False,  # the tests drive their own runner
        webhook_allow_private=True,
    )
    application = create_app(settings, clock=clock)
    yield application
    application.state.settle.close()


@pytest.fixture
def acme(db_url: str) -> Tenant:
    return make_tenant(db_url, "acme", ["webhooks:manage", "ledger:read", "ledger:write"])


@pytest.fixture
async def hooks(
    app: Any, db_url: str, engine: sa.Engine, clock: SteppingClock, acme: Tenant
) -> AsyncIterator[Hooks]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://settle.test") as client:
        yield Hooks(client, db_url, engine, clock, acme)
