"""The ledger's hot path: one database transaction per batch, set-based reads and writes.

For a batch of units the writer (1) locks the tenants' chain heads, (2) reads, with one
statement per table, the transfers that already exist, the open holds and the reversal targets
the batch refers to, (3) locks every touched account in id order and reads its counters, (4) runs
the pure :func:`settle.ledger.apply.apply_batch`, (5) writes every table with one bulk statement
(``COPY`` on PostgreSQL) and all balances with one set-based ``UPDATE``, and (6) commits once.

Locks are always taken in the same order (chain heads by tenant, then accounts by id), so
several processes sharing one PostgreSQL database serialise per tenant and never deadlock.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from settle.clock import Clock, system_clock
from settle.ledger.apply import (
    AccountState,
    BatchOutcome,
    BatchState,
    ChainHead,
    Hold,
    TenantState,
    TransferResult,
    Unit,
    apply_batch,
)
from settle.ledger.hashing import GENESIS_HASH
from settle.ledger.model import TransferKind
from settle.ledger.requests import (
    ExpirePending,
    PostPending,
    ReverseTransfer,
    TransferSpec,
    VoidPending,
)

if TYPE_CHECKING:
    import sqlalchemy as sa
from psycopg.types.json import Jsonb

__all__ = ["SqlBatchCommitter"]

_ACCOUNT_COLUMNS = (
    "id, currency, status, debits_must_not_exceed_credits, credits_must_not_exceed_debits,"
    " overdraft_limit, debits_posted, credits_posted, debits_pending, credits_pending, last_seq"
)
_TRANSFER_COLUMNS = (
    "tenant_id, id, seq, kind, pending_id, reversal_of, timeout_at, description, metadata,"
    " effective_at, created_at, fingerprint, hash"
)
_POSTING_COLUMNS = (
    "tenant_id, seq, idx, transfer_id, account_id, side, currency, posted_amount,"
    " pending_amount, created_at, debits_posted, credits_posted, debits_pending, credits_pending"
)
_EVENT_COLUMNS = "tenant_id, seq, type, object_id, payload, created_at"
_HOLD_COLUMNS = "tenant_id, transfer_id, seq, timeout_at"
_PG_JSON_COLUMNS = {"ledger_transfers": (8,), "outbox_events": (4,)}


def _as_is(text: str) -> str:
    return text


# Binary COPY carries no type on the wire: a uuid field is its 16 raw bytes, so ids are
# encoded once as bytes (uuid.bytes) and sent through the fast bytes dumper.
_PG_TYPES = {
    "ledger_transfers": ["bytea", "bytea", "int8", "text", "bytea", "bytea", "int8", "text",
                         "jsonb", "int8", "int8", "bytea", "bytea"],
    "ledger_postings": ["bytea", "int8", "int2", "bytea", "bytea", "text", "text", "int8", "int8",
                        "int8", "int8", "int8", "int8", "int8"],
    "outbox_events": ["bytea", "int8", "text", "bytea", "jsonb", "int8"],
    "ledger_pending_holds": ["bytea", "bytea", "int8", "int8"],
}  # fmt: skip


class _Keys:
    """What a batch refers to, per tenant."""

    def __init__(self, units: Sequence[Unit]) -> None:
        self.transfer_ids: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        self.account_ids: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        self.pending_ids: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        self.reversal_ids: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        for unit in units:
            for req in unit.requests:
                tenant = req.tenant_id
                self.transfer_ids[tenant].add(req.id)
                if isinstance(req, TransferSpec):
                    self.account_ids[tenant].update(p.account_id for p in req.postings)
                elif isinstance(req, PostPending | VoidPending | ExpirePending):
                    self.pending_ids[tenant].add(req.pending_id)
                elif isinstance(req, ReverseTransfer):
                    self.reversal_ids[tenant].add(req.reversal_of)
        self.tenants = sorted(self.transfer_ids)


class _Dialect:
    """The few statements whose SQL differs between PostgreSQL and SQLite."""

    name = ""

    def __init__(self, cursor: Any) -> None:
        self.cur = cursor

    def begin(self) -> None:
        raise NotImplementedError

    def rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self.cur.execute(sql, params).fetchall()  # type: ignore[no-any-return]

    def uuid_in(self, value: uuid.UUID) -> Any:
        return value

    def uuid_out(self, value: Any) -> uuid.UUID:
        return value  # type: ignore[no-any-return]

    def row_id(self, value: uuid.UUID) -> Any:
        """An id as written by :meth:`write_rows`."""
        return value.bytes

    def in_ids(self, column: str, ids: Iterable[uuid.UUID]) -> tuple[str, Any]:
        raise NotImplementedError

    def lock_suffix(self) -> str:
        return ""

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        raise NotImplementedError

    def write_rows(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def update_balances(self, t: TenantState, accounts: list[AccountState]) -> None:
        raise NotImplementedError

    def delete_holds(self, tenant: uuid.UUID, ids: list[uuid.UUID]) -> None:
        clause, param = self.in_ids("transfer_id", ids)
        self.cur.execute(
            f"DELETE FROM ledger_pending_holds WHERE tenant_id = {self.p} AND {clause}",
            (self.uuid_in(tenant), param),
        )

    @property
    def p(self) -> str:
        return "%s"


class _Postgres(_Dialect):
    name = "postgresql"

    def begin(self) -> None:
        # psycopg opens the transaction implicitly on the first statement.
        pass

    def in_ids(self, column: str, ids: Iterable[uuid.UUID]) -> tuple[str, Any]:
        # %b: binary parameters (no text quoting of thousands of array elements).
        return f"{column} = ANY(%b)", list(ids)

    def lock_suffix(self) -> str:
        return " FOR UPDATE"

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        return "seq = ANY(%b)", seqs

    def write_rows(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        # Binary COPY: the fastest bulk path into PostgreSQL (one statement per table).
        json_columns = _PG_JSON_COLUMNS.get(table, ())
        with self.cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_PG_TYPES[table])
            write = copy.write_row
            if not json_columns:
                for row in rows:
                    write(row)
                return
            for row in rows:
                values = list(row)
                for i in json_columns:
                    if values[i] is not None:
                        # Already canonical JSON text: send it as is, not as a JSON string.
                        values[i] = Jsonb(values[i], dumps=_as_is)
                write(values)

    def update_balances(self, t: TenantState, accounts: list[AccountState]) -> None:
        self.cur.execute(
            "UPDATE ledger_accounts AS a SET debits_posted = v.dp, credits_posted = v.cp,"
            " debits_pending = v.dpe, credits_pending = v.cpe, last_seq = v.ls"
            " FROM unnest(%b::uuid[], %b::int8[], %b::int8[], %b::int8[], %b::int8[],"
            " %b::int8[]) AS v(id, dp, cp, dpe, cpe, ls)"
            " WHERE a.tenant_id = %b AND a.id = v.id",
            (
                [a.id for a in accounts],
                [a.dp for a in accounts],
                [a.cp for a in accounts],
                [a.dpe for a in accounts],
                [a.cpe for a in accounts],
                [a.last_seq for a in accounts],
                t.tenant_id,
            ),
        )


class _Sqlite(_Dialect):
    name = "sqlite"

    @property
    def p(self) -> str:
        return "?"

    def begin(self) -> None:
        # Take the write lock up front: the batch reads balances it is about to change.
        self.cur.execute("BEGIN IMMEDIATE")

    def uuid_in(self, value: uuid.UUID) -> Any:
        return value.hex

    def uuid_out(self, value: Any) -> uuid.UUID:
        return uuid.UUID(hex=value)

    def row_id(self, value: uuid.UUID) -> Any:
        return value.hex

    def in_ids(self, column: str, ids: Iterable[uuid.UUID]) -> tuple[str, Any]:
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps([i.hex for i in ids])

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        return "seq IN (SELECT value FROM json_each(?))", json.dumps(seqs)

    def write_rows(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        # SQLite runs in-process: one prepared statement stepped over every row is its bulk
        # insert (there is no round trip per row to save).
        # Ids in the rows are already hex text (see encode_id).
        marks = ", ".join("?" * (columns.count(",") + 1))
        self.cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)

    def update_balances(self, t: TenantState, accounts: list[AccountState]) -> None:
        # Stage the new counters in a keyed temp table (one INSERT from a JSON array), then
        # one UPDATE driven by its keys: O(touched accounts), whatever the tenant's size.
        cur = self.cur
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS settle_balance_updates (id TEXT PRIMARY KEY,"
            " dp INTEGER, cp INTEGER, dpe INTEGER, cpe INTEGER, ls INTEGER) WITHOUT ROWID"
        )
        cur.execute(
            "INSERT INTO temp.settle_balance_updates SELECT value->>0, value->>1, value->>2,"
            " value->>3, value->>4, value->>5 FROM json_each(?)",
            (json.dumps([[a.ref, a.dp, a.cp, a.dpe, a.cpe, a.last_seq] for a in accounts]),),
        )
        cur.execute(
            "UPDATE ledger_accounts SET debits_posted = v.dp, credits_posted = v.cp,"
            " debits_pending = v.dpe, credits_pending = v.cpe, last_seq = v.ls"
            " FROM temp.settle_balance_updates AS v"
            " WHERE ledger_accounts.tenant_id = ? AND ledger_accounts.id = v.id"
            " AND ledger_accounts.id IN (SELECT id FROM temp.settle_balance_updates)",
            (t.ref,),
        )
        cur.execute("DELETE FROM temp.settle_balance_updates")


class SqlBatchCommitter:
    """Commits batches of ledger units to one database, one transaction per batch."""

    def __init__(self, engine: sa.Engine, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock
        self._raw: Any = None

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def _connection(self) -> Any:
        if self._raw is None:
            self._raw = self.engine.raw_connection()
        return self._raw

    def commit(self, units: Sequence[Unit]) -> list[list[TransferResult]]:
        """Apply ``units`` in order and commit them as one transaction; one result per request."""
        raw = self._connection()
        cursor = raw.cursor()
        dialect: _Dialect = (
            _Postgres(cursor) if self.engine.dialect.name == "postgresql" else _Sqlite(cursor)
        )
        # A batch allocates a few hundred thousand objects that all survive until it ends: the
        # cyclic collector would walk them again and again (measured: ~40% of batch time).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            dialect.begin()
            keys = _Keys(units)
            state = self._load(dialect, keys)
            outcome = apply_batch(state, units)
            self._write(dialect, state, outcome)
            raw.commit()
        except BaseException:
            try:
                raw.rollback()
            finally:
                # A connection that failed mid-transaction is not trusted again.
                self.close()
            raise
        finally:
            cursor.close()
            if gc_was_enabled:
                gc.enable()
        return outcome.results

    # ---- reading ---------------------------------------------------------------------------

    def _load(self, d: _Dialect, keys: _Keys) -> BatchState:
        cur, p = d.cur, d.p
        tenants: dict[uuid.UUID, TenantState] = {}
        for tenant in keys.tenants:
            tid = d.uuid_in(tenant)
            sql = (
                "SELECT last_seq, last_hash, last_event_seq, last_created_at"
                f" FROM ledger_chain_heads WHERE tenant_id = {p}{d.lock_suffix()}"
            )
            row = cur.execute(sql, (tid,)).fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO ledger_chain_heads (tenant_id, last_seq, last_hash,"
                    f" last_event_seq, last_created_at) VALUES ({p}, 0, {p}, 0, 0)"
                    " ON CONFLICT (tenant_id) DO NOTHING",
                    (tid, GENESIS_HASH),
                )
                row = cur.execute(sql, (tid,)).fetchone()
            head = ChainHead(int(row[0]), bytes(row[1]), int(row[2]), int(row[3]))
            tenants[tenant] = TenantState(tenant, head, d.row_id(tenant))
        # One clock reading per batch; never behind the last commit, so created_at is
        # monotonic in the sequence for every tenant (point-in-time reads rely on it).
        now = max([self.clock(), *(t.head.last_created_at for t in tenants.values())])
        state = BatchState(now, tenants, d.row_id)
        for tenant in keys.tenants:
            self._load_tenant(d, keys, tenants[tenant])
        return state

    def _load_tenant(self, d: _Dialect, keys: _Keys, t: TenantState) -> None:
        _cur, p = d.cur, d.p
        tenant, out = t.tenant_id, d.uuid_out
        tid = d.uuid_in(tenant)
        clause, param = d.in_ids("id", keys.transfer_ids[tenant])
        for row in d.rows(
            f"SELECT id, fingerprint FROM ledger_transfers WHERE tenant_id = {p} AND {clause}",
            (tid, param),
        ):
            t.existing[out(row[0]).int] = bytes(row[1])

        account_ids = set(keys.account_ids[tenant])
        pending_ids = keys.pending_ids.get(tenant)
        open_holds: list[tuple[uuid.UUID, int, int | None]] = []
        if pending_ids:
            clause, param = d.in_ids("transfer_id", pending_ids)
            open_holds = [
                (out(r[0]), int(r[1]), r[2])
                for r in d.rows(
                    "SELECT transfer_id, seq, timeout_at FROM ledger_pending_holds"
                    f" WHERE tenant_id = {p} AND {clause}",
                    (tid, param),
                )
            ]
            closed = pending_ids - {h[0] for h in open_holds}
            if closed:
                clause, param = d.in_ids("pending_id", closed)
                for row in d.rows(
                    "SELECT pending_id, kind FROM ledger_transfers"
                    f" WHERE tenant_id = {p} AND {clause}",
                    (tid, param),
                ):
                    t.resolved[out(row[0]).int] = TransferKind(row[1])
        targets: list[tuple[uuid.UUID, int, str]] = []
        reversal_ids = keys.reversal_ids.get(tenant)
        if reversal_ids:
            clause, param = d.in_ids("id", reversal_ids)
            targets = [
                (out(r[0]), int(r[1]), r[2])
                for r in d.rows(
                    "SELECT id, seq, kind FROM ledger_transfers"
                    f" WHERE tenant_id = {p} AND {clause}",
                    (tid, param),
                )
            ]
            clause, param = d.in_ids("reversal_of", reversal_ids)
            for row in d.rows(
                f"SELECT reversal_of FROM ledger_transfers WHERE tenant_id = {p} AND {clause}",
                (tid, param),
            ):
                t.reversed.add(out(row[0]).int)
        legs_by_seq: dict[int, list[tuple[uuid.UUID, str, str, int, int]]] = {}
        seqs = [h[1] for h in open_holds] + [x[1] for x in targets]
        if seqs:
            clause, param = d.in_seqs(seqs)
            for row in d.rows(
                "SELECT seq, account_id, side, currency, posted_amount, pending_amount"
                f" FROM ledger_postings WHERE tenant_id = {p} AND {clause} ORDER BY seq, idx",
                (tid, param),
            ):
                account = out(row[1])
                account_ids.add(account)
                legs_by_seq.setdefault(int(row[0]), []).append(
                    (account, row[2], row[3], int(row[4]), int(row[5]))
                )
        for transfer_id, seq, timeout_at in open_holds:
            held = tuple((a, s, c, q) for a, s, c, _p, q in legs_by_seq.get(seq, ()))
            t.holds[transfer_id.int] = Hold(transfer_id, seq, timeout_at, held)
        for transfer_id, seq, kind in targets:
            posted = tuple((a, s, c, pa) for a, s, c, pa, _q in legs_by_seq.get(seq, ()))
            t.targets[transfer_id.int] = (TransferKind(kind), posted)

        if account_ids:
            clause, param = d.in_ids("id", sorted(account_ids))
            for r in d.rows(
                f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts"
                f" WHERE tenant_id = {p} AND {clause} ORDER BY id{d.lock_suffix()}",
                (tid, param),
            ):
                account_id = out(r[0])
                t.accounts[account_id.int] = AccountState(
                    tenant, account_id, r[1], r[2], bool(r[3]), bool(r[4]), r[5],
                    int(r[6]), int(r[7]), int(r[8]), int(r[9]), int(r[10]), d.row_id(account_id),
                )  # fmt: skip

    # ---- writing ---------------------------------------------------------------------------

    def _write(self, d: _Dialect, state: BatchState, outcome: BatchOutcome) -> None:
        if not outcome.transfers:
            return
        # Postings before transfers: on SQLite the balance trigger fires on the transfer row.
        d.write_rows("ledger_postings", _POSTING_COLUMNS, outcome.postings)
        d.write_rows("ledger_transfers", _TRANSFER_COLUMNS, outcome.transfers)
        d.write_rows("outbox_events", _EVENT_COLUMNS, outcome.events)
        if outcome.holds_added:
            d.write_rows("ledger_pending_holds", _HOLD_COLUMNS, outcome.holds_added)
        released: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for tenant, transfer_id in outcome.holds_released:
            released[tenant].append(transfer_id)
        for tenant, ids in released.items():
            d.delete_holds(tenant, ids)
        for t in state.tenants.values():
            touched = [a for a in t.accounts.values() if a.touched]
            if touched:
                d.update_balances(t, touched)
            head = t.head
            d.cur.execute(
                f"UPDATE ledger_chain_heads SET last_seq = {d.p}, last_hash = {d.p},"
                f" last_event_seq = {d.p}, last_created_at = {d.p} WHERE tenant_id = {d.p}",
                (head.last_seq, head.last_hash, head.last_event_seq,
                 max(head.last_created_at, state.now), d.uuid_in(t.tenant_id)),
            )  # fmt: skip
