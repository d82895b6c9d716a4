"""Routing: the first available processor in configured order, failing over to the next."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from settle.connectors import CircuitBreaker, HttpProcessor, ProcessorRouter
from settle.payments.processors import AuthorizeRequest, ProcessorOutcome

if TYPE_CHECKING:
    from settle.simulator import SimulatorThread

    from .conftest import Audit


def test_a_retryable_failure_routes_the_next_attempt_to_the_next_processor(
    make_simulator: Callable[..., SimulatorThread],
    make_processor: Callable[..., HttpProcessor],
    make_audit: Callable[..., Audit],
) -> None:
    sim_a, sim_b = make_simulator("sim_a"), make_simulator("sim_b")
    make_audit(sim_a).faults(down=True)
    a = make_processor(sim_a.base_url, "sim_a", breaker=CircuitBreaker(failure_threshold=2))
    b = make_processor(sim_b.base_url, "sim_b", breaker=CircuitBreaker(failure_threshold=2))
    router = ProcessorRouter([a, b])
    request = AuthorizeRequest("att_1", 1000, "USD", "4242424242424242", False, "pi_1")

    first = router.pick()
    assert first is a
    failed = first.authorize(request)
    assert failed.outcome is ProcessorOutcome.NOT_PROCESSED
    second = router.pick(exclude={failed.processor})
    assert second is b
    approved = second.authorize(request)

    assert (approved.outcome, approved.processor) == (ProcessorOutcome.APPROVED, "sim_b")
    assert len(make_audit(sim_b).authorizations("pi_1")) == 1
    assert router.pick() is a  # one failure does not open a's circuit (threshold 2)
    a.authorize(AuthorizeRequest("att_2", 1000, "USD", "4242424242424242", False, "pi_2"))
    assert (a.available(), router.pick()) == (False, b)
    assert router.pick(exclude={"sim_b"}) is None


def test_names_and_lookup_by_name(make_processor: Callable[..., HttpProcessor]) -> None:
    a = make_processor("http://127.0.0.1:1", "sim_a")
    b = make_processor("http://127.0.0.1:2", "sim_b")
    router = ProcessorRouter([b, a])

    assert router.names == ("sim_b", "sim_a")
    assert router.get("sim_a") is a
    assert list(router) == [b, a]
    with pytest.raises(KeyError, match="no processor named 'sim_c'"):
        router.get("sim_c")


def test_a_router_needs_distinct_processors(make_processor: Callable[..., HttpProcessor]) -> None:
    a = make_processor("http://127.0.0.1:1", "sim_a")
    again = make_processor("http://127.0.0.1:2", "sim_a")

    with pytest.raises(ValueError, match="must be unique: sim_a"):
        ProcessorRouter([a, again])
    with pytest.raises(ValueError, match="at least one"):
        ProcessorRouter([])
