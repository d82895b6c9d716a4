"""Clocks: Settle reads time through an injected callable so tests can control it."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "system_clock"]

Clock = Callable[[], int]
"""Returns the current time as integer microseconds since the Unix epoch (UTC)."""


def system_clock() -> int:
    return time.time_ns() // 1_000
