"""The FastAPI application: ``create_app(settings)`` builds one, with no module globals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from settle.api.metrics import Metrics
from settle.api.middleware import RequestMiddleware
from settle.api.openapi import install_openapi
from settle.api.problems import install_problem_handlers
from settle.api.routers import (
    accounts,
    events,
    health,
    jobs,
    payment_intents,
    processor_notifications,
    refunds,
    transfers,
    webhook_endpoints,
)
from settle.api.settings import Settings
from settle.api.state import AppState
from settle.clock import Clock, system_clock
from settle.logs import configure_logging
from settle.worker.maintenance import MaintenanceRunner
from settle.worker.webhooks import WebhookRunner

__all__ = ["create_app", "create_app_from_env"]

_DESCRIPTION = """\
Settle's HTTP API: a multi-tenant double-entry ledger, card payments through processors,
refunds, and signed webhooks.

* Authenticate with `Authorization: Bearer sk_…` (scopes `ledger:read`, `ledger:write`,
  `payments:read`, `payments:write`, `webhooks:manage`, `admin`).
* Payments answer at once in `processing`; the worker asks the processor after the commit, and
  the intent's webhooks (or reading it) tell the outcome.
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
        webhook_retention=settings.webhook_retention_seconds,
    )
    webhooks = WebhookRunner(
        state.store.db,
        clock,
        allow_private=settings.webhook_allow_private,
        timeout=settings.webhook_timeout_seconds,
        poll_seconds=settings.webhook_poll_seconds,
        concurrency=settings.webhook_concurrency,
    )
    if settings.webhook_delivery:
        # Committed transfers wrote events: fan them out now rather than at the next poll.
        state.store.writer.observe(lambda _transfers, _seconds: webhooks.wake())
    # After a unit of work commits, the jobs and events it wrote are taken up at once.
    wakers = [
        wake
        for wake, on in (
            (state.jobs.wake, settings.payments.embedded_worker),
            (webhooks.wake, settings.webhook_delivery),
        )
        if on
    ]

    def wake_workers() -> None:
        for wake in wakers:
            wake()

    state.store.after_commit = wake_workers if wakers else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        maintenance.start()
        if settings.payments.embedded_worker:
            state.jobs.start()
        if settings.webhook_delivery:
            webhooks.start()
        try:
            yield
        finally:
            webhooks.stop()
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
    app.state.webhooks = webhooks
    install_problem_handlers(app)
    install_openapi(app)
    for module in (
        accounts,
        transfers,
        events,
        payment_intents,
        refunds,
        jobs,
        processor_notifications,
        webhook_endpoints,
        health,
    ):
        app.include_router(module.router)
    app.add_middleware(RequestMiddleware, settings=settings, metrics=metrics)
    return app


def create_app_from_env() -> FastAPI:
    """The factory ``settle serve`` hands to uvicorn (each worker process builds its own)."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)
