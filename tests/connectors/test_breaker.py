"""The circuit breaker as the pure state machine it is, on a clock the test moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settle.connectors import TRANSITIONS, BreakerEvent, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1_000_000)


def _breaker(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, cooldown_seconds=10, clock=clock)


def test_consecutive_failures_open_the_circuit_and_a_success_resets_the_count() -> None:
    clock = Clock()
    breaker = _breaker(clock)

    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert (breaker.state, breaker.consecutive_failures) == (BreakerState.CLOSED, 2)

    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.available()
    assert not breaker.allow()


def test_after_the_cool_down_one_trial_goes_and_its_success_closes() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=1)
    breaker.record_failure()

    clock.advance(9.999)
    assert (breaker.state, breaker.available()) == (BreakerState.OPEN, False)
    clock.advance(0.001)
    assert (breaker.state, breaker.available()) == (BreakerState.HALF_OPEN, True)

    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time
    assert not breaker.available()
    breaker.record_success()
    assert (breaker.state, breaker.consecutive_failures, breaker.allow()) == (
        BreakerState.CLOSED,
        0,
        True,
    )


def test_a_failed_trial_opens_the_circuit_for_another_cool_down() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=1)
    breaker.record_failure()
    clock.advance(10)

    assert breaker.allow()
    breaker.record_failure()

    assert breaker.state is BreakerState.OPEN
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_the_table_names_every_move_the_breaker_makes() -> None:
    assert {(s.value, e.value): t.value for (s, e), t in TRANSITIONS.items()} == {
        ("closed", "success"): "closed",
        ("closed", "failure"): "closed",
        ("closed", "trip"): "open",
        ("open", "success"): "open",
        ("open", "failure"): "open",
        ("open", "cooled"): "half_open",
        ("half_open", "success"): "closed",
        ("half_open", "failure"): "open",
    }


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_nonsense_settings_are_refused(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(failure_threshold=threshold, cooldown_seconds=cooldown)


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.booleans()),
        st.tuples(st.just("wait"), st.floats(0, 15)),
    ),
    max_size=40,
)


@given(steps=_STEPS, threshold=st.integers(1, 4))
def test_random_walks_keep_the_breakers_promises(
    steps: list[tuple[str, object]], threshold: int
) -> None:
    """Whatever happens: an open circuit sends nothing until its cool-down ends, a half-open one
    sends one trial, and the state follows from the outcomes as the table says."""
    clock = Clock()
    breaker = _breaker(clock, threshold)
    failures, opened_at, state = 0, None, BreakerState.CLOSED
    for kind, value in steps:
        if kind == "wait":
            clock.advance(float(value))  # type: ignore[arg-type]
            continue
        if (
            state is BreakerState.OPEN
            and opened_at is not None
            and clock.now - opened_at >= 10_000_000
        ):
            state = TRANSITIONS[state, BreakerEvent.COOLED]
        allowed = breaker.allow()
        assert allowed == (state is not BreakerState.OPEN)
        assert breaker.state is state
        if not allowed:
            continue
        if value:
            breaker.record_success()
            failures, state = 0, BreakerState.CLOSED
        else:
            breaker.record_failure()
            failures += 1
            if state is BreakerState.HALF_OPEN or failures >= threshold:
                state, opened_at, failures = BreakerState.OPEN, clock.now, 0
        assert breaker.state is state
