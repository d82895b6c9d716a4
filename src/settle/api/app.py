"""The FastAPI application: ``create_app(settings)`` builds one, with no module globals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from settle.api.metrics import Metrics
from settle.api.middleware import RequestMiddleware
from settle.api.openapi import install_openapi
from settle.api.problems import install_problem_handlers
from settle.api.routers import accounts, events, health, transfers
from settle.api.settings import Settings
from settle.api.state import AppState
from settle.clock import Clock, system_clock
from settle.logs import configure_logging
from settle.worker.maintenance import MaintenanceRunner

__all__ = ["create_app", "create_app_from_env"]

_DESCRIPTION = """\
Settle's HTTP API: a multi-tenant double-entry ledger.

* Authenticate with `Authorization: Bearer sk_…` (scopes `ledger:read`, `ledger:write`, `admin`).
* Every POST takes an `Idempotency-Key`: a retry with the same key and body replays the first
  answer byte for byte (`Idempotent-Replayed: true`).
* Amounts are JSON integers of minor units with an upper-case ISO 4217 `currency`; timestamps
  are RFC 3339 in UTC; lists page with `limit`, `starting_after` and `ending_before`.
* Errors are RFC 9457 problems (`application/problem+json`) with a stable `code`.
"""


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    """A new app on ``settings`` (default: from the environment). It owns its ledger store,
    which is closed when the app shuts down (or by ``app.state.settle.close()``)."""
    settings = settings or Settings.from_env()
    metrics = Metrics()
    state = AppState(settings, metrics, clock)
    maintenance = MaintenanceRunner(
        state.store,
        state.authenticator,
        clock,
        interval=settings.maintenance_seconds,
        retention=settings.idempotency_retention_seconds,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        maintenance.start()
        try:
            yield
        finally:
            maintenance.stop()
            state.close()

    app = FastAPI(
        title="Settle",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settle = state
    app.state.maintenance = maintenance
    install_problem_handlers(app)
    install_openapi(app)
    for module in (accounts, transfers, events, health):
        app.include_router(module.router)
    app.add_middleware(RequestMiddleware, settings=settings, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """The factory ``settle serve`` hands to uvicorn (each worker process builds its own)."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)
