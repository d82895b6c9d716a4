"""When a call to a processor may be sent again, and how long to wait first: pure functions.

Only what certainly did nothing is retried, always with the same idempotency key: a connection
that was never made (refused, connect timeout, no free connection), a 5xx answer (the
processors we speak to document theirs as "nothing done") and 409 ``request_in_flight`` (the
first request with the key is still running: ask again). A timeout or a broken connection after
the request was sent is never retried here: it may have been processed.
"""

from __future__ import annotations

import random
from enum import StrEnum

import httpx

__all__ = ["Delivery", "backoff_delay", "classify_error", "is_retryable_status"]

IN_FLIGHT = "request_in_flight"


class Delivery(StrEnum):
    """What became of a request that got no answer."""

    NOT_SENT = "not_sent"  # no connection was made: the processor saw nothing
    MAYBE_SENT = "maybe_sent"  # sent, or partly: the processor may have acted on it


# Raised before any byte of the request left (httpx opens the connection first).
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def classify_error(exc: httpx.TransportError) -> Delivery:
    """Whether a transport error left the request unsent (safe to send again)."""
    return Delivery.NOT_SENT if isinstance(exc, _NOT_SENT) else Delivery.MAYBE_SENT


def is_retryable_status(status: int, error_code: str | None) -> bool:
    """A 5xx, or a 409 saying the first request with the same key is still in flight."""
    return status >= 500 or (status == 409 and error_code == IN_FLIGHT)


def backoff_delay(attempt: int, *, initial: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    Capped exponential backoff with full jitter: uniform in ``[0, min(cap, initial * 2**(n-1))]``,
    so callers retrying together spread out instead of arriving in step.
    """
    if attempt < 1:
        raise ValueError("attempt counts retries from 1")
    ceiling = min(cap, initial * 2 ** (attempt - 1))
    return rng.uniform(0.0, ceiling)
