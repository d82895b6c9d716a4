"""Ledger reads and account writes with SQLAlchemy Core, inside a unit of work."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from settle.clock import Clock, system_clock
from settle.errors import ValidationError
from settle.ledger.hashing import GENESIS_HASH
from settle.ledger.model import (
    Account,
    AccountStatus,
    AccountType,
    Balances,
    Posting,
    Side,
    Transfer,
    TransferKind,
    from_micros,
    to_micros,
)
from settle.store import tables

if TYPE_CHECKING:
    from settle.ledger.apply import TransferResult
    from settle.ledger.requests import TransferRequest

A = tables.ledger_accounts
H = tables.ledger_chain_heads
HOLDS = tables.ledger_pending_holds
P = tables.ledger_postings
T = tables.ledger_transfers
E = tables.outbox_events

# The outbox's hot statements, built once: a statement made per call costs more to build
# and to key for the compiled cache than to run.
_LOCK_HEAD = sa.select(H).where(H.c.tenant_id == sa.bindparam("b_tenant_id")).with_for_update()
_MOVE_EVENT_SEQ = (
    H.update()
    .where(H.c.tenant_id == sa.bindparam("b_tenant_id"))
    .values(last_event_seq=sa.bindparam("b_seq"))
)
_INSERT_EVENT = E.insert()

__all__ = [
    "AccountQuery",
    "Page",
    "SqlLedgerRepository",
    "decode_cursor",
    "encode_cursor",
    "posting_from_row",
]

_SIDES = {"D": Side.DEBIT, "C": Side.CREDIT}


@dataclass(frozen=True, slots=True)
class AccountQuery:
    """Filters for listing accounts."""

    currency: str | None = None
    type: str | None = None
    parent_id: uuid.UUID | None = None
    status: str | None = None
    metadata: Mapping[str, str] | None = None


_Item = TypeVar("_Item")


@dataclass(frozen=True, slots=True)
class Page(Generic[_Item]):
    """One page of a cursor-paginated list."""

    data: list[_Item]
    has_more: bool


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("the cursor is not one this API issued", param="cursor") from None


def _account(row: Any) -> Account:
    return Account(
        tenant_id=row.tenant_id,
        id=row.id,
        code=row.code,
        name=row.name,
        type=AccountType(row.type),
        currency=row.currency,
        parent_id=row.parent_id,
        debits_must_not_exceed_credits=bool(row.debits_must_not_exceed_credits),
        credits_must_not_exceed_debits=bool(row.credits_must_not_exceed_debits),
        overdraft_limit=row.overdraft_limit,
        status=AccountStatus(row.status),
        metadata=dict(row.metadata),
        created_at=from_micros(row.created_at),
        balances=Balances(
            row.debits_posted, row.credits_posted, row.debits_pending, row.credits_pending
        ),
        last_seq=row.last_seq,
    )


def posting_from_row(row: Any) -> Posting:
    return Posting(
        index=row.idx,
        account_id=row.account_id,
        side=_SIDES[row.side],
        currency=row.currency,
        posted_amount=row.posted_amount,
        pending_amount=row.pending_amount,
        balances_after=Balances(
            row.debits_posted, row.credits_posted, row.debits_pending, row.credits_pending
        ),
        transfer_id=row.transfer_id,
        seq=row.seq,
        created_at=from_micros(row.created_at),
    )


def _account_postings(
    stmt: sa.Select[Any],
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    start: int | None,
    end: int | None,
    after_seq: int | None,
) -> sa.Select[Any]:
    """An account's postings within [start, end) after a seq, in journal order."""
    stmt = stmt.where(P.c.tenant_id == tenant_id, P.c.account_id == account_id)
    if start is not None:
        stmt = stmt.where(P.c.created_at >= start)
    if end is not None:
        stmt = stmt.where(P.c.created_at < end)
    if after_seq is not None:
        stmt = stmt.where(P.c.seq > after_seq)
    return stmt.order_by(P.c.created_at, P.c.seq)


