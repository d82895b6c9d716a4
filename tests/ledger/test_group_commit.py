"""The group-commit writer: many callers, few transactions, and answers that stay exact.

Every story runs a real ``LedgerStore`` (or a real ``GroupCommitEngine`` over the real store
committer) on SQLite and on PostgreSQL. Where a story needs callers to pile up, another
transaction holds the tenant's chain head — the same lock any other writer would take — so
batching is certain rather than likely.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from settle.ledger.errors import ResultCode
from settle.ledger.group_commit import GroupCommitEngine
from settle.ledger.model import Account, AccountStatus, AccountType, Balances, NewAccount
from settle.ledger.requests import PostPending, TransferRequest, TransferSpec, VoidPending
from settle.ledger.service import open_account, update_account
from settle.store import tables
from settle.store.ledger_batch import SqlBatchCommitter
from settle.store.ledger_store import LedgerStore
from settle.store.ledger_verify import verify_ledger

if TYPE_CHECKING:
    from collections.abc import Sequence

    from settle.ledger.apply import TransferResult

R = ResultCode
H = tables.ledger_chain_heads
T = tables.ledger_transfers


def _open(
    store: LedgerStore, tenant: uuid.UUID, code: str, kind: AccountType, **f: Any
) -> uuid.UUID:
    return open_account(store.uow(), NewAccount(tenant, code, code.title(), kind, "USD", **f)).id


def _wallet(store: LedgerStore, tenant: uuid.UUID, code: str) -> uuid.UUID:
    return _open(store, tenant, code, AccountType.LIABILITY, debits_must_not_exceed_credits=True)


def _account(store: LedgerStore, tenant: uuid.UUID, account_id: uuid.UUID) -> Account:
    with store.read() as repo:
        account = repo.get_account(tenant, account_id)
    assert account is not None
    return account


def _pay(tenant: uuid.UUID, debit: uuid.UUID, credit: uuid.UUID, amount: int) -> TransferSpec:
    return TransferSpec.shorthand(
        tenant, uuid.uuid4(), debit_account_id=debit, credit_account_id=credit,
        amount=amount, currency="USD",
    )  # fmt: skip


def _codes(results: Sequence[TransferResult]) -> list[ResultCode]:
    return [r.code for r in results]


def _transfer_count(store: LedgerStore, tenant: uuid.UUID) -> int:
    with store.read() as repo:
        return int(
            repo.conn.execute(
                sa.select(sa.func.count()).select_from(T).where(T.c.tenant_id == tenant)
            ).scalar_one()
        )


@contextmanager
def _ledger_held_by_another_transaction(store: LedgerStore, tenant: uuid.UUID) -> Iterator[None]:
    """Hold the tenant's chain head (SQLite: the write lock) until the block ends."""
    with (
        store.db.connect().execution_options(sqlite_begin="IMMEDIATE") as conn,
        conn.begin(),
    ):
        assert conn.execute(
            sa.select(H.c.last_seq).where(H.c.tenant_id == tenant).with_for_update()
        ).first() is not None  # fmt: skip
        yield


def _wait_for_lock_waiters(store: LedgerStore, count: int) -> None:
    """On PostgreSQL, wait until ``count`` sessions wait for a lock; SQLite has no such view."""
    if store.db.dialect.name != "postgresql":
        time.sleep(0.2)
        return
    deadline = time.monotonic() + 10
    with store.db.connect() as conn:
        while True:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            conn.rollback()
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"{waiting} of {count} sessions wait for a lock"
            time.sleep(0.01)


@pytest.fixture
def pipelined(db_url: str) -> Iterator[LedgerStore]:
    """The store with the speculative pipeline on, whatever the database's default."""
    store = LedgerStore(db_url, pipeline=True)
    yield store
    store.close()


# ---- splitting and refusing --------------------------------------------------------------------


