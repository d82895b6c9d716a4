"""HttpProcessor against a real simulator on loopback: every outcome, and what it left there."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from settle.connectors import BreakerState, CircuitBreaker, HttpProcessor
from settle.payments.processors import (
    AuthorizeRequest,
    CaptureRequest,
    LookupResult,
    ProcessorOutcome,
    ProcessorResult,
    RefundRequest,
    VoidRequest,
)

from .conftest import TIMEOUT, Audit, free_port

if TYPE_CHECKING:
    from settle.simulator import SimulatorThread

APPROVE, TIMEOUT_CARD, LATE = "4242424242424242", "4000000000003001", "4000000000003019"


def _authorize(
    key: str,
    card: str = APPROVE,
    amount: int = 1000,
    *,
    capture: bool = False,
    reference: str = "pi_1",
) -> AuthorizeRequest:
    return AuthorizeRequest(key, amount, "USD", card, capture, reference)


def test_an_approved_authorization_names_the_processors_id(
    processor: HttpProcessor, audit: Audit
) -> None:
    result = processor.authorize(_authorize("att_1", amount=1250))

    [recorded] = audit.authorizations("pi_1")
    assert result == ProcessorResult(
        ProcessorOutcome.APPROVED,
        "sim_a",
        reference=recorded["id"],
        amount=1250,
        latency_us=result.latency_us,
    )
    assert result.latency_us > 0
    assert (recorded["idempotency_key"], recorded["status"]) == ("att_1", "authorized")


def test_authorize_with_capture_is_approved_for_the_captured_amount(
    processor: HttpProcessor, audit: Audit
) -> None:
    result = processor.authorize(_authorize("att_1", amount=800, capture=True))

    assert (result.outcome, result.amount) == (ProcessorOutcome.APPROVED, 800)
    assert audit.authorizations("pi_1")[0]["captured_amount"] == 800


@pytest.mark.parametrize(
    ("card", "code", "do_not_retry"),
    [
        ("4000000000000002", "card_declined", False),
        ("4000000000009995", "insufficient_funds", False),
        ("4000000000000069", "expired_card", True),
        ("4100000000000019", "stolen_card", True),
    ],
)
def test_a_decline_carries_its_code_and_whether_to_try_again(
    processor: HttpProcessor, audit: Audit, card: str, code: str, do_not_retry: bool
) -> None:
    result = processor.authorize(_authorize("att_1", card))

    assert (result.outcome, result.decline_code, result.do_not_retry, result.reference) == (
        ProcessorOutcome.DECLINED,
        code,
        do_not_retry,
        None,
    )
    assert audit.calls() == [("att_1", 402)]  # a decline is an answer: never retried


def test_capture_refund_and_void_and_their_refusals(processor: HttpProcessor) -> None:
    auth = processor.authorize(_authorize("att_1", amount=1000)).reference
    assert auth is not None

    captured = processor.capture(CaptureRequest("cap_1", auth, 700))
    twice = processor.capture(CaptureRequest("cap_2", auth, 100))
    refunded = processor.refund(RefundRequest("re_1", auth, 300))
    too_much = processor.refund(RefundRequest("re_2", auth, 401))
    other = processor.authorize(_authorize("att_2", reference="pi_2")).reference
    assert other is not None
    voided = processor.void(VoidRequest("void_1", other))

    assert (captured.outcome, captured.reference, captured.amount) == ("approved", auth, 700)
    assert (twice.outcome, twice.decline_code, twice.do_not_retry) == (
        "declined",
        "already_captured",
        True,
    )
    assert refunded.outcome == "approved"
    assert re.match(r"^re_[0-9a-f]{16}$", refunded.reference or "")
    assert refunded.amount == 300
    assert (too_much.outcome, too_much.decline_code) == ("declined", "amount_exceeds_captured")
    assert (voided.outcome, voided.reference, voided.amount) == ("approved", other, 1000)


def test_a_5xx_is_retried_with_the_same_key_and_charges_once(
    processor: HttpProcessor, audit: Audit, sleeps: list[float]
) -> None:
    audit.faults(down=True)
    # The processor recovers while the connector waits to retry.
    processor._sleep = lambda seconds: (sleeps.append(seconds), audit.faults(down=False))  # type: ignore[assignment]

    result = processor.authorize(_authorize("att_1"))

    assert result.outcome is ProcessorOutcome.APPROVED
    assert audit.calls() == [("att_1", 503), ("att_1", 201)]
    assert len(audit.authorizations("pi_1")) == 1
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.05


def test_5xx_until_the_attempts_run_out_is_not_processed(
    processor: HttpProcessor, audit: Audit, sleeps: list[float]
) -> None:
    audit.faults(down=True)

    result = processor.authorize(_authorize("att_1"))

    assert result.outcome is ProcessorOutcome.NOT_PROCESSED
    assert result.detail == "HTTP 503 service_unavailable after 3 attempt(s)"
    assert audit.calls() == [("att_1", 503)] * 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.05
    assert 0 <= sleeps[1] <= 0.1
    audit.faults(down=False)
    assert audit.authorizations("pi_1") == []


def test_the_processing_error_card_is_not_processed_after_retries(
    processor: HttpProcessor, audit: Audit
) -> None:
    result = processor.authorize(_authorize("att_1", "4000000000000119"))

    assert result.outcome is ProcessorOutcome.NOT_PROCESSED
    assert audit.calls() == [("att_1", 500)] * 3
    assert audit.authorizations("pi_1") == []


def test_a_timeout_after_sending_is_unknown_and_lookup_then_finds_nothing(
    processor: HttpProcessor, audit: Audit
) -> None:
    result = processor.authorize(_authorize("att_1", TIMEOUT_CARD))

    assert result.outcome is ProcessorOutcome.UNKNOWN
    assert result.latency_us >= TIMEOUT * 1_000_000
    assert "ReadTimeout" in (result.detail or "")
    assert processor.lookup("att_1") == LookupResult(found=True, pending=True)
    deadline = time.monotonic() + 5
    while (found := processor.lookup("att_1")).pending:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert found == LookupResult(found=False)
    assert audit.calls() == [("att_1", 504)]  # sent once: a timeout is never retried
    assert audit.authorizations("pi_1") == []


def test_a_late_success_is_unknown_and_lookup_finds_it_approved(
    processor: HttpProcessor, audit: Audit
) -> None:
    result = processor.authorize(_authorize("att_1", LATE, amount=450))
    found = processor.lookup("att_1")

    assert result.outcome is ProcessorOutcome.UNKNOWN
    [recorded] = audit.authorizations("pi_1")
    assert found.found
    assert not found.pending
    assert found.result is not None
    assert (found.result.outcome, found.result.reference, found.result.amount) == (
        ProcessorOutcome.APPROVED,
        recorded["id"],
        450,
    )


def test_lookup_of_a_declined_request_and_of_one_never_sent(processor: HttpProcessor) -> None:
    processor.authorize(_authorize("att_1", "4000000000000069"))

    declined = processor.lookup("att_1")
    never = processor.lookup("att_never")

    assert declined.result is not None
    assert (
        declined.result.outcome,
        declined.result.decline_code,
        declined.result.do_not_retry,
    ) == (
        ProcessorOutcome.DECLINED,
        "expired_card",
        True,
    )
    assert never == LookupResult(found=False)


def test_a_refused_connection_is_not_processed_quickly(
    make_processor: Callable[..., HttpProcessor],
) -> None:
    nobody = make_processor(f"http://127.0.0.1:{free_port()}", sleep=time.sleep)

    started = time.monotonic()
    result = nobody.authorize(_authorize("att_1"))
    lookup = nobody.lookup("att_1")

    assert time.monotonic() - started < 1.0
    assert result.outcome is ProcessorOutcome.NOT_PROCESSED
    assert (result.detail or "").startswith("ConnectError")
    assert (result.detail or "").endswith("after 3 attempt(s)")
    # Unreachable, the processor cannot say what happened: ask again later.
    assert (lookup.found, lookup.pending) == (True, True)
    assert lookup.result is not None
    assert lookup.result.outcome is ProcessorOutcome.UNKNOWN


def test_a_request_still_in_flight_is_retried_then_left_unknown(
    processor: HttpProcessor, audit: Audit, simulator: SimulatorThread
) -> None:
    body = {
        "amount": 1000,
        "currency": "USD",
        "card_number": TIMEOUT_CARD,
        "capture": False,
        "reference": "pi_1",
    }
    first = threading.Thread(
        target=lambda: httpx.post(
            f"{simulator.base_url}/v1/authorizations",
            json=body,
            headers={"Idempotency-Key": "att_1"},
            timeout=5,
        )
    )
    first.start()
    deadline = time.monotonic() + 2
    while processor.lookup("att_1") != LookupResult(found=True, pending=True):
        assert time.monotonic() < deadline
        time.sleep(0.01)

    result = processor.authorize(_authorize("att_1", TIMEOUT_CARD))
    first.join()

    assert result.outcome is ProcessorOutcome.UNKNOWN
    assert result.detail == "HTTP 409 request_in_flight after 3 attempt(s)"
    assert audit.calls() == [("att_1", 409)] * 3 + [("att_1", 504)]


def test_the_api_key_is_sent_and_a_wrong_one_is_not_processed(
    make_simulator: Callable[..., SimulatorThread],
    make_processor: Callable[..., HttpProcessor],
    make_audit: Callable[..., Audit],
) -> None:
    sim = make_simulator(api_key="sk_sim_right")
    right = make_processor(sim.base_url, api_key="sk_sim_right")
    wrong = make_processor(sim.base_url, api_key="sk_sim_wrong")

    refused = wrong.authorize(_authorize("att_1"))
    approved = right.authorize(_authorize("att_2"))

    assert refused.outcome is ProcessorOutcome.NOT_PROCESSED
    assert refused.detail == "HTTP 401 invalid_api_key: our credentials were refused"
    assert approved.outcome is ProcessorOutcome.APPROVED
    assert "sk_sim" not in repr(right)
    audit = make_audit(sim, "sk_sim_right")
    assert [a["idempotency_key"] for a in audit.authorizations("pi_1")] == ["att_2"]


def test_latency_is_the_whole_call_on_the_injected_clock(
    make_processor: Callable[..., HttpProcessor], simulator: SimulatorThread
) -> None:
    ticks = iter([1_000_000, 1_250_000])
    timed = make_processor(simulator.base_url, clock=lambda: next(ticks))

    result = timed.authorize(_authorize("att_1"))

    assert (result.outcome, result.latency_us) == (ProcessorOutcome.APPROVED, 250_000)


def test_an_open_circuit_sends_nothing_until_a_trial_succeeds(
    make_processor: Callable[..., HttpProcessor], simulator: SimulatorThread, audit: Audit
) -> None:
    now = [1_000_000]
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=lambda: now[0])
    guarded = make_processor(simulator.base_url, breaker=breaker, max_attempts=1)
    audit.faults(down=True)

    failures = [guarded.authorize(_authorize(f"att_{n}")) for n in (1, 2)]
    refused = guarded.authorize(_authorize("att_3"))

    assert [f.outcome for f in failures] == [ProcessorOutcome.NOT_PROCESSED] * 2
    assert (refused.outcome, refused.detail) == (
        ProcessorOutcome.NOT_PROCESSED,
        "circuit open: not sent",
    )
    assert audit.calls() == [("att_1", 503), ("att_2", 503)]  # att_3 never left
    assert not guarded.available()

    audit.faults(down=False)
    now[0] += 10_000_000
    assert guarded.available()
    trial = guarded.authorize(_authorize("att_3"))

    assert trial.outcome is ProcessorOutcome.APPROVED
    assert breaker.state is BreakerState.CLOSED
    assert audit.calls()[-1] == ("att_3", 201)
