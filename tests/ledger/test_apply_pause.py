"""The applier's pauses: called on a fixed rule, and invisible in what the batch produces.

``apply_batch`` calls ``BatchState.pause`` so another thread may run mid-batch. The rule, read
off the loop: before each unit, the unit's size is added to a running count, and once the count
reaches ``PAUSE_EVERY`` (128) the applier pauses and the count starts again from zero. An
independent unit larger than ``PAUSE_EVERY`` is applied in slices of ``PAUSE_EVERY`` requests
with a pause after each slice (the running count is not touched); an atomic unit is never
sliced. Every story applies the same units twice, on identical fresh states built as
``bench/apply_only.py`` builds them (pure, no database): once with a counting pause, once with
``pause=None``; results, rows, balances and the chain head must come out the same.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from settle.ledger.apply import (
    PAUSE_EVERY,
    AccountState,
    BatchState,
    ChainHead,
    TenantState,
    Unit,
    apply_batch,
)
from settle.ledger.errors import ResultCode
from settle.ledger.requests import TransferSpec

R = ResultCode
NOW = 1_700_000_000_000_000
_ids = random.Random(20240601)
TENANT = uuid.UUID(int=_ids.getrandbits(128), version=4)
TREASURY = uuid.UUID(int=_ids.getrandbits(128), version=4)
WALLETS = [uuid.UUID(int=_ids.getrandbits(128), version=4) for _ in range(20)]
WALLET_FUNDS = 5_000


def _as_bytes(value: uuid.UUID) -> bytes:
    return value.bytes


def _fresh_state(pause: Callable[[], None] | None = None) -> BatchState:
    """A treasury that may go as far negative as it likes, and twenty wallets of 50.00 each."""
    t = TenantState(TENANT, ChainHead(0, bytes(32), 0, 0), TENANT.bytes)
    t.accounts[TREASURY.int] = AccountState(
        TENANT, TREASURY, "USD", "active", False, False, None, 0, 0, 0, 0, 0, TREASURY.bytes
    )
    for wallet in WALLETS:
        t.accounts[wallet.int] = AccountState(
            TENANT, wallet, "USD", "active", True, False, None, 0, WALLET_FUNDS, 0, 0, 0,
            wallet.bytes,
        )  # fmt: skip
    return BatchState(NOW, {TENANT: t}, _as_bytes, pause=pause)


def _transfer(rng: random.Random, debit: uuid.UUID, credit: uuid.UUID, amount: int) -> TransferSpec:
    return TransferSpec.shorthand(
        TENANT,
        uuid.UUID(int=rng.getrandbits(128), version=4),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency="USD",
    )


def _wallet_to_wallet(count: int, seed: int) -> list[TransferSpec]:
    """Random payments between wallets: most go through, some overdraw, some pay themselves."""
    rng = random.Random(seed)
    return [
        _transfer(rng, rng.choice(WALLETS), rng.choice(WALLETS), rng.randrange(1, 1000))
        for _ in range(count)
    ]


def _payouts(count: int, seed: int) -> list[TransferSpec]:
    """Treasury payouts to wallets: every one goes through."""
    rng = random.Random(seed)
    return [
        _transfer(rng, TREASURY, rng.choice(WALLETS), rng.randrange(1, 1000)) for _ in range(count)
    ]


def _everything(state: BatchState) -> dict[str, Any]:
    """What the batch changed in the state: every account's counters and the chain head."""
    t = state.tenants[TENANT]
    return {
        "accounts": sorted(
            (a.id, a.dp, a.cp, a.dpe, a.cpe, a.last_seq) for a in t.accounts.values()
        ),
        "head": (t.head.last_seq, t.head.last_hash, t.head.last_event_seq),
    }


def _apply_both_ways(
    units: Sequence[Unit],
) -> tuple[list[int], dict[str, Any], dict[str, Any]]:
    """The chain head's last seq at each pause, and what came out with and without pauses."""
    pauses: list[int] = []
    paused_state = _fresh_state(lambda: pauses.append(paused_state.tenants[TENANT].head.last_seq))
    plain_state = _fresh_state()
    paused_outcome = apply_batch(paused_state, units)
    plain_outcome = apply_batch(plain_state, units)

    def produced(state: BatchState, outcome: Any) -> dict[str, Any]:
        return {
            "results": outcome.results,
            "transfers": outcome.transfers,
            "postings": outcome.postings,
            "events": outcome.events,
            "holds_added": outcome.holds_added,
            "holds_released": outcome.holds_released,
            "balances": outcome.balances,
            "heads": outcome.heads,
            **_everything(state),
        }

    return pauses, produced(paused_state, paused_outcome), produced(plain_state, plain_outcome)


