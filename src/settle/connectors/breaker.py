"""A circuit breaker per processor: a small state machine on an injected clock.

``closed`` counts consecutive failures (``not_processed`` or ``unknown`` outcomes of calls that
were sent) and trips to ``open`` at the threshold; ``open`` refuses every call until the
cool-down has passed, then becomes ``half_open``, which lets one trial call through: its success
closes the circuit, its failure opens it again for another cool-down.
"""

from __future__ import annotations

import threading
from enum import StrEnum

from settle.clock import Clock, system_clock

__all__ = [
    "TRANSITIONS",
    "BreakerEvent",
    "BreakerState",
    "BreakerTransitionError",
    "CircuitBreaker",
]


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go to the processor; consecutive failures are counted
    OPEN = "open"  # calls answer not_processed at once: no money can move there now
    HALF_OPEN = "half_open"  # one trial call may go; its outcome decides


class BreakerEvent(StrEnum):
    SUCCESS = "success"  # a call was answered (approved or declined)
    FAILURE = "failure"  # a call ended not_processed or unknown
    TRIP = "trip"  # the consecutive failures reached the threshold
    COOLED = "cooled"  # the cool-down after opening has passed


TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (BreakerState.CLOSED, BreakerEvent.SUCCESS): BreakerState.CLOSED,
    (BreakerState.CLOSED, BreakerEvent.FAILURE): BreakerState.CLOSED,
    (BreakerState.CLOSED, BreakerEvent.TRIP): BreakerState.OPEN,
    # Late answers of calls let through before the circuit opened change nothing.
    (BreakerState.OPEN, BreakerEvent.SUCCESS): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.FAILURE): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.COOLED): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.SUCCESS): BreakerState.CLOSED,
    (BreakerState.HALF_OPEN, BreakerEvent.FAILURE): BreakerState.OPEN,
}


class BreakerTransitionError(RuntimeError):
    """An event the breaker's state cannot take: a bug in the breaker, never a processor's."""

    def __init__(self, state: BreakerState, event: BreakerEvent) -> None:
        super().__init__(f"a {state} circuit breaker cannot take {event}")
        self.state = state
        self.event = event


class CircuitBreaker:
    """Thread-safe. ``allow()`` before a call, then ``record_success()`` or
    ``record_failure()`` for every call it allowed."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Clock = system_clock,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must be >= 0")
        self._threshold = failure_threshold
        self._cooldown_us = round(cooldown_seconds * 1_000_000)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0
        self._trial_out = False

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state}, failures={self._failures})"

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._cool()
            return self._state

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def available(self) -> bool:
        """Whether a call would be let through now (it does not take the half-open trial)."""
        with self._lock:
            self._cool()
            if self._state is BreakerState.HALF_OPEN:
                return not self._trial_out
            return self._state is BreakerState.CLOSED

    def allow(self) -> bool:
        """Let one call through, or refuse it; a half-open circuit lets one trial at a time."""
        with self._lock:
            self._cool()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and not self._trial_out:
                self._trial_out = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._fire(BreakerEvent.SUCCESS)
            if self._state is BreakerState.CLOSED:
                self._failures = 0

    def record_failure(self) -> None:
        with self._lock:
            was = self._state
            self._fire(BreakerEvent.FAILURE)
            if was is BreakerState.CLOSED:
                self._failures += 1
                if self._failures >= self._threshold:
                    self._fire(BreakerEvent.TRIP)

    def _cool(self) -> None:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self._cooldown_us
        ):
            self._fire(BreakerEvent.COOLED)

    def _fire(self, event: BreakerEvent) -> None:
        following = TRANSITIONS.get((self._state, event))
        if following is None:
            raise BreakerTransitionError(self._state, event)
        if self._state is BreakerState.HALF_OPEN:
            self._trial_out = False
        if following is BreakerState.OPEN and self._state is not BreakerState.OPEN:
            self._opened_at = self._clock()
        if following is BreakerState.CLOSED and self._state is not BreakerState.CLOSED:
            self._failures = 0
        self._state = following
