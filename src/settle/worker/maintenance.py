"""The maintenance runner: expires pending transfers past their timeout, purges old
idempotency keys, succeeded jobs and finished webhook deliveries, and records API key use,
every few seconds, on a thread of its own."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import structlog

from settle.ledger.service import expire_pending
from settle.store.idempotency import purge_idempotency_keys
from settle.store.jobs_repo import purge_finished_jobs
from settle.store.webhooks_purge import purge_webhook_history

if TYPE_CHECKING:
    from settle.clock import Clock
    from settle.security.service import ApiKeyAuthenticator
    from settle.store.ledger_store import LedgerStore

__all__ = ["MaintenanceRunner"]

_log = structlog.get_logger(__name__)


class MaintenanceRunner:
    def __init__(
        self,
        store: LedgerStore,
        authenticator: ApiKeyAuthenticator,
        clock: Clock,
        *,
        interval: float,
        retention: int,
        webhook_retention: int = 30 * 86_400,
    ) -> None:
        self.store = store
        self.authenticator = authenticator
        self.clock = clock
        self.interval = interval
        self.retention = retention
        self.webhook_retention = webhook_retention
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="settle-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._record_key_uses()  # the last uses of API keys are not lost

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> dict[str, int]:
        """One round of every job; a failing job is logged and retried next round."""
        done = {
            "expired": 0, "purged": 0, "jobs_purged": 0, "deliveries_purged": 0,
            "keys_touched": 0,
        }  # fmt: skip
        now = self.clock()
        try:
            done["expired"] = len(expire_pending(self.store.uow(), self.store.writer, now))
        except Exception as exc:  # noqa: BLE001 - retried next round
            _log.warning("expiring holds failed", error=type(exc).__name__)
        try:
            done["purged"] = purge_idempotency_keys(self.store.db, now - self.retention * 1_000_000)
        except Exception as exc:  # noqa: BLE001 - retried next round
            _log.warning("purging idempotency keys failed", error=type(exc).__name__)
        try:
            done["jobs_purged"] = purge_finished_jobs(
                self.store.db, now - self.retention * 1_000_000
            )
        except Exception as exc:  # noqa: BLE001 - retried next round
            _log.warning("purging finished jobs failed", error=type(exc).__name__)
        try:
            done["deliveries_purged"] = purge_webhook_history(
                self.store.db, now - self.webhook_retention * 1_000_000
            )
        except Exception as exc:  # noqa: BLE001 - retried next round
            _log.warning("purging webhook deliveries failed", error=type(exc).__name__)
        done["keys_touched"] = self._record_key_uses()
        return done

    def _record_key_uses(self) -> int:
        uses = self.authenticator.drain_uses()
        if not uses:
            return 0
        try:
            with self.store.uow() as uow:
                uow.security.touch_api_keys(uses)
                uow.commit()
        except Exception as exc:  # noqa: BLE001 - a lost last-used time is harmless
            _log.warning("recording API key use failed", error=type(exc).__name__)
            return 0
        return len(uses)