def _codes(results: list[list[Any]]) -> set[ResultCode]:
    return {result.code for unit in results for result in unit}


def test_pause_every_is_one_hundred_twenty_eight_requests() -> None:
    assert PAUSE_EVERY == 128


def test_one_unit_of_a_thousand_transfers_pauses_nine_times_and_lands_as_without_pauses() -> None:
    units = [Unit(_wallet_to_wallet(1000, seed=1))]

    pauses, paused, plain = _apply_both_ways(units)

    # One pause on entering the unit (1,000 >= 128), then one after each of its eight slices
    # (seven of 128 and one of 104).
    assert len(pauses) == 9
    assert paused == plain
    assert _codes(paused["results"]) == {R.OK, R.INSUFFICIENT_FUNDS, R.INVALID_POSTINGS}
    ok = sum(result.code is R.OK for result in paused["results"][0])
    assert paused["head"][0] == ok
    assert len(paused["transfers"]) == ok
    assert len(paused["postings"]) == 2 * ok
    assert len(paused["events"]) == ok
    assert paused["head"][1] != bytes(32)


def test_a_big_unit_pauses_before_it_starts_and_after_every_slice_of_128() -> None:
    units = [Unit(_payouts(1000, seed=2))]

    pauses, paused, plain = _apply_both_ways(units)

    assert pauses == [0, 128, 256, 384, 512, 640, 768, 896, 1000]
    assert paused == plain
    assert _codes(paused["results"]) == {R.OK}


def test_twenty_units_of_fifty_pause_after_every_third_unit_starts() -> None:
    units = [Unit(_wallet_to_wallet(50, seed=100 + i)) for i in range(20)]

    pauses, paused, plain = _apply_both_ways(units)

    # The running count reaches 150 on entering units 3, 6, 9, 12, 15 and 18; 100 are left over.
    assert len(pauses) == 6
    assert paused == plain
    assert _codes(paused["results"]) == {R.OK, R.INSUFFICIENT_FUNDS, R.INVALID_POSTINGS}


def test_small_units_and_atomic_groups_pause_on_the_running_count_alone() -> None:
    overdraft = _transfer(random.Random(3), WALLETS[0], TREASURY, 10**12)
    doomed = [*_payouts(99, seed=4), overdraft]
    units = [
        *(Unit(_wallet_to_wallet(50, seed=200 + i)) for i in range(8)),
        Unit(_payouts(300, seed=5), atomic=True),
        Unit(doomed, atomic=True),
        Unit(_wallet_to_wallet(40, seed=6)),
    ]

    pauses, paused, plain = _apply_both_ways(units)

    # Eight units of 50: pauses entering the 3rd and 6th, 100 left over. The atomic 300 takes
    # the count to 400 and pauses once, unsliced. The doomed group brings it to 100, the last
    # 40 to 140: one more pause.
    assert len(pauses) == 4
    assert paused == plain
    assert [result.code for result in paused["results"][8]] == [R.OK] * 300
    assert [result.code for result in paused["results"][9]] == [
        *[R.LINKED_TRANSFER_FAILED] * 99,
        R.INSUFFICIENT_FUNDS,
    ]
    transfer_ids = {row[1] for row in paused["transfers"]}
    assert transfer_ids.isdisjoint(request.id.bytes for request in doomed)


def test_one_atomic_unit_of_a_thousand_pauses_once_before_it_starts() -> None:
    units = [Unit(_payouts(1000, seed=7), atomic=True)]

    pauses, paused, plain = _apply_both_ways(units)

    assert pauses == [0]
    assert paused == plain
    assert paused["head"][0] == 1000


def test_a_unit_one_short_of_pause_every_never_pauses() -> None:
    units = [Unit(_wallet_to_wallet(PAUSE_EVERY - 1, seed=8))]

    pauses, paused, plain = _apply_both_ways(units)

    assert pauses == []
    assert paused == plain


def test_a_unit_of_exactly_pause_every_pauses_once_and_is_not_sliced() -> None:
    units = [Unit(_payouts(PAUSE_EVERY, seed=9))]

    pauses, paused, plain = _apply_both_ways(units)

    assert pauses == [0]
    assert paused == plain


def test_a_unit_one_over_pause_every_pauses_on_entry_and_after_both_slices() -> None:
    units = [Unit(_payouts(PAUSE_EVERY + 1, seed=10))]

    pauses, paused, plain = _apply_both_ways(units)

    assert pauses == [0, 128, 129]
    assert paused == plain