def test_a_submission_larger_than_a_batch_is_split_and_answered_in_order(
    db_url: str, tenant: uuid.UUID
) -> None:
    store = LedgerStore(db_url, max_batch=100)
    try:
        bank = _open(store, tenant, "bank", AccountType.ASSET)
        shop = _open(store, tenant, "shop", AccountType.LIABILITY)
        wallet = _wallet(store, tenant, "wallet")
        # Every third request tops the wallet up by 100; the others spend 60 from it, so the
        # wallet runs dry now and then. Request 150 replays request 10 (in an earlier chunk) and
        # request 201 names an account that does not exist.
        requests: list[TransferRequest] = []
        expected: list[ResultCode] = []
        balance = top_ups = spends = 0
        for i in range(250):
            if i == 150:
                requests.append(requests[10])
                expected.append(R.EXISTS)
            elif i == 201:
                requests.append(_pay(tenant, wallet, uuid.uuid4(), 60))
                expected.append(R.ACCOUNT_NOT_FOUND)
            elif i % 3 == 0:
                requests.append(_pay(tenant, bank, wallet, 100))
                expected.append(R.OK)
                balance += 100
                top_ups += 1
            elif balance >= 60:
                requests.append(_pay(tenant, wallet, shop, 60))
                expected.append(R.OK)
                balance -= 60
                spends += 1
            else:
                requests.append(_pay(tenant, wallet, shop, 60))
                expected.append(R.INSUFFICIENT_FUNDS)

        results = store.submit(requests)

        assert [r.id for r in results] == [r.id for r in requests]
        assert _codes(results) == expected
        committed = top_ups + spends
        assert expected.count(R.OK) == committed
        assert expected.count(R.INSUFFICIENT_FUNDS) > 0
        assert [r.seq for r in results if r.code is R.OK] == list(range(1, committed + 1))
        assert all(r.seq is None for r in results if r.code is not R.OK)
        # Three chunks of 100, 100 and 50, each its own batch: none larger than max_batch.
        assert list(store.writer.stats.sizes) == [100, 100, 50]
        assert store.writer.stats.transfers == 250
        assert _account(store, tenant, wallet).posted_balance == balance
        assert _account(store, tenant, shop).posted_balance == spends * 60
        assert _account(store, tenant, bank).posted_balance == top_ups * 100
        assert _transfer_count(store, tenant) == committed
        assert verify_ledger(store.db, tenant).ok
    finally:
        store.close()


def test_an_atomic_group_larger_than_a_batch_is_refused_before_anything_moves(
    db_url: str, tenant: uuid.UUID
) -> None:
    store = LedgerStore(db_url, max_batch=100)
    try:
        bank = _open(store, tenant, "bank", AccountType.ASSET)
        wallet = _open(store, tenant, "wallet", AccountType.LIABILITY)
        group = [_pay(tenant, bank, wallet, 1) for _ in range(101)]

        with pytest.raises(ValueError, match="at most 100"):
            store.submit(group, atomic=True)

        assert _account(store, tenant, wallet).balances == Balances()
        assert _transfer_count(store, tenant) == 0
        assert store.writer.stats.batches == 0
        # A group that fits goes through whole.
        assert _codes(store.submit(group[:100], atomic=True)) == [R.OK] * 100
        assert _account(store, tenant, wallet).posted_balance == 100
        assert store.writer.stats.sizes[-1] == 100
    finally:
        store.close()


