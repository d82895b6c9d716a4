"""The collector pause: off while any writer is busy, caught up on a schedule the writer chooses.

Every story uses its own ``CollectorPause`` on a fake clock (never the process's shared one),
and the interpreter's collector is put back as it was after each story. A catch-up proves it
really collected by freeing a reference cycle that nothing else could free while the collector
is off: a weak reference into the cycle is alive before the catch-up and dead after it.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from settle.ledger.collector import CollectorPause


class FakeClock:
    """A monotonic clock that moves only when a story says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Node:
    partner: _Node


def _drop_a_cycle() -> weakref.ref[_Node]:
    """Make two objects that refer to each other, drop them, and keep a weak eye on one."""
    first, second = _Node(), _Node()
    first.partner, second.partner = second, first
    return weakref.ref(first)


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    """Each story may switch the collector; the next one finds it as it was."""
    was_enabled = gc.isenabled()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pause(clock: FakeClock) -> CollectorPause:
    return CollectorPause(young_every=5.0, full_every=60.0, monotonic=clock)


@pytest.fixture
def collections(pause: CollectorPause) -> Iterator[list[int]]:
    """The generation of every collection the interpreter starts while the pause is held."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and pause.holders:
            seen.append(info["generation"])

    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)


def test_collector_is_off_while_two_writers_hold_it_and_back_on_after_the_last_release(
    pause: CollectorPause,
) -> None:
    gc.enable()

    pause.hold()
    assert gc.isenabled() is False
    assert pause.holders == 1

    with pause.held():
        assert gc.isenabled() is False
        assert pause.holders == 2

    # The second writer is done; the first is still busy.
    assert gc.isenabled() is False
    assert pause.holders == 1

    pause.release()
    assert gc.isenabled() is True
    assert pause.holders == 0


def test_a_held_block_that_raises_still_releases_the_collector(pause: CollectorPause) -> None:
    gc.enable()

    enabled_inside: list[bool] = []

    def a_batch_that_fails() -> None:
        with pause.held():
            enabled_inside.append(gc.isenabled())
            raise ValueError("the batch failed")

    with pytest.raises(ValueError, match=r"^the batch failed$"):
        a_batch_that_fails()

    assert enabled_inside == [False]
    assert gc.isenabled() is True
    assert pause.holders == 0


def test_a_process_that_disabled_the_collector_itself_keeps_it_disabled_after_release(
    pause: CollectorPause,
) -> None:
    gc.disable()

    pause.hold()
    with pause.held():
        assert gc.isenabled() is False
    pause.release()

    assert gc.isenabled() is False
    assert pause.holders == 0


def test_the_collector_comes_back_on_for_a_process_that_re_enabled_it_between_pauses(
    pause: CollectorPause,
) -> None:
    gc.disable()
    with pause.held():
        pass
    assert gc.isenabled() is False

    gc.enable()
    with pause.held():
        assert gc.isenabled() is False
    assert gc.isenabled() is True


def test_releasing_a_pause_nobody_holds_is_refused_and_changes_nothing(
    pause: CollectorPause,
) -> None:
    gc.enable()

    with pytest.raises(RuntimeError, match=r"^collector pause released more often than held$"):
        pause.release()
    assert pause.holders == 0
    assert gc.isenabled() is True


def test_releasing_more_often_than_held_is_refused_and_changes_nothing(
    pause: CollectorPause,
) -> None:
    gc.enable()
    pause.hold()
    pause.hold()
    pause.release()
    pause.release()

    with pytest.raises(RuntimeError, match=r"^collector pause released more often than held$"):
        pause.release()
    assert pause.holders == 0
    assert gc.isenabled() is True

    # The refused release did not unbalance the count: the next hold still switches it off.
    with pause.held():
        assert gc.isenabled() is False
        assert pause.holders == 1
    assert gc.isenabled() is True


def test_a_catch_up_before_young_every_seconds_collects_nothing(
    pause: CollectorPause, clock: FakeClock, collections: list[int]
) -> None:
    with pause.held():
        cycle = _drop_a_cycle()
        clock.advance(4.5)

        assert pause.catch_up() is None

        assert cycle() is not None
        assert collections == []


def test_a_catch_up_after_young_every_seconds_collects_the_young_generations(
    pause: CollectorPause, clock: FakeClock, collections: list[int]
) -> None:
    with pause.held():
        cycle = _drop_a_cycle()
        clock.advance(5.0)
        assert cycle() is not None

        assert pause.catch_up() == 1

        assert cycle() is None
        assert collections == [1]


def test_a_catch_up_after_full_every_seconds_collects_every_generation(
    pause: CollectorPause, clock: FakeClock, collections: list[int]
) -> None:
    with pause.held():
        cycle = _drop_a_cycle()
        clock.advance(60.0)
        assert cycle() is not None

        assert pause.catch_up() == 2

        assert cycle() is None
        assert collections == [2]


def test_the_schedule_restarts_from_each_catch_up(
    pause: CollectorPause, clock: FakeClock, collections: list[int]
) -> None:
    with pause.held():
        clock.advance(5.0)  # t = 5
        assert pause.catch_up() == 1

        clock.advance(4.5)  # t = 9.5: only 4.5 s since the last catch-up
        cycle = _drop_a_cycle()
        assert pause.catch_up() is None
        assert cycle() is not None

        clock.advance(0.5)  # t = 10: 5 s since the last catch-up
        assert pause.catch_up() == 1
        assert cycle() is None

        clock.advance(50.0)  # t = 60: a full minute since the pause began
        assert pause.catch_up() == 2

        clock.advance(5.0)  # t = 65: the young schedule restarted from the full collection
        assert pause.catch_up() == 1

        clock.advance(50.0)  # t = 115: only 55 s since the full collection
        assert pause.catch_up() == 1

        clock.advance(4.5)  # t = 119.5: young not due, though full would be soon
        assert pause.catch_up() is None

        clock.advance(0.5)  # t = 120: a minute since the full collection
        assert pause.catch_up() == 2

        assert collections == [1, 1, 2, 1, 1, 2]


def test_the_schedule_counts_from_the_end_of_a_slow_catch_up(
    pause: CollectorPause, clock: FakeClock
) -> None:
    def collection_takes_two_seconds(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            clock.advance(2.0)

    gc.callbacks.append(collection_takes_two_seconds)
    try:
        with pause.held():
            clock.advance(5.0)  # t = 5; the collection ends at t = 7
            assert pause.catch_up() == 1

            clock.advance(4.5)  # t = 11.5: 6.5 s since it began, 4.5 s since it ended
            assert pause.catch_up() is None

            clock.advance(0.5)  # t = 12: 5 s since it ended
            assert pause.catch_up() == 1
    finally:
        gc.callbacks.remove(collection_takes_two_seconds)
