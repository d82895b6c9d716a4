"""The simulator's settings: fixed at start (:class:`SimulatorConfig`), and the fault knobs that
``POST /_control/faults`` may change while it runs (:class:`FaultSettings`)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["FaultSettings", "SimulatorConfig", "decode_webhook_secret"]

_NAME = re.compile(r"^[a-z0-9_]+\Z")
_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def decode_webhook_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` followed by base64).

    Raises:
        ValueError: the secret is not ``whsec_<base64>`` or decodes to nothing.
    """
    if not secret.startswith(_SECRET_PREFIX):
        raise ValueError("a notification secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret.removeprefix(_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a notification secret is 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("a notification secret must not be empty")
    return key


def _rate(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} is a probability between 0 and 1, not {value}")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, not {value}")


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Faults injected into every API call (not into ``/_control`` or ``/healthz``).

    ``down`` answers 503 with nothing done; ``failure_rate`` is the chance of a 500 with nothing
    done; ``timeout_rate`` the chance of holding a call like the timeout card does.
    """

    latency_ms: float = 5.0
    jitter_ms: float = 0.0
    failure_rate: float = 0.0
    timeout_rate: float = 0.0
    down: bool = False

    def __post_init__(self) -> None:
        _non_negative("latency_ms", self.latency_ms)
        _non_negative("jitter_ms", self.jitter_ms)
        _rate("failure_rate", self.failure_rate)
        _rate("timeout_rate", self.timeout_rate)

    def updated(self, changes: dict[str, Any]) -> FaultSettings:
        """A copy with ``changes`` (JSON values) applied.

        Raises:
            ValueError: an unknown knob, a value of the wrong type or out of range.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
        for name, value in changes.items():
            if name == "down":
                if not isinstance(value, bool):
                    raise ValueError("down must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
        values: dict[str, Any] = {k: v if k == "down" else float(v) for k, v in changes.items()}
        return replace(self, **values)

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How one simulated processor behaves; the secrets never appear in its repr."""

    name: str = "sim"
    latency_ms: float = 5.0
    jitter_ms: float = 0.0
    failure_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    late_seconds: float = 10.0
    notify_url: str | None = None
    notify_secret: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    seed: int | None = None
    # Notification delivery: attempts in all, and the capped exponential backoff between them.
    notify_attempts: int = 5
    notify_backoff_seconds: float = 0.5
    notify_backoff_max_seconds: float = 8.0
    notify_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"a processor name is [a-z0-9_]+, not {self.name!r}")
        self.faults()  # validates the fault knobs
        for name in (
            "hang_seconds",
            "late_seconds",
            "notify_backoff_seconds",
            "notify_backoff_max_seconds",
            "notify_timeout_seconds",
        ):
            _non_negative(name, getattr(self, name))
        if self.notify_attempts < 1:
            raise ValueError("notify_attempts must be at least 1")
        if self.notify_url is not None:
            if not self.notify_url.startswith(("http://", "https://")):
                raise ValueError(f"notify_url must be an http(s) URL, not {self.notify_url!r}")
            if self.notify_secret is None:
                raise ValueError("notifications are signed: give notify_secret with notify_url")
        if self.notify_secret is not None:
            decode_webhook_secret(self.notify_secret)
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty")

    def faults(self) -> FaultSettings:
        """The fault knobs this simulator starts with."""
        return FaultSettings(
            latency_ms=self.latency_ms,
            jitter_ms=self.jitter_ms,
            failure_rate=self.failure_rate,
            timeout_rate=self.timeout_rate,
        )
