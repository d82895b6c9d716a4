"""The database itself guards the journal: whoever writes SQL by hand cannot rewrite history.

Each story commits real transfers through the ledger, then goes around it with raw SQL and
shows the database refusing, on SQLite and on PostgreSQL, with every row left as it was.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from settle.ledger.errors import ResultCode
from settle.ledger.model import AccountType
from settle.store import tables
from settle.store.ledger_verify import verify_ledger

from .stories import open_usd as _open
from .stories import pay as _pay

if TYPE_CHECKING:
    from settle.store.ledger_store import LedgerStore

R = ResultCode
P = tables.ledger_postings
T = tables.ledger_transfers
NOW = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds

POSTGRES_ONLY = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _books(store: LedgerStore, tenant: uuid.UUID) -> dict[str, uuid.UUID]:
    """A bank, a wallet that may not go negative, an overdraft line, a capped receivable."""
    accounts = {
        "bank": _open(store, tenant, "bank", AccountType.ASSET),
        "wallet": _open(
            store, tenant, "wallet", AccountType.LIABILITY, debits_must_not_exceed_credits=True
        ),
        "overdraft": _open(
            store,
            tenant,
            "overdraft",
            AccountType.LIABILITY,
            debits_must_not_exceed_credits=True,
            overdraft_limit=5_000,
        ),
        "receivable": _open(
            store, tenant, "receivable", AccountType.ASSET, credits_must_not_exceed_debits=True
        ),
    }
    results = store.submit(
        [
            _pay(tenant, accounts["bank"], accounts["wallet"], 10_000, description="top-up"),
            _pay(tenant, accounts["wallet"], accounts["bank"], 2_500, pending=True),
        ]
    )
    assert [r.code for r in results] == [R.OK, R.OK]
    return accounts


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the ledger's tables, in primary-key order."""
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            ]
            for table in (
                tables.ledger_accounts,
                tables.ledger_chain_heads,
                tables.ledger_pending_holds,
                P,
                T,
            )
        }


def _execute(engine: sa.Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement))


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE ledger_postings SET posted_amount = posted_amount + 1",
         "UPDATE on ledger_postings"),
        ("UPDATE ledger_postings SET posted_amount = posted_amount",
         "UPDATE on ledger_postings"),
        ("DELETE FROM ledger_postings", "DELETE on ledger_postings"),
        ("UPDATE ledger_transfers SET description = 'edited'", "UPDATE on ledger_transfers"),
        ("DELETE FROM ledger_transfers", "DELETE on ledger_transfers"),
    ],
)  # fmt: skip
def test_committed_transfers_and_postings_cannot_be_edited_or_deleted(
    store: LedgerStore, tenant: uuid.UUID, statement: str, refusal: str
) -> None:
    _books(store, tenant)
    before = _snapshot(store.db)
    assert len(before["ledger_postings"]) == 4
    assert len(before["ledger_transfers"]) == 2

    with pytest.raises(sa.exc.IntegrityError, match=f"ledger rows are immutable: {refusal}"):
        _execute(store.db, statement)

    assert _snapshot(store.db) == before
    assert verify_ledger(store.db).problems == []


@POSTGRES_ONLY
@pytest.mark.parametrize("table", ["ledger_postings", "ledger_transfers"])
def test_postgres_refuses_to_truncate_the_journal(
    store: LedgerStore, tenant: uuid.UUID, table: str
) -> None:
    _books(store, tenant)
    before = _snapshot(store.db)

    with pytest.raises(
        sa.exc.IntegrityError, match=f"ledger rows are immutable: TRUNCATE on {table} rejected"
    ):
        _execute(store.db, f"TRUNCATE {table}")

    assert _snapshot(store.db) == before


def _write_by_hand(
    conn: sa.Connection,
    tenant: uuid.UUID,
    seq: int,
    lines: list[tuple[uuid.UUID, str, str, int, int]],
) -> uuid.UUID:
    """Insert postings (one statement) and then their transfer row, bypassing the ledger."""
    transfer_id = uuid.uuid4()
    if lines:
        conn.execute(
            P.insert().values(
                [
                    {
                        "tenant_id": tenant, "seq": seq, "idx": idx, "transfer_id": transfer_id,
                        "account_id": account, "side": side, "currency": currency,
                        "posted_amount": posted, "pending_amount": pending, "created_at": NOW,
                        "debits_posted": 0, "credits_posted": 0, "debits_pending": 0,
                        "credits_pending": 0,
                    }
                    for idx, (account, side, currency, posted, pending) in enumerate(lines)
                ]
            )
        )  # fmt: skip
    conn.execute(
        T.insert().values(
            tenant_id=tenant, id=transfer_id, seq=seq, kind="transfer", description="by hand",
            metadata={}, effective_at=NOW, created_at=NOW, fingerprint=bytes(32),
            hash=bytes(32),
        )
    )  # fmt: skip
    return transfer_id


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([("bank", "D", "USD", 100, 0), ("wallet", "C", "USD", 99, 0)],
                     id="debits-exceed-credits"),
        pytest.param([("bank", "D", "USD", 100, 0)], id="a-lone-posting"),
        pytest.param([("bank", "D", "USD", 100, 40), ("wallet", "C", "USD", 100, 30)],
                     id="posted-balances-but-holds-do-not"),
        pytest.param([("bank", "D", "USD", 100, 0), ("wallet", "C", "EUR", 100, 0)],
                     id="balanced-in-total-but-not-per-currency"),
        pytest.param([("bank", "D", "USD", 100, 0), ("wallet", "C", "USD", 100, 0),
                      ("receivable", "C", "USD", 1, 0)],
                     id="three-lines-off-by-one"),
        pytest.param([("bank", "D", "USD", 100, 0), ("wallet", "C", "USD", 100, 0),
                      ("overdraft", "D", "EUR", 50, 0), ("receivable", "C", "EUR", 49, 0)],
                     id="two-currencies-one-of-them-off"),
        pytest.param([("bank", "D", "EUR", 100, 0), ("wallet", "C", "EUR", 100, 0),
                      ("overdraft", "D", "USD", 0, 7), ("receivable", "C", "USD", 1, 0)],
                     id="two-currencies-holds-off-in-one"),
    ],
)  # fmt: skip
def test_an_unbalanced_entry_written_by_hand_is_refused(
    store: LedgerStore, tenant: uuid.UUID, lines: list[tuple[str, str, str, int, int]]
) -> None:
    accounts = _books(store, tenant)
    before = _snapshot(store.db)

    with (
        pytest.raises(sa.exc.IntegrityError, match="unbalanced transfer"),
        store.db.begin() as conn,
    ):
        _write_by_hand(conn, tenant, 3, [(accounts[a], s, c, p, q) for a, s, c, p, q in lines])

    assert _snapshot(store.db) == before


