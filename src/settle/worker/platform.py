"""The background half of the platform: the job runner with every context's handlers.

``settle serve`` builds one in process (unless told not to); ``settle worker`` runs one on
its own. Several may run against one database: jobs are claimed under leases.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from settle.clock import system_clock
from settle.connectors.config import build_router, parse_processor_config
from settle.payments.fees import FeeSchedule
from settle.payments.processing import PaymentProcessing
from settle.security.service import ApiKeyAuthenticator
from settle.store.ledger_store import LedgerStore
from settle.worker.jobs import JobRunner
from settle.worker.maintenance import MaintenanceRunner
from settle.worker.settings import parse_named_values
from settle.worker.webhooks import WebhookRunner

if TYPE_CHECKING:
    from settle.clock import Clock
    from settle.payments.processors import Processor, ProcessorDirectory
    from settle.worker.settings import PaymentSettings

__all__ = ["NoProcessors", "Worker", "build_payments", "build_processors"]


class NoProcessors:
    """The directory when no processor is configured: every payment waits, then fails."""

    def get(self, name: str) -> Processor:
        raise KeyError(name)

    def pick(self, exclude: Collection[str] = ()) -> Processor | None:  # noqa: ARG002
        return None


def build_processors(settings: PaymentSettings, clock: Clock) -> ProcessorDirectory:
    if not settings.processors:
        return NoProcessors()
    return build_router(
        parse_processor_config(settings.processors),
        clock=clock,
        timeout=settings.processor_timeout_seconds,
        api_keys=parse_named_values(settings.processor_api_keys, "processor API key"),
    )


def build_payments(
    store: LedgerStore, settings: PaymentSettings, clock: Clock
) -> tuple[PaymentProcessing, JobRunner, Callable[[], None]]:
    """Payments' worker side and a job runner for it; the last item closes the processors."""
    processors = build_processors(settings, clock)
    payments = PaymentProcessing(
        store.uow,
        processors,
        FeeSchedule.parse(settings.fee),
        resolve_after_seconds=settings.resolve_after_seconds,
    )
    runner = JobRunner(
        store.db,
        payments.handlers(),
        clock,
        concurrency=settings.worker_concurrency,
        batch_handlers=payments.batch_handlers(),
    )

    def close() -> None:
        payments.close()
        closer = getattr(processors, "close", None)
        if closer is not None:
            closer()

    return payments, runner, close


class Worker:
    """``settle worker``: the job runner, webhook deliveries and maintenance, no HTTP.

    Several may run against one database (jobs and deliveries are claimed under leases).
    """

    def __init__(
        self,
        database_url: str,
        payments: PaymentSettings,
        *,
        clock: Clock = system_clock,
        webhooks_allow_private: bool = False,
        webhooks_timeout: float = 10.0,
        maintenance_seconds: float = 30.0,
        retention_seconds: int = 24 * 3600,
        webhook_retention_seconds: int = 30 * 86_400,
    ) -> None:
        self.store = LedgerStore(database_url, clock=clock)
        self.payments, self.jobs, self._close_processors = build_payments(
            self.store, payments, clock
        )
        self.webhooks = WebhookRunner(
            self.store.db, clock, allow_private=webhooks_allow_private, timeout=webhooks_timeout
        )
        # Its own commits (a processor's answer recorded) wrote events: deliver them now.
        self.store.after_commit = self._wake
        # No API keys are used here; the authenticator only lets maintenance run unchanged.
        self.maintenance = MaintenanceRunner(
            self.store,
            ApiKeyAuthenticator(lambda _digest: None, clock),
            clock,
            interval=maintenance_seconds,
            retention=retention_seconds,
            webhook_retention=webhook_retention_seconds,
        )

    def _wake(self) -> None:
        self.jobs.wake()
        self.webhooks.wake()

    def start(self) -> None:
        self.jobs.start()
        self.webhooks.start()
        self.maintenance.start()

    def stop(self) -> None:
        self.maintenance.stop()
        self.webhooks.stop()
        self.jobs.stop()
        self._close_processors()
        self.store.close()