def test_an_empty_submission_is_answered_without_a_batch(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    assert store.submit([]) == []
    assert store.submit([], atomic=True) == []
    assert store.writer.submit_future([]).result(timeout=5) == []
    assert store.writer.stats.batches == 0
    assert _transfer_count(store, tenant) == 0


def test_closing_the_store_commits_what_is_queued_then_refuses_more(
    db_url: str, tenant: uuid.UUID
) -> None:
    store = LedgerStore(db_url)
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    wallet = _open(store, tenant, "wallet", AccountType.LIABILITY)
    with _ledger_held_by_another_transaction(store, tenant):
        queued = [store.writer.submit_future([_pay(tenant, bank, wallet, 10)]) for _ in range(5)]
        assert not any(f.done() for f in queued)
        closing = threading.Thread(target=store.close)
        closing.start()
    closing.join(timeout=30)
    assert not closing.is_alive()

    assert [_codes(f.result(timeout=0)) for f in queued] == [[R.OK]] * 5
    with pytest.raises(RuntimeError, match="closed"):
        store.submit([_pay(tenant, bank, wallet, 10)])
    with pytest.raises(RuntimeError, match="closed"):
        store.writer.submit_future([_pay(tenant, bank, wallet, 10)])
    reopened = LedgerStore(db_url)
    try:
        assert _account(reopened, tenant, wallet).posted_balance == 50
        assert _transfer_count(reopened, tenant) == 5
    finally:
        reopened.close()


def test_a_writer_without_the_pipeline_commits_each_batch_in_turn(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    wallet = _wallet(store, tenant, "wallet")
    plain = GroupCommitEngine(SqlBatchCommitter(store.db), pipeline=False)
    try:
        top_up = _pay(tenant, bank, wallet, 500)
        hold = TransferSpec.shorthand(
            tenant, uuid.uuid4(), debit_account_id=wallet, credit_account_id=shop,
            amount=200, currency="USD", pending=True,
        )  # fmt: skip
        assert _codes(plain.submit([top_up, hold, _pay(tenant, wallet, shop, 301)])) == [
            R.OK, R.OK, R.INSUFFICIENT_FUNDS,
        ]  # fmt: skip
        assert _codes(plain.submit([top_up])) == [R.EXISTS]
        # The store's own (pipelined) writer and this one take turns on the same accounts.
        assert _codes(store.submit([_pay(tenant, wallet, shop, 300)])) == [R.OK]
        assert _codes(plain.submit([_pay(tenant, wallet, shop, 1)])) == [R.INSUFFICIENT_FUNDS]
        release_and_spend: list[TransferRequest] = [
            VoidPending(tenant, uuid.uuid4(), hold.id),
            _pay(tenant, wallet, shop, 200),
        ]
        assert _codes(plain.submit(release_and_spend, atomic=True)) == [R.OK, R.OK]
        assert _codes(store.submit([PostPending(tenant, uuid.uuid4(), hold.id)])) == [
            R.PENDING_ALREADY_VOIDED
        ]
        update_account(store.uow(), tenant, wallet, status=AccountStatus.FROZEN)
        assert _codes(plain.submit([_pay(tenant, bank, wallet, 1)])) == [R.ACCOUNT_FROZEN]

        assert plain.stats.batches == 5
        assert list(plain.stats.sizes) == [3, 1, 1, 2, 1]
        assert _account(store, tenant, wallet).balances == Balances(
            debits_posted=500, credits_posted=500
        )
        assert _account(store, tenant, shop).posted_balance == 500
        assert verify_ledger(store.db, tenant).ok
    finally:
        plain.close()
    with pytest.raises(RuntimeError, match="closed"):
        plain.submit([_pay(tenant, bank, shop, 1)])


@pytest.mark.parametrize("max_batch", [0, 8191])
def test_a_writer_refuses_a_batch_size_it_cannot_commit(store: LedgerStore, max_batch: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 8190"):
        GroupCommitEngine(SqlBatchCommitter(store.db), max_batch=max_batch)


# ---- batching under concurrency ----------------------------------------------------------------


def test_thirty_two_callers_at_once_share_a_few_transactions(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    wallets = [_wallet(store, tenant, f"wallet-{i}") for i in range(32)]
    # Each customer tops up 1,000, buys for 400, then tries to buy for 700 more.
    submissions = [
        [_pay(tenant, bank, w, 1_000), _pay(tenant, w, shop, 400), _pay(tenant, w, shop, 700)]
        for w in wallets
    ]
    futures: list[Future[list[TransferResult]] | None] = [None] * 32
    start = threading.Barrier(32)

    def caller(i: int) -> None:
        start.wait()
        futures[i] = store.writer.submit_future(submissions[i])

    with _ledger_held_by_another_transaction(store, tenant):
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert all(f is not None and not f.done() for f in futures)

    results = [f.result(timeout=60) for f in futures if f is not None]
    assert len(results) == 32
    for submitted, answered in zip(submissions, results, strict=True):
        assert [r.id for r in answered] == [s.id for s in submitted]
        assert _codes(answered) == [R.OK, R.OK, R.INSUFFICIENT_FUNDS]
    seqs = sorted(r.seq for answered in results for r in answered if r.seq is not None)
    assert seqs == list(range(1, 65))
    stats = store.writer.stats
    assert stats.batches < 32
    assert stats.batches == len(stats.sizes)
    assert sum(stats.sizes) == stats.transfers == 96
    assert [_account(store, tenant, w).posted_balance for w in wallets] == [600] * 32
    assert _account(store, tenant, shop).posted_balance == 32 * 400
    assert _account(store, tenant, bank).posted_balance == 32 * 1_000
    assert verify_ledger(store.db, tenant).ok


@pytest.mark.parametrize(
    "pipelines", [(True, True), (True, False)], ids=["both-pipelined", "one-pipelined"]
)
def test_two_writers_on_one_database_see_each_others_commits(
    db_url: str, tenant: uuid.UUID, pipelines: tuple[bool, bool]
) -> None:
    """Two stores (as two processes would) move money through the same accounts at once.

    Each writer keeps the state its last batch left to apply the next one ahead of time; the
    other writer's commits make that state stale, and every such batch must be noticed and
    re-applied, or balances would lose updates and the hash chain would fork.
    """
    first = LedgerStore(db_url, pipeline=pipelines[0])
    second = LedgerStore(db_url, pipeline=pipelines[1])
    try:
        bank = _open(first, tenant, "bank", AccountType.ASSET)
        fees = _open(first, tenant, "fees", AccountType.REVENUE)
        shop = _open(first, tenant, "shop", AccountType.LIABILITY)
        wallet = _wallet(first, tenant, "wallet")
        # The wallet holds exactly 50 payments of 100; the writers try 80 between them.
        assert _codes(first.submit([_pay(tenant, bank, wallet, 5_000)])) == [R.OK]
        rounds = 40
        answers: dict[int, list[list[TransferResult]]] = {0: [], 1: []}
        start = threading.Barrier(2)

        def writer(n: int, store: LedgerStore) -> None:
            start.wait()
            for i in range(rounds):
                batch = [
                    _pay(tenant, wallet, shop, 100),  # contended: may run out
                    _pay(tenant, bank, fees, 1 + n),  # unconstrained: always lands
                    _pay(tenant, shop, fees, 7),  # unconstrained: always lands
                ]
                if i % 4 == 3:
                    # Pipelined: two submissions in flight on this writer at once.
                    extra = store.writer.submit_future([_pay(tenant, bank, fees, 1 + n)])
                    answers[n].append(store.submit(batch))
                    answers[n].append(extra.result(timeout=60))
                else:
                    answers[n].append(store.submit(batch))

        threads = [
            threading.Thread(target=writer, args=(0, first)),
            threading.Thread(target=writer, args=(1, second)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)

        results = [r for n in (0, 1) for answered in answers[n] for r in answered]
        payments = [a[0] for n in (0, 1) for a in answers[n] if len(a) == 3]
        assert len(payments) == 2 * rounds
        assert sum(1 for r in payments if r.code is R.OK) == 50
        assert sum(1 for r in payments if r.code is R.INSUFFICIENT_FUNDS) == 30
        others = [r for r in results if r not in payments]
        assert {r.code for r in others} == {R.OK}
        # Every committed transfer got its own place in the tenant's sequence.
        seqs = sorted(r.seq for r in results if r.seq is not None)
        assert seqs == list(range(2, len(seqs) + 2))
        extras = rounds // 4
        fee_income = rounds * (1 + 2) + extras * (1 + 2) + 2 * rounds * 7
        assert _account(first, tenant, wallet).posted_balance == 0
        assert _account(first, tenant, shop).posted_balance == 50 * 100 - 2 * rounds * 7
        assert _account(second, tenant, fees).posted_balance == fee_income
        assert _account(second, tenant, bank).posted_balance == 5_000 + fee_income - 2 * rounds * 7
        assert _transfer_count(first, tenant) == len(seqs) + 1
        assert verify_ledger(first.db, tenant).ok
    finally:
        first.close()
        second.close()


# ---- the speculative pipeline notices account changes -----------------------------------------


def test_an_account_frozen_between_two_batches_refuses_the_next_one(
    pipelined: LedgerStore, tenant: uuid.UUID
) -> None:
    store = pipelined
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    wallet = _wallet(store, tenant, "wallet")
    hold = TransferSpec.shorthand(
        tenant, uuid.uuid4(), debit_account_id=wallet, credit_account_id=shop,
        amount=250, currency="USD", pending=True,
    )  # fmt: skip
    # The writer has just applied (and cached) a batch through the wallet while it was active.
    assert _codes(store.submit([_pay(tenant, bank, wallet, 1_000), hold])) == [R.OK, R.OK]
    assert _codes(store.submit([_pay(tenant, wallet, shop, 100)])) == [R.OK]

    update_account(store.uow(), tenant, wallet, status=AccountStatus.FROZEN)

    refused = [_pay(tenant, wallet, shop, 100), _pay(tenant, bank, wallet, 100)]
    capture = PostPending(tenant, uuid.uuid4(), hold.id)
    assert _codes(store.submit([*refused, capture])) == [R.ACCOUNT_FROZEN] * 3
    assert _account(store, tenant, wallet).balances == Balances(
        debits_posted=100, credits_posted=1_000, debits_pending=250
    )
    # The next batch after that, from the writer's fresh state, is refused too.
    assert _codes(store.submit([_pay(tenant, wallet, shop, 1)])) == [R.ACCOUNT_FROZEN]

    update_account(store.uow(), tenant, wallet, status=AccountStatus.ACTIVE)
    assert _codes(store.submit([_pay(tenant, wallet, shop, 100), capture])) == [R.OK, R.OK]
    assert _account(store, tenant, wallet).balances == Balances(
        debits_posted=450, credits_posted=1_000
    )
    assert verify_ledger(store.db, tenant).ok


def test_freezing_a_wallet_while_a_batch_waits_for_the_ledger_lets_both_finish(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    """An operator freezes a wallet just as a payment from it queues behind another writer.

    Whichever goes first, both must finish: the freeze commits, and the payment is either
    committed before it or refused with ``account_frozen`` after it — never an error.
    """
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    wallet = _wallet(store, tenant, "wallet")
    assert _codes(store.submit([_pay(tenant, bank, wallet, 1_000)])) == [R.OK]
    frozen: list[Account] = []
    failed: list[BaseException] = []

    def freeze() -> None:
        try:
            frozen.append(update_account(store.uow(), tenant, wallet, status=AccountStatus.FROZEN))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            failed.append(exc)

    freezer = threading.Thread(target=freeze)
    with _ledger_held_by_another_transaction(store, tenant):
        payment = store.writer.submit_future([_pay(tenant, wallet, shop, 300)])
        _wait_for_lock_waiters(store, 1)  # the payment's batch waits for the chain head...
        freezer.start()
        _wait_for_lock_waiters(store, 2)  # ...and so does the freeze, behind it
    freezer.join(timeout=30)
    [result] = payment.result(timeout=30)

    # Both take the same locks in the same order, so neither may be chosen as a deadlock
    # victim: the freeze raises nothing and the batch commits at its first attempt.
    assert failed == []
    assert store.writer.stats.failures == 0
    assert [a.status for a in frozen] == [AccountStatus.FROZEN]
    assert _account(store, tenant, wallet).status is AccountStatus.FROZEN
    spent = 300 if result.code is R.OK else 0
    assert result.code in {R.OK, R.ACCOUNT_FROZEN}
    assert _account(store, tenant, wallet).posted_balance == 1_000 - spent
    assert _account(store, tenant, shop).posted_balance == spent
    assert verify_ledger(store.db, tenant).ok
