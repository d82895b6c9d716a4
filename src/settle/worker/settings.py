"""Settings of the background work: processors, their secrets, the fee, the embedded worker."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["PaymentSettings", "parse_named_values"]


def parse_named_values(spec: str, what: str) -> dict[str, str]:
    """``"name=value,name=value"`` as a dict (a value may itself hold ``=``)."""
    found: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name or not value:
            raise ValueError(f"bad {what} entry {item.split('=')[0]!r}: use name=value")
        found[name] = value
    return found


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    # ``name=url,...`` in order of preference (SETTLE_PROCESSORS); none: payments cannot be
    # confirmed (they fail with processor_unavailable).
    processors: str = ""
    # ``name=whsec_...,...``: the secrets processors sign their notifications with.
    processor_secrets: str = ""
    processor_api_keys: str = ""
    processor_timeout_seconds: float = 2.0
    fee: str = "bps=290,fixed=30"
    # `settle serve` runs the job worker in process unless this is off.
    embedded_worker: bool = True
    worker_concurrency: int = 16
    resolve_after_seconds: float = 1.0

    @classmethod
    def from_env(cls) -> PaymentSettings:
        env = os.environ.get
        return cls(
            processors=env("SETTLE_PROCESSORS") or "",
            processor_secrets=env("SETTLE_PROCESSOR_SECRETS") or "",
            processor_api_keys=env("SETTLE_PROCESSOR_API_KEYS") or "",
            processor_timeout_seconds=float(env("SETTLE_PROCESSOR_TIMEOUT_SECONDS") or 2.0),
            fee=env("SETTLE_PAYMENT_FEE") or "bps=290,fixed=30",
            embedded_worker=_flag("SETTLE_EMBEDDED_WORKER", True),
            worker_concurrency=int(env("SETTLE_WORKER_CONCURRENCY") or 16),
            resolve_after_seconds=float(env("SETTLE_RESOLVE_AFTER_SECONDS") or 1.0),
        )
