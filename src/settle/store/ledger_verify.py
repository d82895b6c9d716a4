"""`settle ledger verify`: stream the ledger out of the database into the pure verifier."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from settle.ledger.requests import canonical_json
from settle.ledger.verify import AccountRecord, ChainVerifier, Discrepancy, StoredTransfer
from settle.store import tables

__all__ = ["VerifyReport", "verify_ledger"]

A = tables.ledger_accounts
H = tables.ledger_chain_heads
HOLDS = tables.ledger_pending_holds
P = tables.ledger_postings
T = tables.ledger_transfers


@dataclass(slots=True)
class VerifyReport:
    """What was checked and what did not add up."""

    tenants: int = 0
    transfers: int = 0
    accounts: int = 0
    problems: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _stream(conn: sa.Connection, tenant_id: uuid.UUID, chunk: int) -> Iterator[StoredTransfer]:
    last = 0
    while True:
        rows = list(
            conn.execute(
                sa.select(T)
                .where(T.c.tenant_id == tenant_id, T.c.seq > last)
                .order_by(T.c.seq)
                .limit(chunk)
            )
        )
        if not rows:
            return
        lines: dict[int, list[tuple[object, ...]]] = {}
        for p in conn.execute(
            sa.select(P)
            .where(P.c.tenant_id == tenant_id, P.c.seq > last, P.c.seq <= rows[-1].seq)
            .order_by(P.c.seq, P.c.idx)
        ):
            lines.setdefault(p.seq, []).append(
                (
                    (p.idx, p.account_id, p.side, p.currency, p.posted_amount, p.pending_amount),
                    (p.debits_posted, p.credits_posted, p.debits_pending, p.credits_pending),
                )
            )
        for r in rows:
            posting_rows = lines.get(r.seq, [])
            yield StoredTransfer(
                id=r.id,
                seq=r.seq,
                kind=r.kind,
                pending_id=r.pending_id,
                reversal_of=r.reversal_of,
                timeout_at=r.timeout_at,
                description=r.description,
                metadata_json=canonical_json(r.metadata),
                effective_at=r.effective_at,
                created_at=r.created_at,
                fingerprint=bytes(r.fingerprint),
                hash=bytes(r.hash),
                postings=tuple(line for line, _after in posting_rows),  # type: ignore[misc]
                balances_after=tuple(after for _line, after in posting_rows),  # type: ignore[misc]
            )
        last = rows[-1].seq


def verify_ledger(
    engine: sa.Engine, tenant_id: uuid.UUID | None = None, *, chunk: int = 5000
) -> VerifyReport:
    """Recompute all balances from postings and re-walk the hash chain of every tenant."""
    report = VerifyReport()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for the whole walk, so a running ledger can be verified.
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        tenants = sorted(
            {r[0] for r in conn.execute(sa.select(H.c.tenant_id))}
            | {r[0] for r in conn.execute(sa.select(A.c.tenant_id).distinct())}
        )
        if tenant_id is not None:
            tenants = [t for t in tenants if t == tenant_id]
        for tenant in tenants:
            verifier = ChainVerifier(tenant)
            for transfer in _stream(conn, tenant, chunk):
                verifier.feed(transfer)
            head_row = conn.execute(
                sa.select(H.c.last_seq, H.c.last_hash).where(H.c.tenant_id == tenant)
            ).first()
            head = None if head_row is None else (int(head_row[0]), bytes(head_row[1]))
            accounts = [
                AccountRecord(
                    id=a.id,
                    currency=a.currency,
                    counters=(
                        a.debits_posted,
                        a.credits_posted,
                        a.debits_pending,
                        a.credits_pending,
                    ),
                    debits_must_not_exceed_credits=bool(a.debits_must_not_exceed_credits),
                    credits_must_not_exceed_debits=bool(a.credits_must_not_exceed_debits),
                    overdraft_limit=a.overdraft_limit,
                )
                for a in conn.execute(sa.select(A).where(A.c.tenant_id == tenant))
            ]
            holds = {
                r[0]
                for r in conn.execute(
                    sa.select(HOLDS.c.transfer_id).where(HOLDS.c.tenant_id == tenant)
                )
            }
            report.problems.extend(verifier.finish(accounts, head, holds))
            report.tenants += 1
            report.transfers += verifier.transfers
            report.accounts += len(accounts)
        conn.rollback()
    return report
