"""When Python's cyclic garbage collector may run while the ledger writer is busy.

A batch of 8,190 transfers allocates a few hundred thousand tuples, lists and slotted objects
that all live until the batch is written (and the writer's cache keeps some for several
batches). None of them form reference cycles: reference counting frees them. Yet every
collection the interpreter triggers meanwhile walks them again, and the full collections that
their promotion provokes walk the whole heap: measured at about a fifth of the writer's time on
PostgreSQL. So while any writer is busy the collector is switched off, and the writer catches
up at moments it chooses, between batches, when the last batch's rows are already freed: a
young-generation collection at most every ``young_every`` seconds and a full one at most every
``full_every`` seconds. Cyclic garbage made by other threads meanwhile (an exception's
traceback, say) is collected that much later, never lost. When no writer is busy the collector
runs as the interpreter pleases.

The collector is process-wide, so the pause is too: it is held while at least one writer
thread of any engine is busy.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["CollectorPause", "collector_pause"]


class CollectorPause:
    """A process-wide, counted pause of the cyclic collector with scheduled catch-ups."""

    def __init__(
        self,
        *,
        young_every: float = 5.0,
        full_every: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.young_every = young_every
        self.full_every = full_every
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._holders = 0
        # Whether the collector was on before the first holder switched it off: a process
        # that disabled it on purpose keeps it disabled.
        self._was_enabled = True
        now = monotonic()
        self._last_young = now
        self._last_full = now

    @property
    def holders(self) -> int:
        return self._holders

    def hold(self) -> None:
        """Switch the collector off until the matching :meth:`release` (counted, shared)."""
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            if self._holders <= 0:
                raise RuntimeError("collector pause released more often than held")
            self._holders -= 1
            if self._holders == 0 and self._was_enabled:
                gc.enable()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep the collector off for the duration of the block."""
        self.hold()
        try:
            yield
        finally:
            self.release()

    def catch_up(self) -> int | None:
        """Between batches: run the collection that is due, if any; returns its generation."""
        now = self._monotonic()
        if now - self._last_young < self.young_every:
            return None
        generation = 2 if now - self._last_full >= self.full_every else 1
        gc.collect(generation)
        self._last_young = self._monotonic()
        if generation == 2:
            self._last_full = self._last_young
        return generation


collector_pause = CollectorPause()
