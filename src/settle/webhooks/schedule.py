"""When a failed delivery is tried again, and when a failing endpoint is given up on.

Attempt 1 goes out at once; after each failure the next waits 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 14 h, 20 h and 24 h (about three days in all), each stretched or shortened by up to 10%
of random jitter so that deliveries that failed together do not all come back together. After
the tenth failure the delivery has failed. An endpoint whose deliveries have kept failing for
five days (since the first failure after its last success) is disabled.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "DISABLE_AFTER_SECONDS",
    "JITTER",
    "MAX_ATTEMPTS",
    "RETRY_DELAYS_SECONDS",
    "Rng",
    "failing_too_long",
    "next_attempt_at",
    "retry_delay",
]

Rng = Callable[[], float]
"""Uniform random floats in [0, 1), like ``random.random`` (injected: tests pin it)."""

RETRY_DELAYS_SECONDS: tuple[int, ...] = (
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)
MAX_ATTEMPTS = len(RETRY_DELAYS_SECONDS) + 1
JITTER = 0.1
DISABLE_AFTER_SECONDS = 5 * 86_400
_MICROS = 1_000_000


def retry_delay(attempts_made: int, rng: Rng) -> int | None:
    """Microseconds to wait after the ``attempts_made``-th attempt failed; None when that was
    the last one.

    Raises:
        ValueError: ``attempts_made`` is below 1 (nothing failed yet).
    """
    if attempts_made < 1:
        raise ValueError("a retry follows at least one attempt")
    if attempts_made > len(RETRY_DELAYS_SECONDS):
        return None
    base = RETRY_DELAYS_SECONDS[attempts_made - 1] * _MICROS
    return round(base * (1.0 + JITTER * (2.0 * rng() - 1.0)))


def next_attempt_at(attempts_made: int, now: int, rng: Rng) -> int | None:
    """When to try again (microseconds since the epoch) after a failure at ``now``."""
    delay = retry_delay(attempts_made, rng)
    return None if delay is None else now + delay


def failing_too_long(failing_since: int | None, now: int) -> bool:
    """Whether an endpoint failing since ``failing_since`` has failed for five days."""
    return failing_since is not None and now - failing_since >= DISABLE_AFTER_SECONDS * _MICROS
