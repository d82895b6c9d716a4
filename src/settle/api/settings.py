"""The API server's settings, read once from the environment (no module globals)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from settle.store.db import database_url_from_env
from settle.worker.settings import PaymentSettings

__all__ = ["Settings"]


_MAX_BODY_BYTES = 16 * 1024 * 1024  # 8,190 transfers of four postings with metadata fit
_RETENTION_SECONDS = 24 * 3600


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def _flag(name: str, default: bool) -> bool:
    value = (os.environ.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} is 1 or 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """What the server needs to know; every field has a working default."""

    database_url: str
    max_body_bytes: int = _MAX_BODY_BYTES
    # A revoked key stops working within this time in every process.
    key_cache_seconds: float = 5.0
    # Idempotency keys are kept at least this long, then purged.
    idempotency_retention_seconds: int = _RETENTION_SECONDS
    # Finished webhook deliveries (with their attempts and bodies) are kept this long.
    webhook_retention_seconds: int = 30 * 86_400
    # How often the maintenance runner expires holds and purges keys (0: never).
    maintenance_seconds: float = 30.0
    problem_type_base: str = "https://settle.dev/errors#"
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    log_level: str = "info"
    # Webhooks: deliver them from this process; to private and loopback addresses too (a
    # self-hosted network, tests); each network operation's timeout; attempts in flight at
    # once; how often the runner looks for work it was not woken for.
    webhook_delivery: bool = True
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_concurrency: int = 8
    webhook_poll_seconds: float = 0.1

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=database_url_from_env(),
            max_body_bytes=_int("SETTLE_MAX_BODY_BYTES", _MAX_BODY_BYTES),
            key_cache_seconds=float(os.environ.get("SETTLE_KEY_CACHE_SECONDS") or 5.0),
            idempotency_retention_seconds=_int(
                "SETTLE_IDEMPOTENCY_RETENTION_SECONDS", _RETENTION_SECONDS
            ),
            webhook_retention_seconds=_int("SETTLE_WEBHOOK_RETENTION_SECONDS", 30 * 86_400),
            maintenance_seconds=float(os.environ.get("SETTLE_MAINTENANCE_SECONDS") or 30.0),
            log_level=os.environ.get("SETTLE_LOG_LEVEL") or "info",
            payments=PaymentSettings.from_env(),
            webhook_delivery=_flag("SETTLE_WEBHOOK_DELIVERY", True),
            webhook_allow_private=_flag("SETTLE_WEBHOOK_ALLOW_PRIVATE", False),
            webhook_timeout_seconds=float(os.environ.get("SETTLE_WEBHOOK_TIMEOUT_SECONDS") or 10.0),
            webhook_concurrency=_int("SETTLE_WEBHOOK_CONCURRENCY", 8),
            webhook_poll_seconds=float(os.environ.get("SETTLE_WEBHOOK_POLL_SECONDS") or 0.1),
        )
