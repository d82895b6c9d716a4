"""The retry schedule and the delivery state machine, as pure functions."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settle.webhooks.errors import InvalidDeliveryTransitionError
from settle.webhooks.model import Delivery, DeliveryStatus, event_matches
from settle.webhooks.schedule import (
    MAX_ATTEMPTS,
    failing_too_long,
    next_attempt_at,
    retry_delay,
)

S = 1_000_000
NOW = 1_796_000_000 * S


def test_retries_wait_5s_5min_30min_2h_5h_10h_14h_20h_24h_then_give_up() -> None:
    delays = [retry_delay(n, lambda: 0.5) for n in range(1, MAX_ATTEMPTS + 1)]
    hours = 3600 * S
    assert delays == [
        5 * S, 300 * S, 1800 * S, 2 * hours, 5 * hours, 10 * hours, 14 * hours, 20 * hours,
        24 * hours, None,
    ]  # fmt: skip
    assert MAX_ATTEMPTS == 10
    assert next_attempt_at(1, NOW, lambda: 0.5) == NOW + 5 * S
    assert next_attempt_at(10, NOW, lambda: 0.5) is None
    with pytest.raises(ValueError, match="at least one attempt"):
        retry_delay(0, lambda: 0.5)


@given(attempt=st.integers(1, 9), draw=st.floats(0.0, 1.0, exclude_max=True))
def test_jitter_keeps_each_delay_within_ten_percent(attempt: int, draw: float) -> None:
    base = retry_delay(attempt, lambda: 0.5)
    delay = retry_delay(attempt, lambda: draw)
    assert base is not None
    assert delay is not None
    assert 0.9 * base <= delay <= 1.1 * base


def test_jitter_spreads_the_first_retry_between_4_5_and_5_5_seconds() -> None:
    assert retry_delay(1, lambda: 0.0) == 4_500_000
    assert retry_delay(1, lambda: 0.999999) == 5_499_999


def test_an_endpoint_is_given_up_on_after_five_days_of_failures() -> None:
    day = 86_400 * S
    assert failing_too_long(None, NOW) is False
    assert failing_too_long(NOW - 5 * day + 1, NOW) is False
    assert failing_too_long(NOW - 5 * day, NOW) is True


def test_event_filters_match_all_types_one_type_or_a_prefix() -> None:
    assert event_matches(["*"], "account.created") is True
    assert event_matches(["account.created"], "account.created") is True
    assert event_matches(["account.created"], "account.updated") is False
    assert event_matches(["payment_intent.*"], "payment_intent.succeeded") is True
    assert event_matches(["payment_intent.*"], "payment_intentional.x") is False
    assert event_matches(["payment_intent.*"], "payment_intent") is False
    assert event_matches(["refund.*", "account.frozen"], "account.frozen") is True


ALLOWED = {
    DeliveryStatus.PENDING: set(DeliveryStatus),
    DeliveryStatus.SUCCEEDED: {DeliveryStatus.PENDING},
    DeliveryStatus.FAILED: {DeliveryStatus.PENDING},
    DeliveryStatus.CANCELLED: {DeliveryStatus.PENDING},
}


def _delivery(status: DeliveryStatus) -> Delivery:
    return Delivery(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 1, "account.created", status, 0,
                    NOW, "worker", NOW, NOW)  # fmt: skip


@given(st.lists(st.sampled_from(list(DeliveryStatus)), max_size=30))
def test_a_delivery_moves_only_along_its_transition_table(targets: list[DeliveryStatus]) -> None:
    delivery = _delivery(DeliveryStatus.PENDING)
    for target in targets:
        if target in ALLOWED[delivery.status]:
            moved = delivery.moved_to(target, now=NOW + 1, next_attempt_at=None)
            assert (moved.status, moved.lease_owner, moved.updated_at) == (target, None, NOW + 1)
            delivery = moved
        else:
            with pytest.raises(InvalidDeliveryTransitionError) as refused:
                delivery.moved_to(target, now=NOW + 1, next_attempt_at=None)
            assert refused.value.detail == (
                f"a delivery cannot go from {delivery.status.value} to {target.value}"
            )
            assert refused.value.code == "invalid_delivery_transition"
