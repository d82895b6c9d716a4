"""Payments end to end in process: the API on a fresh database of each kind, two real
processor simulators on loopback (uvicorn threads), and the job runner driven by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from settle.api import Settings, create_app
from settle.simulator import SimulatorConfig, SimulatorThread
from settle.worker.settings import PaymentSettings

from .support import HOLD_SECONDS, NOTIFY_SECRET, PROCESSOR_TIMEOUT, Shop, make_tenant


@pytest.fixture
def simulators() -> Iterator[Callable[..., SimulatorThread]]:
    started: list[SimulatorThread] = []

    def start(name: str, **config: Any) -> SimulatorThread:
        settings: dict[str, Any] = {"latency_ms": 0, "hang_seconds": HOLD_SECONDS,
                                    "late_seconds": HOLD_SECONDS, "seed": 7, **config}  # fmt: skip
        started.append(SimulatorThread(SimulatorConfig(name=name, **settings)).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sim_a(simulators: Callable[..., SimulatorThread]) -> SimulatorThread:
    return simulators("sim_a")


@pytest.fixture
def sim_b(simulators: Callable[..., SimulatorThread]) -> SimulatorThread:
    return simulators("sim_b")


@pytest.fixture
def payment_settings(sim_a: SimulatorThread, sim_b: SimulatorThread) -> PaymentSettings:
    return PaymentSettings(
        processors=f"sim_a={sim_a.base_url},sim_b={sim_b.base_url}",
        processor_secrets=f"sim_a={NOTIFY_SECRET}",
        processor_timeout_seconds=PROCESSOR_TIMEOUT,
        fee="bps=290,fixed=30",
        embedded_worker=False,  # the tests run the worker's rounds themselves
        worker_concurrency=4,
        resolve_after_seconds=0.1,
    )


@pytest.fixture
async def shop(db_url: str, payment_settings: PaymentSettings) -> AsyncIterator[Shop]:
    settings = Settings(database_url=db_url, maintenance_seconds=0, payments=payment_settings)
    app = create_app(settings)
    tenant = make_tenant(db_url, "shop", ["admin"])
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://settle.test") as c:
            yield Shop(c, app, tenant)
    finally:
        app.state.settle.close()
