"""`settle ledger verify`: a healthy ledger verifies; a tampered one names the culprit.

To tamper, a story first drops the immutability triggers (as someone with the database's
owner role could), then edits rows behind the ledger's back. The verifier recomputes every
balance from the postings and re-walks every tenant's hash chain, and must point at exactly
the account or transfer that was touched, and at nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from settle.ledger.errors import ResultCode
from settle.ledger.model import AccountType
from settle.ledger.requests import PostPending, ReverseTransfer, VoidPending
from settle.ledger.service import expire_pending
from settle.ledger.verify import Discrepancy
from settle.store import tables
from settle.store.db import create_db_engine, migrations_current
from settle.store.ledger_store import LedgerStore
from settle.store.ledger_verify import verify_ledger

from .stories import T0, FakeClock
from .stories import open_usd as _open
from .stories import pay as _pay

if TYPE_CHECKING:
    import sqlalchemy as sa

R = ResultCode
A = tables.ledger_accounts
P = tables.ledger_postings
T = tables.ledger_transfers
SECOND = 1_000_000
SETTLE = Path(sys.executable).with_name("settle")

_IMMUTABILITY_TRIGGERS = {
    "postgresql": [
        "DROP TRIGGER ledger_postings_immutable ON ledger_postings",
        "DROP TRIGGER ledger_transfers_immutable ON ledger_transfers",
    ],
    "sqlite": [
        "DROP TRIGGER ledger_postings_no_update",
        "DROP TRIGGER ledger_postings_no_delete",
        "DROP TRIGGER ledger_transfers_no_update",
        "DROP TRIGGER ledger_transfers_no_delete",
    ],
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[LedgerStore]:
    """The ledger on a fresh database of each kind, with a clock the test moves."""
    ledger = LedgerStore(db_url, clock=clock)
    yield ledger
    ledger.close()


@dataclass
class Books:
    """Two tenants' ledgers; ``transfers`` holds tenant A's transfer ids in sequence order."""

    a: uuid.UUID
    b: uuid.UUID
    bank: uuid.UUID
    wallet: uuid.UUID
    shop: uuid.UUID
    fees: uuid.UUID
    transfers: list[uuid.UUID]


def _books(store: LedgerStore, clock: FakeClock) -> Books:
    """Tenant A: top-up, hold + partial capture, hold + void, payment + reversal, a hold that
    expires and one still open. Tenant B: a top-up and an open hold. 12 transfers, 6 accounts."""
    a, b = uuid.uuid4(), uuid.uuid4()
    bank = _open(store, a, "bank", AccountType.ASSET)
    wallet = _open(store, a, "wallet", AccountType.LIABILITY, debits_must_not_exceed_credits=True)
    shop = _open(store, a, "shop", AccountType.LIABILITY)
    fees = _open(store, a, "fees", AccountType.REVENUE)
    topup = _pay(a, bank, wallet, 10_000)
    hold = _pay(a, wallet, shop, 3_000, pending=True, timeout_seconds=3_600)
    capture = PostPending(a, uuid.uuid4(), hold.id, amount=2_000)
    hold2 = _pay(a, wallet, shop, 1_000, pending=True)
    void = VoidPending(a, uuid.uuid4(), hold2.id)
    payment = _pay(a, wallet, fees, 500, description="monthly fee")
    refund = ReverseTransfer(a, uuid.uuid4(), payment.id)
    lapsing = _pay(a, wallet, shop, 700, pending=True, timeout_seconds=60)
    steps = [topup, hold, capture, hold2, void, payment, refund, lapsing]
    for step in steps:
        clock.now += SECOND
        assert [r.code for r in store.submit([step])] == [R.OK]
    clock.now += 60 * SECOND
    [expiry] = expire_pending(store.uow(), store.writer, clock.now)
    assert expiry.code is R.OK
    clock.now += SECOND
    still_open = _pay(a, wallet, shop, 400, pending=True)
    assert [r.code for r in store.submit([still_open])] == [R.OK]

    b_bank = _open(store, b, "bank", AccountType.ASSET)
    b_wallet = _open(store, b, "wallet", AccountType.LIABILITY)
    b_steps = [_pay(b, b_bank, b_wallet, 50), _pay(b, b_wallet, b_bank, 20, pending=True)]
    assert [r.code for r in store.submit(b_steps)] == [R.OK, R.OK]
    ids = [s.id for s in steps] + [expiry.id, still_open.id]
    return Books(a, b, bank, wallet, shop, fees, ids)


def _drop_immutability_triggers(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for statement in _IMMUTABILITY_TRIGGERS[conn.dialect.name]:
            conn.exec_driver_sql(statement)


def _tamper(engine: sa.Engine, statement: sa.Executable) -> None:
    _drop_immutability_triggers(engine)
    with engine.begin() as conn:
        assert conn.execute(statement).rowcount == 1  # type: ignore[attr-defined]


def _sorted(problems: list[Discrepancy]) -> list[Discrepancy]:
    return sorted(problems, key=lambda p: (p.kind, p.subject))


def test_a_healthy_ledger_of_two_tenants_verifies(store: LedgerStore, clock: FakeClock) -> None:
    books = _books(store, clock)

    report = verify_ledger(store.db)
    assert report.problems == []
    assert report.ok is True
    assert (report.tenants, report.transfers, report.accounts) == (2, 12, 6)

    only_b = verify_ledger(store.db, books.b)
    assert (only_b.ok, only_b.tenants, only_b.transfers, only_b.accounts) == (True, 1, 2, 2)
    nobody = verify_ledger(store.db, uuid.uuid4())
    assert (nobody.ok, nobody.tenants, nobody.transfers, nobody.accounts) == (True, 0, 0, 0)


def test_verify_reads_small_chunks_the_same_way(store: LedgerStore, clock: FakeClock) -> None:
    """The walk pages through transfers; a page boundary between a transfer and the next
    must change nothing."""
    _books(store, clock)
    for chunk in (1, 3, 7):
        report = verify_ledger(store.db, chunk=chunk)
        assert (report.problems, report.transfers) == ([], 12)


def test_an_edited_posting_amount_is_named_by_transfer_and_account(
    store: LedgerStore, clock: FakeClock
) -> None:
    books = _books(store, clock)
    payment = books.transfers[5]  # seq 6: wallet pays 500 of fees
    _tamper(
        store.db,
        P.update()
        .where(P.c.tenant_id == books.a, P.c.seq == 6, P.c.idx == 0)
        .values(posted_amount=600),
    )

    report = verify_ledger(store.db)
    assert report.problems == [
        Discrepancy(books.a, "hash_mismatch", str(payment),
                    "seq 6: the stored hash does not match"),
        Discrepancy(books.a, "running_balance_mismatch", str(books.wallet),
                    "after seq 6: stored (2500, 10000, 0, 0), recomputed (2600, 10000, 0, 0)"),
        Discrepancy(books.a, "unbalanced_transfer", str(payment), "USD does not balance"),
    ]  # fmt: skip
    assert verify_ledger(store.db, books.b).ok is True


def test_an_edited_description_breaks_the_hash_of_that_transfer_only(
    store: LedgerStore, clock: FakeClock
) -> None:
    books = _books(store, clock)
    capture = books.transfers[2]
    _tamper(
        store.db,
        T.update()
        .where(T.c.tenant_id == books.a, T.c.id == capture)
        .values(description="capture (edited)"),
    )

    report = verify_ledger(store.db)
    assert report.problems == [
        Discrepancy(books.a, "hash_mismatch", str(capture), "seq 3: the stored hash does not match")
    ]
    assert (report.tenants, report.transfers, report.accounts) == (2, 12, 6)


def test_an_edited_account_counter_is_a_balance_mismatch(
    store: LedgerStore, clock: FakeClock
) -> None:
    books = _books(store, clock)
    # No trigger guards the account row (it changes with every transfer): verify does.
    with store.db.begin() as conn:
        conn.execute(
            A.update()
            .where(A.c.tenant_id == books.a, A.c.id == books.shop)
            .values(credits_posted=A.c.credits_posted + 1)
        )

    report = verify_ledger(store.db)
    assert report.problems == [
        Discrepancy(books.a, "balance_mismatch", str(books.shop),
                    "stored (0, 2001, 0, 400), recomputed from postings (0, 2000, 0, 400)"),
    ]  # fmt: skip


def test_deleting_the_last_transfer_leaves_the_chain_head_pointing_past_the_end(
    store: LedgerStore, clock: FakeClock
) -> None:
    books = _books(store, clock)
    still_open = books.transfers[-1]  # seq 10: a 400 hold, wallet to shop
    _drop_immutability_triggers(store.db)
    with store.db.begin() as conn:
        assert conn.execute(P.delete().where(P.c.tenant_id == books.a, P.c.seq == 10)).rowcount == 2
        assert conn.execute(T.delete().where(T.c.id == still_open)).rowcount == 1

    report = verify_ledger(store.db)
    assert _sorted(report.problems) == _sorted(
        [
            Discrepancy(books.a, "chain_head_mismatch", str(books.a),
                        "head at seq 10, chain ends at seq 9"),
            Discrepancy(books.a, "balance_mismatch", str(books.wallet),
                        "stored (2500, 10500, 400, 0), recomputed from postings"
                        " (2500, 10500, 0, 0)"),
            Discrepancy(books.a, "balance_mismatch", str(books.shop),
                        "stored (0, 2000, 0, 400), recomputed from postings (0, 2000, 0, 0)"),
            Discrepancy(books.a, "holds_mismatch", str(books.a),
                        "1 hold rows without an open pending, 0 pendings missing"),
        ]
    )  # fmt: skip
    assert verify_ledger(store.db, books.b).ok is True


def test_an_entry_forged_past_the_ledger_passes_the_triggers_but_not_verify(
    store: LedgerStore, clock: FakeClock
) -> None:
    """Balanced postings written by hand satisfy the database; they cannot fake the chain."""
    books = _books(store, clock)
    forged = uuid.uuid4()
    with store.db.begin() as conn:
        conn.execute(
            P.insert().values(
                [
                    {"tenant_id": books.a, "seq": 11, "idx": idx, "transfer_id": forged,
                     "account_id": account, "side": side, "currency": "USD",
                     "posted_amount": 1_000, "pending_amount": 0, "created_at": clock.now,
                     "debits_posted": dp, "credits_posted": cp, "debits_pending": dpe,
                     "credits_pending": cpe}
                    for idx, (account, side, dp, cp, dpe, cpe) in enumerate(
                        [(books.fees, "D", 1_500, 500, 0, 0),
                         (books.wallet, "C", 2_500, 11_500, 400, 0)]
                    )
                ]
            )
        )  # fmt: skip
        conn.execute(
            T.insert().values(
                tenant_id=books.a, id=forged, seq=11, kind="transfer", description="",
                metadata={}, effective_at=clock.now, created_at=clock.now,
                fingerprint=bytes(32), hash=bytes(32),
            )
        )  # fmt: skip

    report = verify_ledger(store.db)
    assert _sorted(report.problems) == _sorted(
        [
            Discrepancy(books.a, "hash_mismatch", str(forged),
                        "seq 11: the stored hash does not match"),
            Discrepancy(books.a, "chain_head_mismatch", str(books.a),
                        "head at seq 10, chain ends at seq 11"),
            Discrepancy(books.a, "balance_mismatch", str(books.wallet),
                        "stored (2500, 10500, 400, 0), recomputed from postings"
                        " (2500, 11500, 400, 0)"),
            Discrepancy(books.a, "balance_mismatch", str(books.fees),
                        "stored (500, 500, 0, 0), recomputed from postings (1500, 500, 0, 0)"),
        ]
    )  # fmt: skip


# ---- the command line ---------------------------------------------------------------------


def _settle(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``settle`` entry point, as an operator would."""
    env = {k: v for k, v in os.environ.items() if k != "SETTLE_DATABASE_URL"}
    return subprocess.run(
        [str(SETTLE), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
        check=False,
    )  # fmt: skip


def test_the_verify_command_exits_zero_on_healthy_books_and_one_naming_the_culprit(
    store: LedgerStore, clock: FakeClock, db_url: str, tmp_path: Path
) -> None:
    books = _books(store, clock)

    healthy = _settle("ledger", "verify", "--database-url", db_url, "--json", cwd=tmp_path)
    assert (healthy.returncode, healthy.stderr) == (0, "")
    assert json.loads(healthy.stdout) == {
        "ok": True, "tenants": 2, "transfers": 12, "accounts": 6, "problems": [],
    }  # fmt: skip

    capture = books.transfers[2]
    _tamper(
        store.db,
        T.update().where(T.c.tenant_id == books.a, T.c.id == capture).values(description="x"),
    )
    tampered = _settle("ledger", "verify", "--database-url", db_url, "--json", cwd=tmp_path)
    assert tampered.returncode == 1
    assert json.loads(tampered.stdout) == {
        "ok": False, "tenants": 2, "transfers": 12, "accounts": 6,
        "problems": [
            {"tenant_id": str(books.a), "kind": "hash_mismatch", "subject": str(capture),
             "detail": "seq 3: the stored hash does not match"},
        ],
    }  # fmt: skip

    only_a = _settle(
        "ledger", "verify", "--database-url", db_url, "--tenant", str(books.a), cwd=tmp_path
    )
    assert only_a.returncode == 1
    assert only_a.stderr == (
        f"hash_mismatch: {capture} (tenant {books.a}): seq 3: the stored hash does not match\n"
    )
    assert only_a.stdout == "FAILED: 1 tenants, 10 transfers, 4 accounts, 1 problems\n"


_DEMO_OUTPUT = """\
- Alice tops up 100.00: ok
- A card hold of 40.00 at the shop (2.00 fee): ok
- The shop captures 30.00 of it (1.50 fee), releasing the rest: ok
- A second hold of 20.00, then voided: ok, ok
- The top-up is reversed? No: Alice spent some, so it is refused: insufficient_funds

Balances (normal side; available counts holds against you):
  Operating bank account   asset     posted   100.00  pending    0.00  available   100.00
  Alice's wallet           liability posted    70.00  pending    0.00  available    70.00
  Shop's balance           liability posted    28.50  pending    0.00  available    28.50
  Fee revenue              revenue   posted     1.50  pending    0.00  available     1.50

ledger verify: ok ({transfers} transfers)
"""


def test_db_upgrade_then_the_demo_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "books" / "settle.db"
    url = f"sqlite:///{path}"

    upgrade = _settle("db", "upgrade", "--database-url", url, cwd=tmp_path)
    assert (upgrade.returncode, upgrade.stdout) == (0, f"database at head ({url})\n")
    engine = create_db_engine(url)
    assert migrations_current(engine) is True
    engine.dispose()

    first = _settle("ledger", "demo", "--database-url", url, cwd=tmp_path)
    assert (first.returncode, first.stdout) == (0, _DEMO_OUTPUT.format(transfers=5))
    # The demo tenant is fixed: a second run adds a second set of books to the same chain.
    second = _settle("ledger", "demo", "--database-url", url, cwd=tmp_path)
    assert (second.returncode, second.stdout) == (0, _DEMO_OUTPUT.format(transfers=10))
    assert not (tmp_path / "var").exists()
