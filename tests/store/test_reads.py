"""Reading the ledger back: balances as of a moment, statements, transfer history, account
lists, roll-ups, the outbox, and holds that time out.

Every story runs on SQLite and on PostgreSQL with a clock the test moves by hand, so each
transfer has a known ``created_at`` and every read can be asserted exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from settle.ledger.errors import ResultCode
from settle.ledger.model import (
    AccountStatus,
    AccountType,
    Balances,
    NewAccount,
    Posting,
    Side,
    TransferKind,
    from_micros,
)
from settle.ledger.requests import (
    ExpirePending,
    PostingRequest,
    PostPending,
    ReverseTransfer,
    TransferSpec,
    VoidPending,
)
from settle.ledger.service import expire_pending, open_account, update_account
from settle.store import tables
from settle.store.ledger_repo import AccountQuery
from settle.store.ledger_store import LedgerStore

from .stories import T0, FakeClock
from .stories import pay as _pay

R = ResultCode
E = tables.outbox_events
S = 1_000_000  # one second in microseconds
D, C = Side.DEBIT, Side.CREDIT


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[LedgerStore]:
    """The ledger on a fresh database of each kind, with a clock the test moves."""
    ledger = LedgerStore(db_url, clock=clock)
    yield ledger
    ledger.close()


def _open(
    store: LedgerStore,
    tenant: uuid.UUID,
    code: str,
    kind: AccountType = AccountType.LIABILITY,
    currency: str = "USD",
    **fields: Any,
) -> uuid.UUID:
    return open_account(
        store.uow(), NewAccount(tenant, code, code.title(), kind, currency, **fields)
    ).id


def _submit_at(
    store: LedgerStore, clock: FakeClock, at: int, *requests: Any, atomic: bool = False
) -> list[ResultCode]:
    clock.now = at
    return [r.code for r in store.submit(list(requests), atomic=atomic)]


def _balances(store: LedgerStore, tenant: uuid.UUID, account_id: uuid.UUID) -> Balances:
    with store.read() as repo:
        account = repo.get_account(tenant, account_id)
    assert account is not None
    return account.balances


@dataclass
class Shop:
    bank: uuid.UUID
    wallet: uuid.UUID
    shop: uuid.UUID
    # Transfer ids by seq: 1 top-up, 2 hold, 3 capture, 4 payment.
    ids: dict[int, uuid.UUID]


def _shop_story(store: LedgerStore, clock: FakeClock, tenant: uuid.UUID) -> Shop:
    """At T0+10s a 10,000 top-up; +20s a 3,000 hold; +30s 2,000 of it captured; +40s a
    1,000 payment. Another tenant moves money at +25s, in between."""
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    wallet = _open(store, tenant, "wallet", debits_must_not_exceed_credits=True)
    shop = _open(store, tenant, "shop")
    topup = _pay(tenant, bank, wallet, 10_000)
    hold = _pay(tenant, wallet, shop, 3_000, pending=True)
    capture = PostPending(tenant, uuid.uuid4(), hold.id, amount=2_000)
    payment = _pay(tenant, wallet, shop, 1_000)
    assert _submit_at(store, clock, T0 + 10 * S, topup) == [R.OK]
    assert _submit_at(store, clock, T0 + 20 * S, hold) == [R.OK]
    other = uuid.uuid4()
    other_bank = _open(store, other, "bank", AccountType.ASSET)
    other_wallet = _open(store, other, "wallet")
    assert _submit_at(store, clock, T0 + 25 * S, _pay(other, other_bank, other_wallet, 7)) == [R.OK]
    assert _submit_at(store, clock, T0 + 30 * S, capture) == [R.OK]
    assert _submit_at(store, clock, T0 + 40 * S, payment) == [R.OK]
    return Shop(bank, wallet, shop, {1: topup.id, 2: hold.id, 3: capture.id, 4: payment.id})


# ---- balances as of a moment or a sequence number -----------------------------------------


def test_balances_as_of_a_moment_are_the_counters_after_the_last_posting_by_then(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    s = _shop_story(store, clock, tenant)
    after_topup = Balances(0, 10_000, 0, 0)
    on_hold = Balances(0, 10_000, 3_000, 0)
    captured = Balances(2_000, 10_000, 0, 0)
    paid = Balances(3_000, 10_000, 0, 0)
    with store.read() as repo:

        def wallet_at(at: int) -> Balances:
            return repo.balances_as_of(tenant, s.wallet, at=at)

        assert wallet_at(T0) == Balances()
        assert wallet_at(T0 + 10 * S - 1) == Balances()
        assert wallet_at(T0 + 10 * S) == after_topup
        assert wallet_at(T0 + 20 * S - 1) == after_topup
        assert wallet_at(T0 + 20 * S) == on_hold
        assert wallet_at(T0 + 25 * S) == on_hold
        assert wallet_at(T0 + 30 * S) == captured
        assert wallet_at(T0 + 40 * S) == paid
        assert wallet_at(T0 + 3_600 * S) == paid
        # An account's balance stays put while others move.
        assert repo.balances_as_of(tenant, s.bank, at=T0 + 40 * S) == Balances(10_000, 0, 0, 0)
        assert repo.balances_as_of(tenant, s.shop, at=T0 + 20 * S) == Balances(0, 0, 0, 3_000)
        assert repo.balances_as_of(tenant, s.shop, at=T0 + 30 * S) == Balances(0, 2_000, 0, 0)
        # Without a moment: the balances now, as stored on the account.
        assert repo.balances_as_of(tenant, s.wallet) == paid
    assert _balances(store, tenant, s.wallet) == paid


def test_balances_as_of_a_sequence_number_count_that_transfer_and_the_ones_before(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    s = _shop_story(store, clock, tenant)
    with store.read() as repo:
        assert [repo.balances_as_of(tenant, s.wallet, seq=n) for n in range(6)] == [
            Balances(),
            Balances(0, 10_000, 0, 0),
            Balances(0, 10_000, 3_000, 0),
            Balances(2_000, 10_000, 0, 0),
            Balances(3_000, 10_000, 0, 0),
            Balances(3_000, 10_000, 0, 0),  # past the end: the balances now
        ]
        assert [repo.balances_as_of(tenant, s.shop, seq=n) for n in range(5)] == [
            Balances(),
            Balances(),
            Balances(0, 0, 0, 3_000),
            Balances(0, 2_000, 0, 0),
            Balances(0, 3_000, 0, 0),
        ]
        assert repo.balances_as_of(tenant, s.bank, seq=4) == Balances(10_000, 0, 0, 0)
        assert repo.balances_as_of(tenant, uuid.uuid4(), seq=4) == Balances()


# ---- statements and transfer history -------------------------------------------------------


def test_a_statement_lists_an_accounts_postings_with_running_balances(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    s = _shop_story(store, clock, tenant)
    w = s.wallet
    # Each line also says where it sits in the journal: transfer, sequence number and time.
    lines = [
        Posting(1, w, C, "USD", 10_000, 0, Balances(0, 10_000, 0, 0),
                s.ids[1], 1, from_micros(T0 + 10 * S)),
        Posting(0, w, D, "USD", 0, 3_000, Balances(0, 10_000, 3_000, 0),
                s.ids[2], 2, from_micros(T0 + 20 * S)),
        Posting(0, w, D, "USD", 2_000, -3_000, Balances(2_000, 10_000, 0, 0),
                s.ids[3], 3, from_micros(T0 + 30 * S)),
        Posting(0, w, D, "USD", 1_000, 0, Balances(3_000, 10_000, 0, 0),
                s.ids[4], 4, from_micros(T0 + 40 * S)),
    ]  # fmt: skip
    with store.read() as repo:
        everything = repo.statement(tenant, w)
        assert (everything.data, everything.has_more) == (lines, False)
        assert [p.amount for p in everything.data] == [10_000, 3_000, 2_000, 1_000]

        exact = repo.statement(tenant, w, limit=4)
        assert (exact.data, exact.has_more) == (lines, False)
        first = repo.statement(tenant, w, limit=2)
        assert (first.data, first.has_more) == (lines[:2], True)
        second = repo.statement(tenant, w, limit=2, after_seq=2)
        assert (second.data, second.has_more) == (lines[2:], False)
        third = repo.statement(tenant, w, limit=3, after_seq=1)
        assert (third.data, third.has_more) == (lines[1:], False)

        # [start, end): a posting at exactly `end` belongs to the next window.
        window = repo.statement(tenant, w, start=T0 + 20 * S, end=T0 + 40 * S)
        assert (window.data, window.has_more) == (lines[1:3], False)
        assert repo.statement(tenant, w, start=T0 + 40 * S).data == lines[3:]
        assert repo.statement(tenant, w, end=T0 + 10 * S).data == []
        paged = repo.statement(tenant, w, start=T0 + 20 * S, limit=1, after_seq=2)
        assert (paged.data, paged.has_more) == (lines[2:3], True)

        bank = repo.statement(tenant, s.bank)
        assert bank.data == [
            Posting(0, s.bank, D, "USD", 10_000, 0, Balances(10_000, 0, 0, 0),
                    s.ids[1], 1, from_micros(T0 + 10 * S)),
        ]  # fmt: skip


def test_transfers_by_account_come_oldest_first_in_windows_and_pages(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    s = _shop_story(store, clock, tenant)

    def seen(page: Any) -> tuple[list[tuple[int, uuid.UUID, TransferKind]], bool]:
        return [(t.seq, t.id, t.kind) for t in page.data], page.has_more

    hold = (2, s.ids[2], TransferKind.PENDING)
    capture = (3, s.ids[3], TransferKind.POST_PENDING)
    payment = (4, s.ids[4], TransferKind.TRANSFER)
    with store.read() as repo:
        assert seen(repo.transfers_by_account(tenant, s.shop)) == ([hold, capture, payment], False)
        assert seen(repo.transfers_by_account(tenant, s.shop, limit=1)) == ([hold], True)
        assert seen(repo.transfers_by_account(tenant, s.shop, limit=1, after_seq=2)) == (
            [capture],
            True,
        )
        assert seen(repo.transfers_by_account(tenant, s.shop, limit=2, after_seq=2)) == (
            [capture, payment],
            False,
        )
        assert seen(
            repo.transfers_by_account(tenant, s.shop, start=T0 + 25 * S, end=T0 + 40 * S)
        ) == ([capture], False)
        assert seen(repo.transfers_by_account(tenant, s.bank)) == (
            [(1, s.ids[1], TransferKind.TRANSFER)],
            False,
        )
        assert seen(repo.transfers_by_account(tenant, s.bank, start=T0 + 11 * S)) == ([], False)
        [stored] = repo.transfers_by_account(tenant, s.shop, limit=1).data
        assert [(p.account_id, p.side, p.pending_amount) for p in stored.postings] == [
            (s.wallet, D, 3_000),
            (s.shop, C, 3_000),
        ]


# ---- one transfer and its links ------------------------------------------------------------


def test_get_transfer_shows_when_it_happened_and_what_it_reversed(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    sales = _open(store, tenant, "sales", AccountType.REVENUE)
    booked_for = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    sale = _pay(tenant, bank, sales, 4_200, description="invoice 7", effective_at=booked_for,
                metadata={"invoice": "7"})  # fmt: skip
    refund = ReverseTransfer(tenant, uuid.uuid4(), sale.id, description="refund 7")
    assert _submit_at(store, clock, T0 + 10 * S, sale) == [R.OK]
    assert _submit_at(store, clock, T0 + 20 * S, refund) == [R.OK]

    with store.read() as repo:
        original = repo.get_transfer(tenant, sale.id)
        undo = repo.get_transfer(tenant, refund.id)
        assert repo.get_transfer(tenant, uuid.uuid4()) is None
        assert repo.get_transfer(uuid.uuid4(), sale.id) is None
    assert original is not None
    assert undo is not None
    assert (
        original.seq, original.kind, original.description, dict(original.metadata),
        original.effective_at, original.created_at, original.timeout_at,
        original.resolution, original.resolved_by, original.reversal_of, original.reversed_by,
    ) == (
        1, TransferKind.TRANSFER, "invoice 7", {"invoice": "7"},
        booked_for, from_micros(T0 + 10 * S), None,
        None, None, None, refund.id,
    )  # fmt: skip
    assert (
        undo.seq, undo.kind, undo.description, undo.effective_at, undo.created_at,
        undo.reversal_of, undo.reversed_by,
    ) == (
        2, TransferKind.REVERSAL, "refund 7", from_micros(T0 + 20 * S),
        from_micros(T0 + 20 * S), sale.id, None,
    )  # fmt: skip
    assert [(p.account_id, p.side, p.posted_amount) for p in undo.postings] == [
        (bank, C, 4_200),
        (sales, D, 4_200),
    ]
    assert len(original.hash) == len(undo.hash) == 32
    assert original.hash != undo.hash


def test_a_hold_shows_how_it_was_resolved_and_by_which_transfer(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    customer = _open(store, tenant, "customer", AccountType.ASSET)
    shop = _open(store, tenant, "shop")
    captured = _pay(tenant, customer, shop, 500, pending=True, timeout_seconds=600)
    voided = _pay(tenant, customer, shop, 300, pending=True)
    capture = PostPending(tenant, uuid.uuid4(), captured.id)
    void = VoidPending(tenant, uuid.uuid4(), voided.id)
    assert _submit_at(store, clock, T0 + 10 * S, captured, voided) == [R.OK, R.OK]
    assert _submit_at(store, clock, T0 + 20 * S, capture, void) == [R.OK, R.OK]

    with store.read() as repo:
        first = repo.get_transfer(tenant, captured.id)
        second = repo.get_transfer(tenant, voided.id)
        resolving = repo.get_transfer(tenant, capture.id)
    assert first is not None
    assert second is not None
    assert resolving is not None
    assert (first.resolution, first.resolved_by) == (TransferKind.POST_PENDING, capture.id)
    assert first.timeout_at == from_micros(T0 + 610 * S)
    assert (second.resolution, second.resolved_by) == (TransferKind.VOID_PENDING, void.id)
    # The resolving transfer points back at its hold and resolves nothing itself.
    assert (resolving.pending_id, resolving.resolution, resolving.resolved_by) == (
        captured.id,
        None,
        None,
    )


def test_an_open_hold_reads_as_pending_until_something_resolves_it(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    """``Transfer.resolution`` is documented as "pending" for a hold that is still open."""
    customer = _open(store, tenant, "customer", AccountType.ASSET)
    shop = _open(store, tenant, "shop")
    hold = _pay(tenant, customer, shop, 500, pending=True)
    assert _submit_at(store, clock, T0 + 10 * S, hold) == [R.OK]

    with store.read() as repo:
        stored = repo.get_transfer(tenant, hold.id)
    assert stored is not None
    assert (stored.resolution, stored.resolved_by) == (TransferKind.PENDING, None)


# ---- listing accounts and rolling balances up ----------------------------------------------


class Chart:
    """Seven accounts of one tenant (and one of another), with their ids in listing order."""

    def __init__(self, store: LedgerStore, tenant: uuid.UUID) -> None:
        self.store, self.tenant = store, tenant
        ids = {
            "cash-usd": _open(
                store, tenant, "cash-usd", AccountType.ASSET, metadata={"region": "us"}
            ),
            "cash-eur": _open(
                store, tenant, "cash-eur", AccountType.ASSET, "EUR", metadata={"region": "eu"}
            ),
            "wallets": _open(store, tenant, "wallets"),
            "fees": _open(store, tenant, "fees", AccountType.REVENUE),
        }
        for code, region, tier in (
            ("ann", "eu", "gold"),
            ("bob", "eu", "silver"),
            ("cy", "us", "gold"),
        ):
            ids[code] = _open(
                store,
                tenant,
                code,
                parent_id=ids["wallets"],
                metadata={"region": region, "tier": tier},
            )
        update_account(store.uow(), tenant, ids["cy"], status=AccountStatus.FROZEN)
        _open(store, uuid.uuid4(), "someone-elses", AccountType.ASSET, metadata={"region": "eu"})
        self.ids = ids
        self.by_id = sorted(ids, key=lambda code: ids[code])

    def codes(self, *wanted: str) -> list[str]:
        """The wanted codes in the order a listing returns them (by account id)."""
        return [code for code in self.by_id if code in wanted]

    def listed(
        self, query: AccountQuery, limit: int = 100, **cursor: str
    ) -> tuple[list[str], bool]:
        cursors = {name: self.ids[code] for name, code in cursor.items()}
        with self.store.read() as repo:
            page = repo.list_accounts(self.tenant, query, limit=limit, **cursors)
        return [a.code for a in page.data], page.has_more


def test_list_accounts_filters_by_currency_type_parent_and_status(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    chart = Chart(store, tenant)
    listed, codes = chart.listed, chart.codes

    assert listed(AccountQuery()) == (chart.by_id, False)
    assert listed(AccountQuery(currency="EUR")) == (["cash-eur"], False)
    assert listed(AccountQuery(type="liability")) == (codes("wallets", "ann", "bob", "cy"), False)
    assert listed(AccountQuery(type="expense")) == ([], False)
    assert listed(AccountQuery(parent_id=chart.ids["wallets"])) == (
        codes("ann", "bob", "cy"),
        False,
    )
    assert listed(AccountQuery(status="frozen")) == (["cy"], False)
    assert listed(AccountQuery(status="active")) == (
        codes("cash-usd", "cash-eur", "wallets", "fees", "ann", "bob"),
        False,
    )
    assert listed(AccountQuery(currency="USD", type="asset")) == (["cash-usd"], False)
    assert listed(AccountQuery(parent_id=chart.ids["wallets"], status="active")) == (
        codes("ann", "bob"),
        False,
    )


def test_list_accounts_filters_by_metadata(store: LedgerStore, tenant: uuid.UUID) -> None:
    chart = Chart(store, tenant)
    listed, codes = chart.listed, chart.codes

    eu = AccountQuery(metadata={"region": "eu"})
    assert listed(eu) == (codes("cash-eur", "ann", "bob"), False)
    assert listed(AccountQuery(metadata={"region": "eu", "tier": "gold"})) == (["ann"], False)
    assert listed(AccountQuery(metadata={"tier": "bronze"})) == ([], False)
    assert listed(AccountQuery(metadata={"region": "EU"})) == ([], False)
    assert listed(AccountQuery(currency="USD", metadata={"region": "eu"})) == (
        codes("ann", "bob"),
        False,
    )
    first = listed(eu, limit=2)
    assert first == (codes("cash-eur", "ann", "bob")[:2], True)
    assert listed(eu, limit=2, starting_after=first[0][-1]) == (
        codes("cash-eur", "ann", "bob")[2:],
        False,
    )


def test_a_metadata_filter_takes_any_key_literally(store: LedgerStore, tenant: uuid.UUID) -> None:
    """Metadata keys are free text: dots, quotes and dollars are part of the key."""
    keys = ["a.b", 'say "hi"', "it's", "$x"]
    for i, key in enumerate(keys):
        _open(store, tenant, f"tagged-{i}", metadata={key: "yes"})
    _open(store, tenant, "untagged", metadata={"a": "yes"})

    with store.read() as repo:
        found = {
            key: [
                a.code
                for a in repo.list_accounts(
                    tenant, AccountQuery(metadata={key: "yes"}), limit=10
                ).data
            ]
            for key in keys
        }
    assert found == {key: [f"tagged-{i}"] for i, key in enumerate(keys)}


def test_list_accounts_pages_forwards_and_back_with_an_exact_has_more(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    chart = Chart(store, tenant)
    listed, by_id, everyone = chart.listed, chart.by_id, AccountQuery()

    assert listed(everyone, limit=7) == (by_id, False)
    assert listed(everyone, limit=6) == (by_id[:6], True)
    # Seven accounts, three to a page: forwards with starting_after...
    assert listed(everyone, limit=3) == (by_id[:3], True)
    assert listed(everyone, limit=3, starting_after=by_id[2]) == (by_id[3:6], True)
    assert listed(everyone, limit=3, starting_after=by_id[5]) == (by_id[6:], False)
    assert listed(everyone, limit=3, starting_after=by_id[6]) == ([], False)
    # ...and back with ending_before (has_more: there is more before this page).
    assert listed(everyone, limit=3, ending_before=by_id[6]) == (by_id[3:6], True)
    assert listed(everyone, limit=3, ending_before=by_id[3]) == (by_id[:3], False)
    assert listed(everyone, limit=3, ending_before=by_id[0]) == ([], False)
    # Filters and cursors together.
    wallets = AccountQuery(type="liability")
    liabilities = chart.codes("wallets", "ann", "bob", "cy")
    assert listed(wallets, limit=2) == (liabilities[:2], True)
    assert listed(wallets, limit=2, starting_after=liabilities[1]) == (liabilities[2:], False)
    assert listed(wallets, limit=2, ending_before=liabilities[3]) == (liabilities[1:3], True)


def test_rolled_up_balances_add_up_an_account_and_all_its_descendants(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    #   assets ─┬─ banks ─┬─ bank-a
    #           │         └─ bank-b
    #           └─ petty-cash            capital (equity, outside the tree)
    assets = _open(store, tenant, "assets", AccountType.ASSET)
    banks = _open(store, tenant, "banks", AccountType.ASSET, parent_id=assets)
    bank_a = _open(store, tenant, "bank-a", AccountType.ASSET, parent_id=banks)
    bank_b = _open(store, tenant, "bank-b", AccountType.ASSET, parent_id=banks)
    petty = _open(store, tenant, "petty-cash", AccountType.ASSET, parent_id=assets)
    capital = _open(store, tenant, "capital", AccountType.EQUITY)
    assert _submit_at(
        store, clock, T0 + S,
        _pay(tenant, bank_a, capital, 1_000),
        _pay(tenant, bank_b, capital, 250),
        _pay(tenant, bank_b, bank_a, 100),  # moves money inside the tree
        _pay(tenant, banks, capital, 7),  # a parent may hold money of its own
        _pay(tenant, petty, capital, 5),
        _pay(tenant, bank_a, capital, 40, pending=True),
    ) == [R.OK] * 6  # fmt: skip

    with store.read() as repo:
        rolled = {a: repo.rolled_up_balances(tenant, a) for a in (assets, banks, bank_a, capital)}
        assert repo.rolled_up_balances(tenant, uuid.uuid4()) == Balances()
        assert repo.rolled_up_balances(uuid.uuid4(), assets) == Balances()
    assert rolled == {
        assets: Balances(1_362, 100, 40, 0),
        banks: Balances(1_357, 100, 40, 0),
        bank_a: Balances(1_000, 100, 40, 0),
        capital: Balances(0, 1_262, 0, 40),
    }
    assert rolled[assets].posted(Side.DEBIT) == 1_262


# ---- the outbox ----------------------------------------------------------------------------


def _events(store: LedgerStore, tenant: uuid.UUID) -> list[tuple[Any, ...]]:
    with store.db.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.select(E.c.seq, E.c.type, E.c.object_id, E.c.payload, E.c.created_at)
                .where(E.c.tenant_id == tenant)
                .order_by(E.c.seq)
            )
        ]


def _account_created(
    account_id: uuid.UUID, code: str, kind: str, at: int, metadata: dict[str, str] | None = None
) -> tuple[Any, ...]:
    payload = {
        "id": str(account_id), "code": code, "name": code.title(), "type": kind,
        "currency": "USD", "parent_id": None, "status": "active", "metadata": metadata or {},
    }  # fmt: skip
    return ("account.created", account_id, payload, at)


def test_every_committed_change_appends_one_event_in_the_tenants_own_sequence(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    other = uuid.uuid4()
    clock.now = T0 + 1 * S
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    clock.now = T0 + 2 * S
    wallet = _open(store, tenant, "wallet", metadata={"owner": "ann"},
                   debits_must_not_exceed_credits=True)  # fmt: skip
    clock.now = T0 + 3 * S
    other_bank = _open(store, other, "bank", AccountType.ASSET)
    other_wallet = _open(store, other, "wallet")
    topup = _pay(tenant, bank, wallet, 10_000)
    hold = _pay(tenant, wallet, bank, 3_000, pending=True)
    capture = PostPending(tenant, uuid.uuid4(), hold.id, amount=1_000)
    hold2 = _pay(tenant, wallet, bank, 500, pending=True)
    void = VoidPending(tenant, uuid.uuid4(), hold2.id)
    payment = _pay(tenant, wallet, bank, 200)
    refund = ReverseTransfer(tenant, uuid.uuid4(), payment.id)
    lapsing = _pay(tenant, wallet, bank, 50, pending=True, timeout_seconds=60)
    assert _submit_at(store, clock, T0 + 10 * S, topup) == [R.OK]
    elsewhere = _pay(other, other_bank, other_wallet, 1)
    assert _submit_at(store, clock, T0 + 15 * S, elsewhere) == [R.OK]
    assert _submit_at(store, clock, T0 + 20 * S, hold, capture) == [R.OK, R.OK]
    assert _submit_at(store, clock, T0 + 30 * S, hold2, void) == [R.OK, R.OK]
    assert _submit_at(store, clock, T0 + 40 * S, payment, refund, lapsing) == [R.OK] * 3
    clock.now = T0 + 100 * S
    [expiry] = expire_pending(store.uow(), store.writer, clock.now)
    assert expiry.code is R.OK
    clock.now = T0 + 110 * S
    update_account(store.uow(), tenant, wallet, status=AccountStatus.FROZEN)

    frozen_wallet = _account_created(wallet, "wallet", "liability", T0 + 110 * S, {"owner": "ann"})
    assert _events(store, tenant) == [
        (1, *_account_created(bank, "bank", "asset", T0 + 1 * S)),
        (2, *_account_created(wallet, "wallet", "liability", T0 + 2 * S, {"owner": "ann"})),
        (3, "transfer.posted", topup.id, None, T0 + 10 * S),
        (4, "transfer.pending", hold.id, None, T0 + 20 * S),
        (5, "transfer.posted", capture.id, None, T0 + 20 * S),
        (6, "transfer.pending", hold2.id, None, T0 + 30 * S),
        (7, "transfer.voided", void.id, None, T0 + 30 * S),
        (8, "transfer.posted", payment.id, None, T0 + 40 * S),
        (9, "transfer.reversed", refund.id, None, T0 + 40 * S),
        (10, "transfer.pending", lapsing.id, None, T0 + 40 * S),
        (11, "transfer.expired", expiry.id, None, T0 + 100 * S),
        (12, "account.frozen", wallet, {**frozen_wallet[2], "status": "frozen"}, T0 + 110 * S),
    ]
    assert _events(store, other) == [
        (1, *_account_created(other_bank, "bank", "asset", T0 + 3 * S)),
        (2, *_account_created(other_wallet, "wallet", "liability", T0 + 3 * S)),
        (3, "transfer.posted", elsewhere.id, None, T0 + 15 * S),
    ]


def test_refused_and_repeated_transfers_append_no_event(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    wallet = _open(store, tenant, "wallet", debits_must_not_exceed_credits=True)
    topup = _pay(tenant, bank, wallet, 100)
    assert _submit_at(store, clock, T0 + S, topup) == [R.OK]
    before = _events(store, tenant)
    assert [e[1] for e in before] == ["account.created", "account.created", "transfer.posted"]

    unbalanced = TransferSpec(
        tenant, uuid.uuid4(),
        (PostingRequest(bank, D, 10, "USD"), PostingRequest(wallet, C, 9, "USD")),
    )  # fmt: skip
    assert _submit_at(
        store, clock, T0 + 2 * S,
        _pay(tenant, wallet, bank, 101),
        unbalanced,
        PostPending(tenant, uuid.uuid4(), uuid.uuid4()),
        ReverseTransfer(tenant, uuid.uuid4(), uuid.uuid4()),
        topup,
    ) == [
        R.INSUFFICIENT_FUNDS, R.UNBALANCED, R.PENDING_NOT_FOUND, R.TRANSFER_NOT_FOUND, R.EXISTS,
    ]  # fmt: skip
    assert _submit_at(
        store, clock, T0 + 3 * S,
        _pay(tenant, wallet, bank, 60), _pay(tenant, wallet, bank, 60), atomic=True,
    ) == [R.LINKED_TRANSFER_FAILED, R.INSUFFICIENT_FUNDS]  # fmt: skip

    assert _events(store, tenant) == before
    assert _balances(store, tenant, wallet) == Balances(0, 100, 0, 0)


# ---- holds that time out -------------------------------------------------------------------


def test_an_expired_hold_is_released_once_and_can_no_longer_be_posted(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    wallet = _open(store, tenant, "wallet", debits_must_not_exceed_credits=True)
    shop = _open(store, tenant, "shop")
    hold = _pay(tenant, wallet, shop, 3_000, pending=True, timeout_seconds=60)
    assert _submit_at(store, clock, T0 + S, _pay(tenant, bank, wallet, 10_000)) == [R.OK]
    assert _submit_at(store, clock, T0 + 10 * S, hold) == [R.OK]
    assert _balances(store, tenant, wallet) == Balances(0, 10_000, 3_000, 0)

    # A microsecond before its timeout the hold is not yet due.
    clock.now = T0 + 70 * S - 1
    assert expire_pending(store.uow(), store.writer, clock.now) == []

    clock.now = T0 + 70 * S
    [expiry] = expire_pending(store.uow(), store.writer, clock.now)
    assert (expiry.code, expiry.seq) == (R.OK, 3)
    assert expire_pending(store.uow(), store.writer, clock.now) == []
    clock.now = T0 + 3_600 * S
    assert expire_pending(store.uow(), store.writer, clock.now) == []
    # A retried expiry carries the same deterministic id: it is a repeat, not a second release.
    assert [r.code for r in store.submit([ExpirePending(tenant, expiry.id, hold.id)])] == [R.EXISTS]

    assert _balances(store, tenant, wallet) == Balances(0, 10_000, 0, 0)
    assert _balances(store, tenant, shop) == Balances()
    with store.read() as repo:
        held = repo.get_transfer(tenant, hold.id)
        released = repo.get_transfer(tenant, expiry.id)
    assert held is not None
    assert released is not None
    assert held.timeout_at == from_micros(T0 + 70 * S)
    assert (held.resolution, held.resolved_by) == (TransferKind.EXPIRE_PENDING, expiry.id)
    assert (released.kind, released.pending_id, released.created_at) == (
        TransferKind.EXPIRE_PENDING,
        hold.id,
        from_micros(T0 + 70 * S),
    )
    lines = [(p.account_id, p.side, p.posted_amount, p.pending_amount) for p in released.postings]
    assert lines == [
        (wallet, D, 0, -3_000),
        (shop, C, 0, -3_000),
    ]  # fmt: skip

    later = PostPending(tenant, uuid.uuid4(), hold.id)
    void = VoidPending(tenant, uuid.uuid4(), hold.id)
    assert _submit_at(store, clock, T0 + 3_601 * S, later, void) == [
        R.PENDING_EXPIRED,
        R.PENDING_EXPIRED,
    ]  # fmt: skip
    assert _balances(store, tenant, wallet) == Balances(0, 10_000, 0, 0)
    assert _balances(store, tenant, shop) == Balances()


def test_a_timed_out_hold_is_refused_before_the_expiry_job_gets_to_it(
    store: LedgerStore, clock: FakeClock, tenant: uuid.UUID
) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET)
    wallet = _open(store, tenant, "wallet", debits_must_not_exceed_credits=True)
    shop = _open(store, tenant, "shop")
    early = _pay(tenant, wallet, shop, 1_000, pending=True, timeout_seconds=60)
    late = _pay(tenant, wallet, shop, 2_000, pending=True, timeout_seconds=60)
    assert _submit_at(store, clock, T0, _pay(tenant, bank, wallet, 10_000), early, late) == [
        R.OK, R.OK, R.OK,
    ]  # fmt: skip

    # Up to the last microsecond before the timeout a hold may be captured...
    in_time = PostPending(tenant, uuid.uuid4(), early.id)
    assert _submit_at(store, clock, T0 + 60 * S - 1, in_time) == [R.OK]
    # ...from the timeout on it may not, though nothing has expired it yet.
    capture = PostPending(tenant, uuid.uuid4(), late.id)
    void = VoidPending(tenant, uuid.uuid4(), late.id)
    assert _submit_at(store, clock, T0 + 60 * S, capture, void) == [
        R.PENDING_EXPIRED,
        R.PENDING_EXPIRED,
    ]
    # Still held: only the expiry releases it.
    assert _balances(store, tenant, wallet) == Balances(1_000, 10_000, 2_000, 0)
    with store.read() as repo:
        stored = repo.get_transfer(tenant, late.id)
        assert stored is not None
        assert stored.resolved_by is None
        assert repo.get_transfer(tenant, capture.id) is None

    [expiry] = expire_pending(store.uow(), store.writer, clock.now)
    assert expiry.code is R.OK
    assert _balances(store, tenant, wallet) == Balances(1_000, 10_000, 0, 0)
    assert _balances(store, tenant, shop) == Balances(0, 1_000, 0, 0)
    with store.read() as repo:
        stored = repo.get_transfer(tenant, late.id)
    assert stored is not None
    assert (stored.resolution, stored.resolved_by) == (TransferKind.EXPIRE_PENDING, expiry.id)
