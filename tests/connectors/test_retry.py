"""Which failures are retried, and how long the connector waits first."""

from __future__ import annotations

import random

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from settle.connectors import Delivery, backoff_delay, classify_error, is_retryable_status


@given(attempt=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_backoff_is_jittered_below_a_capped_doubling(attempt: int, seed: int) -> None:
    delay = backoff_delay(attempt, initial=0.05, cap=1.0, rng=random.Random(seed))

    assert 0 <= delay <= min(1.0, 0.05 * 2 ** (attempt - 1))


def test_backoff_counts_retries_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(0, initial=0.05, cap=1.0, rng=random.Random(1))


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (500, "processing_error", True),
        (503, None, True),
        (504, "gateway_timeout", True),
        (409, "request_in_flight", True),
        (409, "already_captured", False),
        (402, None, False),
        (422, "idempotency_key_reused", False),
        (401, "invalid_api_key", False),
        (201, None, False),
    ],
)
def test_only_5xx_and_in_flight_answers_are_retried(
    status: int, code: str | None, retryable: bool
) -> None:
    assert is_retryable_status(status, code) is retryable


@pytest.mark.parametrize(
    ("error", "delivery"),
    [
        (httpx.ConnectError("refused"), Delivery.NOT_SENT),
        (httpx.ConnectTimeout("slow connect"), Delivery.NOT_SENT),
        (httpx.PoolTimeout("no connection free"), Delivery.NOT_SENT),
        (httpx.ReadTimeout("no answer"), Delivery.MAYBE_SENT),
        (httpx.WriteTimeout("half sent"), Delivery.MAYBE_SENT),
        (httpx.RemoteProtocolError("closed mid-answer"), Delivery.MAYBE_SENT),
        (httpx.ReadError("reset"), Delivery.MAYBE_SENT),
    ],
)
def test_only_errors_before_sending_leave_a_request_unsent(
    error: httpx.TransportError, delivery: Delivery
) -> None:
    assert classify_error(error) is delivery