def test_a_transfer_row_without_any_postings_is_refused(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    """An entry with nothing in it is no entry: the database wants at least two lines."""
    _books(store, tenant)
    before = _snapshot(store.db)

    with (
        pytest.raises(sa.exc.IntegrityError, match=r"fewer than two postings|unbalanced transfer"),
        store.db.begin() as conn,
    ):
        _write_by_hand(conn, tenant, 3, [])

    assert _snapshot(store.db) == before


def test_the_balance_trigger_lets_a_balanced_entry_through(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    """The control for the refusals above: the same hand-written rows, balanced, are accepted.

    (Accepted by the triggers, that is: ``settle ledger verify`` still flags such an entry,
    see ``test_verify.py``.)
    """
    accounts = _books(store, tenant)
    lines = [
        (accounts["bank"], "D", "USD", 100, 40),
        (accounts["wallet"], "C", "USD", 60, 40),
        (accounts["receivable"], "C", "USD", 40, 0),
    ]
    with store.db.begin() as conn:
        transfer_id = _write_by_hand(conn, tenant, 3, lines)

    with store.db.connect() as conn:
        assert conn.execute(
            sa.select(T.c.seq, T.c.description).where(T.c.id == transfer_id)
        ).all() == [(3, "by hand")]
        assert conn.execute(
            sa.select(P.c.idx, P.c.posted_amount, P.c.pending_amount)
            .where(P.c.tenant_id == tenant, P.c.seq == 3)
            .order_by(P.c.idx)
        ).all() == [(0, 100, 40), (1, 60, 40), (2, 40, 0)]


def test_an_entry_in_two_currencies_each_balanced_is_let_through(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    """An FX-style entry: dollars out, euros in, each currency balanced on its own."""
    accounts = _books(store, tenant)
    lines = [
        (accounts["bank"], "D", "USD", 100, 0),
        (accounts["wallet"], "C", "USD", 100, 0),
        (accounts["overdraft"], "D", "EUR", 92, 5),
        (accounts["receivable"], "C", "EUR", 92, 5),
    ]
    with store.db.begin() as conn:
        _write_by_hand(conn, tenant, 3, lines)

    with store.db.connect() as conn:
        assert conn.execute(
            sa.select(P.c.currency, sa.func.count(), sa.func.sum(P.c.posted_amount))
            .where(P.c.tenant_id == tenant, P.c.seq == 3)
            .group_by(P.c.currency)
            .order_by(P.c.currency)
        ).all() == [("EUR", 2, 184), ("USD", 2, 200)]


@pytest.mark.parametrize(
    ("account", "column", "allowed", "refused", "constraint"),
    [
        # 10,000 credited, 2,500 on hold: at most 7,500 more may be debited.
        ("wallet", "debits_posted", 7_500, 7_501, "debits_within_credits"),
        ("wallet", "debits_pending", 10_000, 10_001, "debits_within_credits"),
        # Nothing credited, but a 5,000 overdraft line.
        ("overdraft", "debits_posted", 5_000, 5_001, "debits_within_credits"),
        # Nothing debited: nothing may be credited.
        ("receivable", "credits_posted", 0, 1, "credits_within_debits"),
        ("receivable", "credits_pending", 0, 1, "credits_within_debits"),
        # No counter may go below zero, constrained account or not.
        ("bank", "debits_posted", 0, -1, "counters_non_negative"),
        ("bank", "credits_posted", 0, -1, "counters_non_negative"),
        ("bank", "debits_pending", 0, -1, "counters_non_negative"),
        ("bank", "credits_pending", 0, -1, "counters_non_negative"),
    ],
)
def test_check_constraints_refuse_counters_that_break_an_accounts_rules(
    store: LedgerStore,
    tenant: uuid.UUID,
    account: str,
    column: str,
    allowed: int,
    refused: int,
    constraint: str,
) -> None:
    _books(store, tenant)
    before = _snapshot(store.db)
    update = f"UPDATE ledger_accounts SET {column} = {{value}} WHERE code = '{account}'"

    with pytest.raises(sa.exc.IntegrityError, match=f"ck_ledger_accounts_{constraint}"):
        _execute(store.db, update.format(value=refused))
    assert _snapshot(store.db) == before

    # The value right at the limit is accepted: it is the rule that refuses, not the statement.
    with store.db.connect() as conn, conn.begin() as transaction:
        assert conn.execute(sa.text(update.format(value=allowed))).rowcount == 1
        transaction.rollback()
    assert _snapshot(store.db) == before
