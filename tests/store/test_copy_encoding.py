"""Batches big enough for binary ``COPY`` land exactly as applied, on both databases.

On PostgreSQL a batch of 256 rows or more is written with ``COPY`` payloads that the preparer
encodes itself (:mod:`settle.store.pg_copy`) while the previous batch commits. These stories
push such batches through the store with every shape a row can take: pending transfers with
and without timeouts, partial captures, voids, reversals, descriptions in several scripts,
metadata, effective dates. Then the stored rows must equal, column for column, what the
applier produced, and ``verify_ledger`` must re-walk the hash chain from the stored columns
(so one wrong byte in a description, a digest or a timestamp is a failure).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg
import pytest
import sqlalchemy as sa

from settle.ledger.errors import ResultCode
from settle.ledger.model import AccountType
from settle.ledger.requests import PostPending, ReverseTransfer, TransferSpec, VoidPending
from settle.store import tables
from settle.store.ledger_verify import verify_ledger
from settle.store.pg_copy import encode_events, encode_holds, encode_postings, encode_transfers

from .stories import open_usd

if TYPE_CHECKING:
    from settle.store.ledger_store import LedgerStore

R = ResultCode
T, P, E = tables.ledger_transfers, tables.ledger_postings, tables.outbox_events
DESCRIPTIONS = ["", "rent", "Überweisung März", "東京 → 大阪", "tab\tand\nnewline", "emoji 💸"]


def _varied_batch(
    tenant: uuid.UUID, bank: uuid.UUID, wallets: list[uuid.UUID], n: int
) -> list[TransferSpec]:
    batch = []
    for i in range(n):
        debit, credit = wallets[i % len(wallets)], wallets[(i * 7 + 3) % len(wallets)]
        if debit == credit:
            debit = bank
        batch.append(
            TransferSpec.shorthand(
                tenant, uuid.uuid4(), debit_account_id=debit, credit_account_id=credit,
                amount=1 + i % 997, currency="USD",
                pending=i % 5 == 0, timeout_seconds=3600 if i % 10 == 0 else None,
                description=DESCRIPTIONS[i % len(DESCRIPTIONS)],
                metadata={"order": f"o-{i}", "note": "ß"} if i % 3 == 0 else None,
                effective_at=datetime(2025, 12, 31, 23, 59, i % 60, tzinfo=UTC)
                if i % 4 == 0
                else None,
            )
        )  # fmt: skip
    return batch


def test_a_big_varied_batch_and_its_resolutions_land_exactly_and_verify(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    bank = open_usd(store, tenant, "bank", AccountType.ASSET)
    wallets = [open_usd(store, tenant, f"wallet-{i}", AccountType.LIABILITY) for i in range(40)]
    first = _varied_batch(tenant, bank, wallets, 600)
    assert all(r.code is R.OK for r in store.submit(first))

    pendings = [req for req in first if req.pending]
    posted = [req for req in first if not req.pending]
    second = [
        *(
            PostPending(tenant, uuid.uuid4(), p.id, amount=1 if i % 2 else None,
                        description=DESCRIPTIONS[i % len(DESCRIPTIONS)])
            for i, p in enumerate(pendings[:60])
        ),
        *(VoidPending(tenant, uuid.uuid4(), p.id, description="void") for p in pendings[60:]),
        *(ReverseTransfer(tenant, uuid.uuid4(), t.id, description="undo", metadata={"why": "é"})
          for t in posted[:200]),
        *_varied_batch(tenant, bank, wallets, 300),
    ]  # fmt: skip
    results = store.submit(second)
    assert [r.code for r in results] == [R.OK] * len(second)

    assert verify_ledger(store.db).problems == []
    with store.db.connect() as conn:
        stored = {row.id: row for row in conn.execute(sa.select(T).where(T.c.tenant_id == tenant))}
        assert len(stored) == len(first) + len(second)
        for req in first:
            row = stored[req.id]
            assert row.description == req.description
            assert row.metadata == dict(req.metadata)
            assert row.kind == ("pending" if req.pending else "transfer")
            assert (row.timeout_at is None) == (req.timeout_seconds is None)
            if req.effective_at is not None:
                assert row.effective_at == int(req.effective_at.timestamp()) * 1_000_000
            assert row.fingerprint == req.fingerprint()
        for req in second[:60]:
            assert stored[req.id].pending_id == req.pending_id
        reversals = [req for req in second if isinstance(req, ReverseTransfer)]
        assert [stored[req.id].reversal_of for req in reversals] == [t.id for t in posted[:200]]
        postings = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(P.c.seq))).where(
                P.c.tenant_id == tenant
            )
        ).one()
        assert postings == (2 * len(stored), len(stored))
        events = conn.execute(
            sa.select(E.c.type, sa.func.count())
            .where(E.c.tenant_id == tenant, E.c.type.like("transfer.%"))
            .group_by(E.c.type)
            .order_by(E.c.type)
        ).all()
    assert events == [
        ("transfer.pending", len(pendings) + 60),
        ("transfer.posted", len(posted) + 60 + 240),
        ("transfer.reversed", 200),
        ("transfer.voided", len(pendings) - 60),
    ]


@pytest.mark.postgres
def test_copy_payloads_read_back_exactly_what_was_encoded(postgres_server: str) -> None:
    """The encoders against PostgreSQL itself: every value, NULLs and edge values included."""
    tenant, tref, aref, other = (uuid.uuid4().bytes for _ in range(4))
    big = 2**63 - 1
    postings = [
        (tenant, 1, 0, tref, aref, "D", "USD", big, 0, 1, big, 0, 0, 0),
        (tenant, 1, 1, tref, other, "C", "JPY", 1, -big, -1, 0, big, 5, big),
        (tenant, 2, 32767, other, aref, "C", "BHD", 0, 7, 2**40, 3, 4, 5, 6),
    ]
    transfers = [
        (tenant, tref, 1, "transfer", None, None, None, "", "{}", 10, 11, bytes(32),
         bytes(range(32))),
        (tenant, other, 2, "post_pending", aref, None, 2**62, "Überweisung 💸\t\n\\",
         '{"a":"ß","b":"x"}', -5, 12, b"\xff" * 32, b"\x00\x01" * 16),
        (tenant, aref, 3, "reversal", None, tref, None, "undo", "{}", 0, 13, b"\x7f" * 32,
         b"\x80" * 32),
    ]  # fmt: skip
    events = [
        (tenant, 1, "transfer.posted", tref, None, 11),
        (tenant, 2, "account.created", aref, '{"code":"wallet","n":1}', 12),
    ]
    holds = [(tenant, tref, 1, None), (tenant, other, 2, 2**62), (tenant, aref, 3, -7)]
    url = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TEMP TABLE p (tenant_id uuid, seq int8, idx int2, transfer_id uuid,"
            " account_id uuid, side text, currency text, posted_amount int8,"
            " pending_amount int8, created_at int8, debits_posted int8, credits_posted int8,"
            " debits_pending int8, credits_pending int8)"
        )
        conn.execute(
            "CREATE TEMP TABLE t (tenant_id uuid, id uuid, seq int8, kind text, pending_id uuid,"
            " reversal_of uuid, timeout_at int8, description text, metadata jsonb,"
            " effective_at int8, created_at int8, fingerprint bytea, hash bytea)"
        )
        conn.execute(
            "CREATE TEMP TABLE e (tenant_id uuid, seq int8, type text, object_id uuid,"
            " payload jsonb, created_at int8)"
        )
        conn.execute(
            "CREATE TEMP TABLE h (tenant_id uuid, transfer_id uuid, seq int8, timeout_at int8)"
        )
        cur = conn.cursor()
        for table, payload in (
            ("p", encode_postings(postings)),
            ("t", encode_transfers(transfers)),
            ("e", encode_events(events)),
            ("h", encode_holds(holds)),
        ):
            with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(payload)

        def back(sql: str) -> list[tuple[object, ...]]:
            return [
                tuple(v.bytes if isinstance(v, uuid.UUID) else v for v in row)
                for row in conn.execute(sql).fetchall()
            ]

        assert back("SELECT * FROM p ORDER BY seq, idx") == postings
        assert back(
            "SELECT tenant_id, id, seq, kind, pending_id, reversal_of, timeout_at, description,"
            " metadata::text, effective_at, created_at, fingerprint, hash FROM t ORDER BY seq"
        ) == [
            (*row[:8], '{"a": "ß", "b": "x"}' if row[8] != "{}" else "{}", *row[9:])
            for row in transfers
        ]
        assert back("SELECT tenant_id, seq, type, object_id, payload::text, created_at FROM e"
                    " ORDER BY seq") == [
            events[0],
            (*events[1][:4], '{"n": 1, "code": "wallet"}', events[1][5]),
        ]  # fmt: skip
        assert back("SELECT * FROM h ORDER BY seq") == holds


def test_a_posting_with_a_currency_that_is_not_three_bytes_is_refused_before_sending() -> None:
    row = (bytes(16), 1, 0, bytes(16), bytes(16), "D", "EURO", 1, 0, 0, 1, 0, 0, 0)

    with pytest.raises(ValueError, match="expected 3 bytes of text, got 'EURO'"):
        encode_postings([row])


def test_three_hundred_holds_at_once_are_copied_then_all_voided_at_once(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    """Enough holds in one batch for ``ledger_pending_holds`` to go through ``COPY`` too."""
    bank = open_usd(store, tenant, "bank", AccountType.ASSET)
    shop = open_usd(store, tenant, "shop", AccountType.LIABILITY)
    holds = [
        TransferSpec.shorthand(
            tenant, uuid.uuid4(), debit_account_id=bank, credit_account_id=shop, amount=1 + i,
            currency="USD", pending=True, timeout_seconds=60 if i % 2 else None,
        )
        for i in range(300)
    ]  # fmt: skip
    assert {r.code for r in store.submit(holds)} == {R.OK}
    with store.db.connect() as conn:
        stored = dict(
            conn.execute(
                sa.select(tables.ledger_pending_holds.c.transfer_id,
                          tables.ledger_pending_holds.c.timeout_at)
                .where(tables.ledger_pending_holds.c.tenant_id == tenant)
            ).all()
        )  # fmt: skip
    assert set(stored) == {h.id for h in holds}
    assert [stored[h.id] is None for h in holds] == [h.timeout_seconds is None for h in holds]

    voids = [VoidPending(tenant, uuid.uuid4(), h.id) for h in holds]
    assert {r.code for r in store.submit(voids)} == {R.OK}
    with store.db.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).where(tables.ledger_pending_holds.c.tenant_id == tenant)
        ).scalar_one()
    assert left == 0
    assert verify_ledger(store.db).problems == []
