"""Clocks: Settle reads time through an injected callable so tests can control it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "from_micros", "system_clock", "to_micros"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Clock = Callable[[], int]
"""Returns the current time as integer microseconds since the Unix epoch (UTC)."""


def system_clock() -> int:
    return time.time_ns() // 1_000


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch for an aware datetime (naive datetimes are refused)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime for microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=micros)
