"""What one app instance holds: its settings, the ledger store, the authenticator and metrics."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING

from settle.security.service import ApiKeyAuthenticator
from settle.store.ledger_store import LedgerStore
from settle.store.security_repo import find_api_key
from settle.webhooks.signing import SigningSecret
from settle.worker.platform import build_payments
from settle.worker.settings import parse_named_values

if TYPE_CHECKING:
    from settle.api.metrics import Metrics
    from settle.api.settings import Settings
    from settle.clock import Clock

__all__ = ["AppState", "InFlightKeys"]


class InFlightKeys:
    """Idempotency keys being processed by this process, with their request fingerprints.

    A second request with a key still in flight here is answered 409 (or 422 if its request
    differs) at once. Requests racing in two processes are settled by the database instead:
    the key is checked under the tenant's lock when it is stored.
    """

    def __init__(self) -> None:
        self._keys: dict[tuple[uuid.UUID, str], bytes] = {}
        self._lock = threading.Lock()

    def claim(self, tenant_id: uuid.UUID, key: str, fingerprint: bytes) -> bytes | None:
        """Claim the key; if someone holds it, return their fingerprint instead."""
        with self._lock:
            holder = self._keys.get((tenant_id, key))
            if holder is not None:
                return holder
            self._keys[tenant_id, key] = fingerprint
            return None

    def release(self, tenant_id: uuid.UUID, key: str) -> None:
        with self._lock:
            self._keys.pop((tenant_id, key), None)


class AppState:
    def __init__(self, settings: Settings, metrics: Metrics, clock: Clock) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.store = LedgerStore(settings.database_url, clock=clock)
        self.store.writer.observe(metrics.observe_batch)
        db = self.store.db
        self.authenticator = ApiKeyAuthenticator(
            lambda digest: find_api_key(db, digest),
            clock,
            ttl=int(settings.key_cache_seconds * 1_000_000),
        )
        self.in_flight = InFlightKeys()
        # Payments' worker side: the job runner (started by the app's lifespan when the
        # worker is embedded) and notification intake from processors.
        self.payments, self.jobs, self._close_processors = build_payments(
            self.store, settings.payments, clock
        )
        self.processor_secrets = {
            name: SigningSecret(secret)
            for name, secret in parse_named_values(
                settings.payments.processor_secrets, "processor secret"
            ).items()
        }

    def close(self) -> None:
        self.jobs.stop()
        self._close_processors()
        self.store.close()
