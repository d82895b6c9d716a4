"""The simulator's books as a property: whatever is asked, no money appears from nowhere."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from settle.simulator.state import AuthorizationStatus, Refusal, SimulatorState

_ACTIONS = st.lists(
    st.tuples(st.sampled_from(["capture", "void", "refund"]), st.integers(1, 1200)),
    max_size=12,
)


@given(amount=st.integers(1, 1000), capture=st.booleans(), actions=_ACTIONS)
def test_captured_never_exceeds_authorized_nor_refunded_captured(
    amount: int, capture: bool, actions: list[tuple[str, int]]
) -> None:
    state = SimulatorState(lambda: 0, random.Random(1))
    auth = state.authorize(
        "k",
        amount=amount,
        currency="USD",
        card_number="4242424242424242",
        capture=capture,
        reference="pi",
    )
    refunded, statuses = 0, []
    for number, (action, value) in enumerate(actions):
        before = state.authorization(auth.id)
        try:
            if action == "capture":
                state.capture(auth.id, value)
            elif action == "void":
                state.void(auth.id)
            else:
                state.refund(f"re-{number}", auth.id, value)
                refunded += value
        except Refusal as refusal:
            statuses.append(refusal.status)
            assert state.authorization(auth.id) == before  # a refusal changes nothing
        now = state.authorization(auth.id)
        assert 0 <= now.refunded_amount <= now.captured_amount <= now.amount
        assert now.refunded_amount == refunded == sum(r.amount for r in state.refunds(auth.id))
        if now.status is not AuthorizationStatus.CAPTURED:
            assert now.captured_amount == now.refunded_amount == 0
    assert set(statuses) <= {409, 422}
