"""Worked examples: small accounting stories, each on SQLite and on PostgreSQL.

Every story asserts exact balances, exact result codes, and on refusals that nothing moved.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from settle.ledger.errors import ResultCode
from settle.ledger.model import Account, AccountType, Balances, NewAccount, Side, TransferKind
from settle.ledger.requests import (
    PostingRequest,
    PostPending,
    ReverseTransfer,
    TransferSpec,
    VoidPending,
)
from settle.ledger.service import open_account
from settle.store.ledger_verify import verify_ledger

if TYPE_CHECKING:
    from settle.store.ledger_store import LedgerStore

R = ResultCode


def _open(
    store: LedgerStore,
    tenant: uuid.UUID,
    code: str,
    kind: AccountType,
    currency: str = "USD",
    **flags: object,
) -> uuid.UUID:
    return open_account(
        store.uow(),
        NewAccount(tenant, code, code.title(), kind, currency, **flags),  # type: ignore[arg-type]
    ).id


def _account(store: LedgerStore, tenant: uuid.UUID, account_id: uuid.UUID) -> Account:
    with store.read() as repo:
        account = repo.get_account(tenant, account_id)
    assert account is not None
    return account


def _balances(store: LedgerStore, tenant: uuid.UUID, *ids: uuid.UUID) -> list[Balances]:
    return [_account(store, tenant, i).balances for i in ids]


def _pay(
    tenant: uuid.UUID, debit: uuid.UUID, credit: uuid.UUID, amount: int, **kw: object
) -> TransferSpec:
    return TransferSpec.shorthand(
        tenant, uuid.uuid4(), debit_account_id=debit, credit_account_id=credit,
        amount=amount, currency=kw.pop("currency", "USD"), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _codes(results: list[object]) -> list[ResultCode]:
    return [r.code for r in results]  # type: ignore[attr-defined]


def _assert_verified(store: LedgerStore, tenant: uuid.UUID) -> None:
    report = verify_ledger(store.db, tenant)
    assert report.problems == []


def test_card_payment_with_a_fee(store: LedgerStore, tenant: uuid.UUID) -> None:
    clearing = _open(store, tenant, "card-clearing", AccountType.ASSET)
    merchant = _open(store, tenant, "merchant", AccountType.LIABILITY)
    fees = _open(store, tenant, "fee-revenue", AccountType.REVENUE)
    payment = TransferSpec(
        tenant,
        uuid.uuid4(),
        (
            PostingRequest(clearing, Side.DEBIT, 10_000, "USD"),
            PostingRequest(merchant, Side.CREDIT, 9_710, "USD"),
            PostingRequest(fees, Side.CREDIT, 290, "USD"),
        ),
        description="card payment, 2.9% fee",
    )
    [result] = store.submit([payment])
    assert result.code is R.OK
    assert result.seq == 1
    assert _account(store, tenant, clearing).posted_balance == 10_000
    assert _account(store, tenant, merchant).posted_balance == 9_710
    assert _account(store, tenant, fees).posted_balance == 290
    with store.read() as repo:
        stored = repo.get_transfer(tenant, payment.id)
    assert stored is not None
    assert stored.kind is TransferKind.TRANSFER
    assert [(p.side, p.posted_amount) for p in stored.postings] == [
        (Side.DEBIT, 10_000),
        (Side.CREDIT, 9_710),
        (Side.CREDIT, 290),
    ]
    assert stored.description == "card payment, 2.9% fee"
    _assert_verified(store, tenant)


def test_hold_then_partial_capture_releases_the_rest(store: LedgerStore, tenant: uuid.UUID) -> None:
    wallet = _open(
        store, tenant, "wallet", AccountType.LIABILITY, debits_must_not_exceed_credits=True
    )
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    assert _codes(store.submit([_pay(tenant, bank, wallet, 5_000)])) == [R.OK]

    hold = _pay(tenant, wallet, shop, 3_000, pending=True, timeout_seconds=3600)
    assert _codes(store.submit([hold])) == [R.OK]
    held = _account(store, tenant, wallet)
    assert (held.posted_balance, held.pending_balance, held.available_balance) == (
        5_000,
        -3_000,
        2_000,
    )
    # The hold counts against available: a 2,500 spend no longer fits.
    assert _codes(store.submit([_pay(tenant, wallet, shop, 2_500)])) == [R.INSUFFICIENT_FUNDS]

    capture = PostPending(tenant, uuid.uuid4(), hold.id, amount=1_200)
    assert _codes(store.submit([capture])) == [R.OK]
    after = _account(store, tenant, wallet)
    assert (after.posted_balance, after.pending_balance, after.available_balance) == (
        3_800,
        0,
        3_800,
    )
    assert _account(store, tenant, shop).posted_balance == 1_200
    # Each resolution happens at most once.
    assert _codes(store.submit([PostPending(tenant, uuid.uuid4(), hold.id)])) == [
        R.PENDING_ALREADY_POSTED
    ]
    assert _codes(store.submit([VoidPending(tenant, uuid.uuid4(), hold.id)])) == [
        R.PENDING_ALREADY_POSTED
    ]
    with store.read() as repo:
        stored = repo.get_transfer(tenant, hold.id)
    assert stored is not None
    assert stored.resolution is TransferKind.POST_PENDING
    assert stored.resolved_by == capture.id
    _assert_verified(store, tenant)


def test_capture_more_than_held_is_refused_and_moves_nothing(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    customer = _open(store, tenant, "customer", AccountType.ASSET)
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    hold = _pay(tenant, customer, shop, 1_000, pending=True)
    store.submit([hold])
    before = _balances(store, tenant, customer, shop)
    assert _codes(store.submit([PostPending(tenant, uuid.uuid4(), hold.id, amount=1_001)])) == [
        R.AMOUNT_EXCEEDS_PENDING
    ]
    assert _codes(store.submit([PostPending(tenant, uuid.uuid4(), uuid.uuid4())])) == [
        R.PENDING_NOT_FOUND
    ]
    assert _balances(store, tenant, customer, shop) == before
    assert _codes(store.submit([VoidPending(tenant, uuid.uuid4(), hold.id)])) == [R.OK]
    assert _balances(store, tenant, customer, shop) == [Balances(), Balances()]
    assert _codes(store.submit([PostPending(tenant, uuid.uuid4(), hold.id)])) == [
        R.PENDING_ALREADY_VOIDED
    ]
    _assert_verified(store, tenant)


def test_a_reversal_undoes_a_payment_once(store: LedgerStore, tenant: uuid.UUID) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    revenue = _open(store, tenant, "sales", AccountType.REVENUE)
    sale = _pay(tenant, bank, revenue, 7_500)
    store.submit([sale])
    reversal = ReverseTransfer(tenant, uuid.uuid4(), sale.id, description="refund")
    assert _codes(store.submit([reversal])) == [R.OK]
    assert _balances(store, tenant, bank, revenue) == [
        Balances(debits_posted=7_500, credits_posted=7_500),
        Balances(debits_posted=7_500, credits_posted=7_500),
    ]
    assert _codes(store.submit([ReverseTransfer(tenant, uuid.uuid4(), sale.id)])) == [
        R.ALREADY_REVERSED
    ]
    # The original is untouched: a reversal is a new entry, linked both ways.
    with store.read() as repo:
        original = repo.get_transfer(tenant, sale.id)
        undo = repo.get_transfer(tenant, reversal.id)
    assert original is not None
    assert undo is not None
    assert original.reversed_by == reversal.id
    assert undo.reversal_of == sale.id
    assert [(p.account_id, p.side) for p in undo.postings] == [
        (bank, Side.CREDIT),
        (revenue, Side.DEBIT),
    ]
    _assert_verified(store, tenant)


def test_an_overdraft_line_lets_a_wallet_go_negative_up_to_its_limit(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    wallet = _open(
        store, tenant, "wallet", AccountType.LIABILITY,
        debits_must_not_exceed_credits=True, overdraft_limit=5_000,
    )  # fmt: skip
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    assert _codes(store.submit([_pay(tenant, wallet, shop, 4_000)])) == [R.OK]
    assert _account(store, tenant, wallet).available_balance == -4_000
    assert _codes(store.submit([_pay(tenant, wallet, shop, 1_001)])) == [R.INSUFFICIENT_FUNDS]
    assert _codes(store.submit([_pay(tenant, wallet, shop, 1_000)])) == [R.OK]
    assert _account(store, tenant, wallet).posted_balance == -5_000
    assert _codes(store.submit([_pay(tenant, wallet, shop, 1)])) == [R.INSUFFICIENT_FUNDS]
    _assert_verified(store, tenant)


def test_credits_must_not_exceed_debits_caps_a_receivable(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    receivable = _open(
        store, tenant, "receivable", AccountType.ASSET, credits_must_not_exceed_debits=True
    )
    sales = _open(store, tenant, "sales", AccountType.REVENUE)
    cash = _open(store, tenant, "cash", AccountType.ASSET)
    store.submit([_pay(tenant, receivable, sales, 2_000)])
    assert _codes(store.submit([_pay(tenant, cash, receivable, 2_001)])) == [R.EXCEEDS_DEBITS]
    assert _codes(store.submit([_pay(tenant, cash, receivable, 2_000)])) == [R.OK]
    assert _account(store, tenant, receivable).posted_balance == 0


def test_each_transfer_is_checked_against_the_balances_left_by_the_ones_before(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    wallet = _open(
        store, tenant, "wallet", AccountType.LIABILITY, debits_must_not_exceed_credits=True
    )
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    batch = [
        _pay(tenant, wallet, shop, 100),  # nothing there yet
        _pay(tenant, bank, wallet, 300),
        _pay(tenant, wallet, shop, 200),
        _pay(tenant, wallet, shop, 200),  # only 100 left
        _pay(tenant, wallet, shop, 100),
    ]
    assert _codes(store.submit(batch)) == [
        R.INSUFFICIENT_FUNDS, R.OK, R.OK, R.INSUFFICIENT_FUNDS, R.OK,
    ]  # fmt: skip
    assert _account(store, tenant, wallet).posted_balance == 0
    assert _account(store, tenant, shop).posted_balance == 300
    _assert_verified(store, tenant)


def test_an_atomic_batch_moves_everything_or_nothing(store: LedgerStore, tenant: uuid.UUID) -> None:
    wallet = _open(
        store, tenant, "wallet", AccountType.LIABILITY, debits_must_not_exceed_credits=True
    )
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    shop = _open(store, tenant, "shop", AccountType.LIABILITY)
    group = [
        _pay(tenant, bank, wallet, 500),
        _pay(tenant, wallet, shop, 400),
        _pay(tenant, wallet, shop, 200),
    ]
    results = store.submit(group, atomic=True)
    assert _codes(results) == [
        R.LINKED_TRANSFER_FAILED,
        R.LINKED_TRANSFER_FAILED,
        R.INSUFFICIENT_FUNDS,
    ]
    assert _balances(store, tenant, wallet, bank, shop) == [Balances(), Balances(), Balances()]
    with store.read() as repo:
        assert all(repo.get_transfer(tenant, t.id) is None for t in group)
    # The same transfers without the one that failed go through together.
    assert _codes(store.submit(group[:2], atomic=True)) == [R.OK, R.OK]
    assert _account(store, tenant, wallet).posted_balance == 100
    _assert_verified(store, tenant)


def test_resubmitting_a_transfer_is_idempotent(store: LedgerStore, tenant: uuid.UUID) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    wallet = _open(store, tenant, "wallet", AccountType.LIABILITY)
    first = _pay(tenant, bank, wallet, 1_000)
    assert _codes(store.submit([first, first])) == [R.OK, R.EXISTS]
    assert _codes(store.submit([first])) == [R.EXISTS]
    changed = TransferSpec.shorthand(
        tenant, first.id, debit_account_id=bank, credit_account_id=wallet, amount=999,
        currency="USD",
    )  # fmt: skip
    assert _codes(store.submit([changed])) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert _account(store, tenant, wallet).posted_balance == 1_000


@pytest.mark.parametrize(
    ("postings", "code"),
    [
        ([("a", "debit", 100, "USD")], R.INVALID_POSTINGS),
        ([("a", "debit", 100, "USD"), ("b", "credit", 99, "USD")], R.UNBALANCED),
        ([("a", "debit", 0, "USD"), ("b", "credit", 0, "USD")], R.INVALID_AMOUNT),
        ([("a", "debit", -5, "USD"), ("b", "credit", -5, "USD")], R.INVALID_AMOUNT),
        ([("a", "debit", 1.5, "USD"), ("b", "credit", 1.5, "USD")], R.INVALID_AMOUNT),
        ([("a", "debit", 100, "EUR"), ("b", "credit", 100, "EUR")], R.CURRENCY_MISMATCH),
        ([("a", "debit", 100, "USD"), ("a", "credit", 100, "USD")], R.INVALID_POSTINGS),
        ([("a", "debit", 100, "USD"), ("missing", "credit", 100, "USD")], R.ACCOUNT_NOT_FOUND),
    ],
)
def test_malformed_transfers_are_refused_with_their_code(
    store: LedgerStore,
    tenant: uuid.UUID,
    postings: list[tuple[str, str, object, str]],
    code: ResultCode,
) -> None:
    ids = {
        "a": _open(store, tenant, "a", AccountType.ASSET),
        "b": _open(store, tenant, "b", AccountType.LIABILITY),
        "missing": uuid.uuid4(),
    }
    spec = TransferSpec(
        tenant,
        uuid.uuid4(),
        tuple(PostingRequest(ids[a], Side(s), amt, cur) for a, s, amt, cur in postings),  # type: ignore[arg-type]
    )
    assert _codes(store.submit([spec])) == [code]
    assert _balances(store, tenant, ids["a"], ids["b"]) == [Balances(), Balances()]
    with store.read() as repo:
        assert repo.get_transfer(tenant, spec.id) is None


def test_tenants_never_see_each_others_accounts(store: LedgerStore) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    my_bank = _open(store, mine, "bank", AccountType.ASSET)
    their_wallet = _open(store, theirs, "wallet", AccountType.LIABILITY)
    assert _codes(store.submit([_pay(mine, my_bank, their_wallet, 100)])) == [R.ACCOUNT_NOT_FOUND]
    with store.read() as repo:
        assert repo.get_account(mine, their_wallet) is None
    # The same code may exist in two tenants.
    _open(store, theirs, "bank", AccountType.ASSET)


def test_a_multi_currency_transfer_balances_per_currency(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    usd_in = _open(store, tenant, "usd-in", AccountType.ASSET)
    usd_pool = _open(store, tenant, "usd-pool", AccountType.LIABILITY)
    jpy_out = _open(store, tenant, "jpy-out", AccountType.ASSET, currency="JPY")
    jpy_pool = _open(store, tenant, "jpy-pool", AccountType.LIABILITY, currency="JPY")
    fx = TransferSpec(
        tenant,
        uuid.uuid4(),
        (
            PostingRequest(usd_in, Side.DEBIT, 1_000, "USD"),
            PostingRequest(usd_pool, Side.CREDIT, 1_000, "USD"),
            PostingRequest(jpy_pool, Side.DEBIT, 1_500, "JPY"),
            PostingRequest(jpy_out, Side.CREDIT, 1_500, "JPY"),
        ),
    )
    assert _codes(store.submit([fx])) == [R.OK]
    assert _account(store, tenant, jpy_out).posted_balance == -1_500
    _assert_verified(store, tenant)