class SqlLedgerRepository:
    """The ledger's tables seen through one open connection (one transaction)."""

    def __init__(self, connection: sa.Connection, clock: Clock = system_clock) -> None:
        self.conn = connection
        self.clock = clock
        self.dialect = connection.dialect.name
        # Tenants whose chain head this transaction holds: the lock every writer of a tenant's
        # accounts takes first (the ledger's committer relies on it and locks no account row).
        self._locked: set[uuid.UUID] = set()
        # Each locked tenant's last event seq as this transaction left it: appending more
        # events needs no second read of the locked head (moving money forgets it: the
        # ledger's own writes advance the head behind this repository's back).
        self._event_seqs: dict[uuid.UUID, int] = {}
        # Events appended and not yet written: the unit of work's commit writes them last
        # (flush_events), so the chain head is locked for as short a time as can be.
        self._pending_events: list[dict[str, Any]] = []

    # ---- accounts --------------------------------------------------------------------------

    def lock_tenant(self, tenant_id: uuid.UUID) -> None:
        self._lock_head(tenant_id)

    def apply_transfers(
        self, requests: Sequence[TransferRequest], *, atomic: bool = True
    ) -> list[TransferResult]:
        """Move money in this transaction (see :mod:`settle.store.ledger_inline`)."""
        # Imported here: the batch writer imports the idempotency store, which imports this.
        from settle.store.ledger_inline import apply_in_transaction

        self.flush_events()  # the apply numbers its events after those appended before it
        for tenant_id in sorted({r.tenant_id for r in requests}):
            self._locked.add(tenant_id)  # the apply takes each tenant's chain head
            self._event_seqs.pop(tenant_id, None)
        return apply_in_transaction(self.conn, self.clock, requests, atomic=atomic)

    def get_account(
        self, tenant_id: uuid.UUID, account_id: uuid.UUID, *, lock: bool = False
    ) -> Account | None:
        query = sa.select(A).where(A.c.tenant_id == tenant_id, A.c.id == account_id)
        if lock:
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return None if row is None else _account(row)

    def get_account_by_code(self, tenant_id: uuid.UUID, code: str) -> Account | None:
        row = self.conn.execute(
            sa.select(A).where(A.c.tenant_id == tenant_id, A.c.code == code)
        ).first()
        return None if row is None else _account(row)

    def _require_lock(self, tenant_id: uuid.UUID) -> None:
        if tenant_id not in self._locked:
            raise RuntimeError(
                f"write to tenant {tenant_id}'s accounts without its chain head: lock_tenant first"
            )

    def insert_account(self, account: Account) -> None:
        self._require_lock(account.tenant_id)
        self.conn.execute(
            A.insert().values(
                tenant_id=account.tenant_id,
                id=account.id,
                code=account.code,
                name=account.name,
                type=account.type.value,
                currency=account.currency,
                parent_id=account.parent_id,
                debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
                credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
                overdraft_limit=account.overdraft_limit,
                status=account.status.value,
                metadata=dict(account.metadata),
                created_at=to_micros(account.created_at),
            )
        )

    def update_account(
        self,
        account: Account,
        *,
        name: str,
        metadata: Mapping[str, str],
        status: AccountStatus,
    ) -> None:
        self._require_lock(account.tenant_id)
        self.conn.execute(
            A.update()
            .where(A.c.tenant_id == account.tenant_id, A.c.id == account.id)
            .values(name=name, metadata=dict(metadata), status=status.value)
        )

    def list_accounts(
        self,
        tenant_id: uuid.UUID,
        query: AccountQuery,
        *,
        limit: int,
        starting_after: uuid.UUID | None = None,
        ending_before: uuid.UUID | None = None,
    ) -> Page[Account]:
        """Accounts in id order, ``limit`` at a time, after and/or before cursor ids."""
        stmt = sa.select(A).where(A.c.tenant_id == tenant_id)
        for column, value in (
            (A.c.currency, query.currency),
            (A.c.type, query.type),
            (A.c.parent_id, query.parent_id),
            (A.c.status, query.status),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        for key, value in (query.metadata or {}).items():
            if self.dialect == "postgresql":
                # JSONB containment, served by the column's type on PostgreSQL.
                stmt = stmt.where(sa.cast(A.c.metadata, postgresql.JSONB).contains({key: value}))
            else:
                # json_each compares the key as data: no JSON-path quoting to get wrong.
                entries = sa.func.json_each(A.c.metadata).table_valued("key", "value")
                stmt = stmt.where(sa.exists().where(entries.c.key == key, entries.c.value == value))
        # With both cursors: the first page between them.
        if starting_after is not None:
            stmt = stmt.where(A.c.id > starting_after)
        if ending_before is not None:
            stmt = stmt.where(A.c.id < ending_before)
        backwards = ending_before is not None and starting_after is None
        stmt = stmt.order_by(A.c.id.desc() if backwards else A.c.id)
        rows = list(self.conn.execute(stmt.limit(limit + 1)))
        has_more = len(rows) > limit
        accounts = [_account(r) for r in rows[:limit]]
        if backwards:
            accounts.reverse()
        return Page(accounts, has_more)

    def rolled_up_balances(self, tenant_id: uuid.UUID, account_id: uuid.UUID) -> Balances:
        """The account's counters plus those of every descendant."""
        tree = (
            sa.select(A.c.id)
            .where(A.c.tenant_id == tenant_id, A.c.id == account_id)
            .cte("tree", recursive=True)
        )
        child = A.alias("child")
        tree = tree.union_all(
            sa.select(child.c.id).where(
                child.c.tenant_id == tenant_id, child.c.parent_id == tree.c.id
            )
        )
        row = self.conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(A.c.debits_posted), 0),
                sa.func.coalesce(sa.func.sum(A.c.credits_posted), 0),
                sa.func.coalesce(sa.func.sum(A.c.debits_pending), 0),
                sa.func.coalesce(sa.func.sum(A.c.credits_pending), 0),
            ).where(A.c.tenant_id == tenant_id, A.c.id.in_(sa.select(tree.c.id)))
        ).one()
        return Balances(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    # ---- point in time and statements -------------------------------------------------------

    def balances_as_of(
        self,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        *,
        at: int | None = None,
        seq: int | None = None,
    ) -> Balances:
        """The account's counters right after the last posting at or before a time or a seq.

        One indexed lookup on (account, created_at, seq): created_at never decreases along a
        tenant's sequence, so both orders agree.
        """
        stmt = sa.select(
            P.c.debits_posted, P.c.credits_posted, P.c.debits_pending, P.c.credits_pending
        ).where(P.c.tenant_id == tenant_id, P.c.account_id == account_id)
        if seq is not None:
            seq_time = self.conn.execute(
                sa.select(T.c.created_at).where(T.c.tenant_id == tenant_id, T.c.seq <= seq)
                .order_by(T.c.seq.desc()).limit(1)
            ).scalar()  # fmt: skip
            if seq_time is None:
                return Balances()
            stmt = stmt.where(sa.tuple_(P.c.created_at, P.c.seq) <= (seq_time, seq))
        if at is not None:
            stmt = stmt.where(P.c.created_at <= at)
        row = self.conn.execute(
            stmt.order_by(P.c.created_at.desc(), P.c.seq.desc()).limit(1)
        ).first()
        return Balances() if row is None else Balances(*(int(v) for v in row))

    def statement(
        self,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 100,
        after_seq: int | None = None,
    ) -> Page[Posting]:
        """The account's postings in order, each with the running balances after it."""
        stmt = _account_postings(sa.select(P), tenant_id, account_id, start, end, after_seq)
        rows = list(self.conn.execute(stmt.limit(limit + 1)))
        return Page([posting_from_row(r) for r in rows[:limit]], len(rows) > limit)

    # ---- transfers -------------------------------------------------------------------------

    def get_transfer(self, tenant_id: uuid.UUID, transfer_id: uuid.UUID) -> Transfer | None:
        row = self.conn.execute(
            sa.select(T).where(T.c.tenant_id == tenant_id, T.c.id == transfer_id)
        ).first()
        if row is None:
            return None
        return self._transfers([row])[0]

    def transfers_by_account(
        self,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int = 100,
        after_seq: int | None = None,
    ) -> Page[Transfer]:
        """Transfers touching an account, oldest first, optionally within [start, end)."""
        stmt = _account_postings(sa.select(P.c.seq), tenant_id, account_id, start, end, after_seq)
        seqs = [r[0] for r in self.conn.execute(stmt.limit(limit + 1))]
        rows = list(
            self.conn.execute(
                sa.select(T)
                .where(T.c.tenant_id == tenant_id, T.c.seq.in_(seqs[:limit]))
                .order_by(T.c.seq)
            )
        )
        return Page(self._transfers(rows), len(seqs) > limit)

    def transfers_from_rows(self, rows: Sequence[Any]) -> list[Transfer]:
        """Transfer rows (of one tenant) with their postings, resolutions and reversals."""
        return self._transfers(rows)

    def _transfers(self, rows: Sequence[Any]) -> list[Transfer]:
        if not rows:
            return []
        tenant_id = rows[0].tenant_id
        seqs = [r.seq for r in rows]
        ids = [r.id for r in rows]
        postings: dict[int, list[Posting]] = {}
        for p in self.conn.execute(
            sa.select(P).where(P.c.tenant_id == tenant_id, P.c.seq.in_(seqs))
            .order_by(P.c.seq, P.c.idx)
        ):  # fmt: skip
            postings.setdefault(p.seq, []).append(posting_from_row(p))
        resolutions = {
            r.pending_id: (TransferKind(r.kind), r.id)
            for r in self.conn.execute(
                sa.select(T.c.pending_id, T.c.kind, T.c.id).where(
                    T.c.tenant_id == tenant_id, T.c.pending_id.in_(ids)
                )
            )
        }
        reversals = {
            r.reversal_of: r.id
            for r in self.conn.execute(
                sa.select(T.c.reversal_of, T.c.id).where(
                    T.c.tenant_id == tenant_id, T.c.reversal_of.in_(ids)
                )
            )
        }
        out = []
        for r in rows:
            kind = TransferKind(r.kind)
            resolution = resolved_by = None
            if kind is TransferKind.PENDING:
                resolution, resolved_by = resolutions.get(r.id, (TransferKind.PENDING, None))
            out.append(
                Transfer(
                    tenant_id=r.tenant_id,
                    id=r.id,
                    seq=r.seq,
                    kind=kind,
                    postings=tuple(postings.get(r.seq, ())),
                    description=r.description,
                    metadata=dict(r.metadata),
                    effective_at=from_micros(r.effective_at),
                    created_at=from_micros(r.created_at),
                    pending_id=r.pending_id,
                    reversal_of=r.reversal_of,
                    timeout_at=None if r.timeout_at is None else from_micros(r.timeout_at),
                    hash=bytes(r.hash),
                    resolution=resolution,
                    resolved_by=resolved_by,
                    reversed_by=reversals.get(r.id),
                )
            )
        return out

    def expired_holds(self, now: int, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
        rows = self.conn.execute(
            sa.select(HOLDS.c.tenant_id, HOLDS.c.transfer_id)
            .where(HOLDS.c.timeout_at <= now)
            .order_by(HOLDS.c.timeout_at)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    # ---- outbox ----------------------------------------------------------------------------

    def append_event(
        self,
        tenant_id: uuid.UUID,
        type: str,
        object_id: uuid.UUID,
        payload: Mapping[str, object],
    ) -> None:
        """Append one event to the tenant's outbox; it is numbered and written by
        :meth:`flush_events`, under the tenant's chain head, before this transaction commits."""
        self._pending_events.append(
            {
                "tenant_id": tenant_id,
                "seq": None,
                "type": type,
                "object_id": object_id,
                "payload": json.loads(json.dumps(payload)),
                "created_at": self.clock(),
            }
        )

    def flush_events(self) -> None:
        """Number and write the appended events: each tenant's chain head locked (tenants in
        id order), moved once, and every event in one insert, in the order appended."""
        if not self._pending_events:
            return
        pending, self._pending_events = self._pending_events, []
        for tenant_id in sorted({e["tenant_id"] for e in pending}):
            last = self._event_seqs.get(tenant_id)
            if last is None:
                last = int(self._lock_head(tenant_id).last_event_seq)
            for event in pending:
                if event["tenant_id"] == tenant_id:
                    last += 1
                    event["seq"] = last
            self.conn.execute(_MOVE_EVENT_SEQ, {"b_tenant_id": tenant_id, "b_seq": last})
            self._event_seqs[tenant_id] = last
        self.conn.execute(_INSERT_EVENT, pending)

    def _lock_head(self, tenant_id: uuid.UUID) -> Any:
        stmt = _LOCK_HEAD
        row = self.conn.execute(stmt, {"b_tenant_id": tenant_id}).first()
        if row is None:
            insert = postgresql.insert(H) if self.dialect == "postgresql" else sqlite.insert(H)
            self.conn.execute(
                insert.values(tenant_id=tenant_id, last_hash=GENESIS_HASH).on_conflict_do_nothing()
            )
            row = self.conn.execute(stmt, {"b_tenant_id": tenant_id}).one()
        self._locked.add(tenant_id)
        self._event_seqs[tenant_id] = int(row.last_event_seq)
        return row
