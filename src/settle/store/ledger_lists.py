"""Cursor-paginated lists the API serves: transfers, statements and the event feed.

Every list is keyset-paginated on the tenant's journal order (``seq``; ``created_at`` never
decreases along it), ``limit`` rows at a time after or before a cursor, one query per page
plus one to hydrate the rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from settle.store import tables
from settle.store.ledger_repo import Page, SqlLedgerRepository, posting_from_row

if TYPE_CHECKING:
    from settle.ledger.model import Posting, Transfer

P = tables.ledger_postings
T = tables.ledger_transfers
E = tables.outbox_events

__all__ = ["FeedEvent", "events_page", "statement_page", "transfer_seq", "transfers_page"]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    seq: int
    type: str
    object_id: uuid.UUID
    created_at: int
    payload: dict[str, Any] | None
    transfer: Transfer | None


def _keyset(
    stmt: sa.Select[Any], key: Any, after: Any, before: Any, limit: int
) -> tuple[sa.Select[Any], bool]:
    """Order ``stmt`` by ``key`` after and/or before cursors; True if the page is read backwards
    (only ``before``: the page that ends at it). With both, the first page between them."""
    if after is not None:
        stmt = stmt.where(key > after)
    if before is not None:
        stmt = stmt.where(key < before)
        if after is None:
            return stmt.order_by(key.desc()).limit(limit + 1), True
    return stmt.order_by(key).limit(limit + 1), False


def _page(rows: list[Any], limit: int, backwards: bool) -> tuple[list[Any], bool]:
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    return rows, has_more


def transfer_seq(
    repo: SqlLedgerRepository, tenant_id: uuid.UUID, transfer_id: uuid.UUID
) -> int | None:
    """The journal position of a transfer (a list cursor), or None if it does not exist."""
    return repo.conn.execute(
        sa.select(T.c.seq).where(T.c.tenant_id == tenant_id, T.c.id == transfer_id)
    ).scalar()


def transfers_page(
    repo: SqlLedgerRepository,
    tenant_id: uuid.UUID,
    *,
    account_id: uuid.UUID | None = None,
    start: int | None = None,
    end: int | None = None,
    limit: int,
    after_seq: int | None = None,
    before_seq: int | None = None,
) -> Page[Transfer]:
    """Transfers in journal order, optionally only those touching an account, created within
    [start, end)."""
    if account_id is None:
        stmt = sa.select(T.c.seq).where(T.c.tenant_id == tenant_id)
        created, seq = T.c.created_at, T.c.seq
    else:
        stmt = (
            sa.select(P.c.seq)
            .distinct()
            .where(P.c.tenant_id == tenant_id, P.c.account_id == account_id)
        )
        created, seq = P.c.created_at, P.c.seq
    if start is not None:
        stmt = stmt.where(created >= start)
    if end is not None:
        stmt = stmt.where(created < end)
    stmt, backwards = _keyset(stmt, seq, after_seq, before_seq, limit)
    seqs, has_more = _page([r[0] for r in repo.conn.execute(stmt)], limit, backwards)
    if not seqs:
        return Page([], has_more)
    rows = list(
        repo.conn.execute(
            sa.select(T).where(T.c.tenant_id == tenant_id, T.c.seq.in_(seqs)).order_by(T.c.seq)
        )
    )
    return Page(repo.transfers_from_rows(rows), has_more)


def statement_page(
    repo: SqlLedgerRepository,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    start: int | None = None,
    end: int | None = None,
    limit: int,
    after: tuple[int, int] | None = None,
    before: tuple[int, int] | None = None,
) -> Page[Posting]:
    """An account's postings in journal order, each with the account's balances after it."""
    stmt = sa.select(P).where(P.c.tenant_id == tenant_id, P.c.account_id == account_id)
    if start is not None:
        stmt = stmt.where(P.c.created_at >= start)
    if end is not None:
        stmt = stmt.where(P.c.created_at < end)
    key = sa.tuple_(P.c.seq, P.c.idx)
    if after is not None:
        stmt = stmt.where(key > after)
    if before is not None:
        stmt = stmt.where(key < before)
    backwards = before is not None and after is None
    if backwards:
        stmt = stmt.order_by(P.c.seq.desc(), P.c.idx.desc())
    else:
        stmt = stmt.order_by(P.c.seq, P.c.idx)
    rows, has_more = _page(list(repo.conn.execute(stmt.limit(limit + 1))), limit, backwards)
    return Page([posting_from_row(r) for r in rows], has_more)


_TRANSFER_EVENTS = ("transfer.",)


def events_page(
    repo: SqlLedgerRepository, tenant_id: uuid.UUID, *, after_seq: int | None, limit: int
) -> Page[FeedEvent]:
    """The tenant's outbox in order after a cursor; transfer events carry the transfer."""
    stmt = sa.select(E).where(E.c.tenant_id == tenant_id)
    stmt, _ = _keyset(stmt, E.c.seq, after_seq, None, limit)
    rows, has_more = _page(list(repo.conn.execute(stmt)), limit, False)
    transfer_ids = [r.object_id for r in rows if r.type.startswith(_TRANSFER_EVENTS)]
    transfers: dict[uuid.UUID, Transfer] = {}
    if transfer_ids:
        found = list(
            repo.conn.execute(
                sa.select(T)
                .where(T.c.tenant_id == tenant_id, T.c.id.in_(transfer_ids))
                .order_by(T.c.seq)
            )
        )
        transfers = {t.id: t for t in repo.transfers_from_rows(found)}
    return Page(
        [
            FeedEvent(
                r.seq, r.type, r.object_id, r.created_at, r.payload, transfers.get(r.object_id)
            )
            for r in rows
        ],
        has_more,
    )
