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

import contextlib
import gc
import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg.types.json import Jsonb

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

__all__ = ["SqlBatchCommitter"]

_T = TypeVar("_T")

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


# Column types as PostgreSQL declares them. Binary COPY carries no type on the wire: a uuid
# field is its 16 raw bytes, so ids are encoded once as bytes (uuid.bytes) and sent through
# the bytes dumper.
_PG_TYPES = {
    "ledger_transfers": ["uuid", "uuid", "int8", "text", "uuid", "uuid", "int8", "text",
                         "jsonb", "int8", "int8", "bytea", "bytea"],
    "ledger_postings": ["uuid", "int8", "int2", "uuid", "uuid", "text", "text", "int8", "int8",
                        "int8", "int8", "int8", "int8", "int8"],
    "outbox_events": ["uuid", "int8", "text", "uuid", "jsonb", "int8"],
    "ledger_pending_holds": ["uuid", "uuid", "int8", "int8"],
}  # fmt: skip
_COPY_TYPES = {t: ["bytea" if c == "uuid" else c for c in cs] for t, cs in _PG_TYPES.items()}
# Below this many rows a COPY's fixed cost outweighs its speed: one INSERT from a JSON array.
_SMALL_WRITE = 256
_JSON_CASTS = {
    "uuid": "(e->>{i})::uuid",
    "bytea": "decode(e->>{i}, 'hex')",
    "jsonb": "(e->>{i})::jsonb",
    "text": "e->>{i}",
    "int8": "(e->>{i})::int8",
    "int2": "(e->>{i})::int2",
}


def _uuid_order(value: uuid.UUID) -> int:
    # The databases' uuid order, without uuid.UUID's Python-level comparisons.
    return value.int


def _array_literal(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of ids or integers (no element needs quoting)."""
    return "{" + ",".join(map(str, values)) + "}"


def _json_value(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


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

    @contextmanager
    def pipelined(self, outcome: BatchOutcome) -> Iterator[None]:  # noqa: ARG002 - see _Postgres
        """Send the statements of the block without waiting for each (where supported)."""
        yield

    def rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self.cur.execute(sql, params).fetchall()  # type: ignore[no-any-return]

    def uuid_in(self, value: uuid.UUID) -> Any:
        return value

    def uuid_out(self, value: Any) -> uuid.UUID:
        return value  # type: ignore[no-any-return]

    def row_id(self, value: uuid.UUID) -> Any:
        """An id as written by :meth:`write_rows`."""
        return value.bytes

    def row_digest(self, value: bytes) -> Any:
        """A digest as written by :meth:`write_rows` (see settle.store.types.Digest)."""
        return value

    def digest_out(self, value: Any) -> bytes:
        return bytes(value)

    def in_ids(self, column: str, ids: Iterable[uuid.UUID]) -> tuple[str, Any]:
        raise NotImplementedError

    def lock_suffix(self) -> str:
        return ""

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        raise NotImplementedError

    def write_rows(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def update_balances(self, tenant: uuid.UUID, rows: list[tuple[Any, ...]]) -> None:
        """Set the counters of every account in ``rows`` (id, ref, dp, cp, dpe, cpe, last_seq)."""
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

    @contextmanager
    def pipelined(self, outcome: BatchOutcome) -> Iterator[None]:
        # libpq pipeline mode: a small batch's writes go out back to back and the server's
        # answers are read once at the end. COPY cannot run in a pipeline; large batches
        # use it and go statement by statement.
        if max(len(outcome.postings), len(outcome.transfers)) >= _SMALL_WRITE:
            yield
            return
        with self.cur.connection.pipeline():
            yield

    def in_ids(self, column: str, ids: Iterable[uuid.UUID]) -> tuple[str, Any]:
        # One text parameter (an array literal): cheap to send however many ids there are.
        return f"{column} = ANY(%s::uuid[])", _array_literal(ids)

    def lock_suffix(self) -> str:
        return " FOR UPDATE"

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        return "seq = ANY(%s::int8[])", _array_literal(seqs)

    def write_rows(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) < _SMALL_WRITE:
            casts = ", ".join(_JSON_CASTS[c].format(i=i) for i, c in enumerate(_PG_TYPES[table]))
            self.cur.execute(
                f"INSERT INTO {table} ({columns})"
                f" SELECT {casts} FROM jsonb_array_elements(%s::jsonb) AS e",
                (json.dumps([[_json_value(v) for v in row] for row in rows]),),
            )
            return
        # Binary COPY: the fastest bulk path into PostgreSQL (one statement per table).
        json_columns = _PG_JSON_COLUMNS.get(table, ())
        with self.cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES[table])
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

    def update_balances(self, tenant: uuid.UUID, rows: list[tuple[Any, ...]]) -> None:
        # unnest() of arrays sent as text literals: the planner drives the update from the
        # (few) rows given, through the primary key, instead of hashing the tenant's accounts.
        # For a few rows, an extra "id = ANY" keeps the index path even when the statistics
        # think the tenant is small; for many, hashing the tenant's accounts is the right plan
        # (and ANY over thousands of ids would be a quadratic filter).
        ids, _refs, *counters = zip(*rows, strict=True)
        id_list = _array_literal(ids)
        few = len(rows) <= _SMALL_WRITE
        self.cur.execute(
            "UPDATE ledger_accounts AS a SET debits_posted = v.dp, credits_posted = v.cp,"
            " debits_pending = v.dpe, credits_pending = v.cpe, last_seq = v.ls"
            " FROM unnest(%s::uuid[], %s::int8[], %s::int8[], %s::int8[], %s::int8[],"
            " %s::int8[]) AS v(id, dp, cp, dpe, cpe, ls)"
            " WHERE a.tenant_id = %s AND a.id = v.id"
            + (" AND a.id = ANY(%s::uuid[])" if few else ""),
            (id_list, *(_array_literal(c) for c in counters), tenant, *([id_list] if few else [])),
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

    def row_digest(self, value: bytes) -> Any:
        return value.hex()

    def digest_out(self, value: Any) -> bytes:
        return bytes.fromhex(value)

    def in_ids(self, column: str, ids: Iterable[uuid.UUID]) -> tuple[str, Any]:
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps([i.hex for i in ids])

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        return "seq IN (SELECT value FROM json_each(?))", json.dumps(seqs)

    def write_rows(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        # SQLite runs in-process: one prepared statement stepped over every row is its bulk
        # insert, with no round trip per row to save (measured 2x faster than one INSERT from
        # a JSON array, which re-parses each row once per column).
        marks = ", ".join("?" * (columns.count(",") + 1))
        self.cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)

    def update_balances(self, tenant: uuid.UUID, rows: list[tuple[Any, ...]]) -> None:
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
            (json.dumps([row[1:] for row in rows]),),
        )
        cur.execute(
            "UPDATE ledger_accounts SET debits_posted = v.dp, credits_posted = v.cp,"
            " debits_pending = v.dpe, credits_pending = v.cpe, last_seq = v.ls"
            " FROM temp.settle_balance_updates AS v"
            " WHERE ledger_accounts.tenant_id = ? AND ledger_accounts.id = v.id"
            " AND ledger_accounts.id IN (SELECT id FROM temp.settle_balance_updates)",
            (tenant.hex,),
        )
        cur.execute("DELETE FROM temp.settle_balance_updates")


class _Prepared:
    """A batch applied speculatively, ahead of the transaction that will commit it."""

    __slots__ = ("expected", "outcome", "state", "units")

    def __init__(
        self,
        units: Sequence[Unit],
        state: BatchState,
        outcome: BatchOutcome,
        expected: dict[uuid.UUID, tuple[int, bytes, int]],
    ) -> None:
        self.units = units
        self.state = state
        self.outcome = outcome
        # Each tenant's chain head as the speculation assumed it before the batch.
        self.expected = expected

    @property
    def cache(self) -> dict[uuid.UUID, TenantState]:
        return self.state.tenants

    @property
    def cache_size(self) -> int:
        return sum(
            len(t.existing) + len(t.entries) + len(t.accounts) for t in self.state.tenants.values()
        )


_gc_lock = threading.Lock()
_gc_holders = 0


@contextmanager
def _no_gc() -> Iterator[None]:
    # A batch allocates a few hundred thousand objects that all survive until it ends: the
    # cyclic collector would walk them again and again (measured: ~40% of batch time).
    global _gc_holders
    with _gc_lock:
        _gc_holders += 1
        if _gc_holders == 1:
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0:
                gc.enable()


class SqlBatchCommitter:
    """Commits batches of ledger units to one database, one transaction per batch.

    Two ways in: :meth:`commit` loads the batch's state under lock, applies and writes it;
    :meth:`prepare` + :meth:`commit_prepared` split that in two so the group-commit engine can
    apply batch N+1 (CPU) while batch N is being written (I/O). ``prepare`` reads without locks,
    from a cache of the state left by the batches still in flight; ``commit_prepared`` locks the
    chain heads and checks that they are exactly what the speculation assumed. Every change to
    a tenant's ledger (another process's batch, an account being frozen or opened) moves its
    chain head, so equal heads prove the speculative reads are still true; otherwise the batch
    is loaded again under lock and re-applied.
    """

    def __init__(self, engine: sa.Engine, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock
        self._raw: Any = None
        self._reader: Any = None
        self._pg = engine.dialect.name == "postgresql"

    def close(self) -> None:
        for raw in (self._raw, self._reader):
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.close()
        self._raw = self._reader = None

    def _dialect(self, raw: Any) -> _Dialect:
        cursor = raw.cursor()
        return _Postgres(cursor) if self._pg else _Sqlite(cursor)

    def _writer(self) -> Any:
        if self._raw is None:
            self._raw = self.engine.raw_connection()
        return self._raw

    def commit(self, units: Sequence[Unit]) -> list[list[TransferResult]]:
        """Apply ``units`` in order and commit them as one transaction; one result per request."""
        with _no_gc():
            return self._in_transaction(lambda d: self._apply_locked(d, units).results)

    def prepare(
        self, units: Sequence[Unit], cache: dict[uuid.UUID, TenantState] | None
    ) -> _Prepared:
        """Apply ``units`` speculatively on top of ``cache`` (the previous prepared state)."""
        with _no_gc():
            if self._reader is None:
                self._reader = self.engine.raw_connection()
                if self._pg:
                    self._reader.driver_connection.autocommit = True
            d = self._dialect(self._reader)
            try:
                keys = _Keys(units)
                tenants: dict[uuid.UUID, TenantState] = {}
                expected: dict[uuid.UUID, tuple[int, bytes, int]] = {}
                for tenant in keys.tenants:
                    t = None if cache is None else cache.get(tenant)
                    if t is None:
                        t = TenantState(tenant, self._read_head(d, tenant), d.row_id(tenant))
                    tenants[tenant] = t
                    expected[tenant] = (t.head.last_seq, t.head.last_hash, t.head.last_event_seq)
                state = self._state(d, tenants)
                for tenant in keys.tenants:
                    self._load_tenant(d, keys, tenants[tenant], lock=False)
                outcome = apply_batch(state, units)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._reader.close()
                self._reader = None
                raise
            finally:
                d.cur.close()
            if cache is not None:
                for tenant, t in cache.items():
                    state.tenants.setdefault(tenant, t)
            return _Prepared(units, state, outcome, expected)

    def commit_prepared(self, prepared: _Prepared) -> tuple[list[list[TransferResult]], bool]:
        """Commit a prepared batch; returns its results and whether it had to be re-applied."""

        def run(d: _Dialect) -> tuple[list[list[TransferResult]], bool]:
            for tenant in sorted(prepared.expected):
                head = self._lock_head(d, tenant)
                if (head.last_seq, head.last_hash, head.last_event_seq) != prepared.expected[
                    tenant
                ]:
                    # Someone else moved this tenant's ledger: redo the batch under lock.
                    return self._apply_locked(d, prepared.units).results, True
            with d.pipelined(prepared.outcome):
                for tenant, rows in prepared.outcome.balances.items():
                    clause, param = d.in_ids(
                        "id", sorted((row[0] for row in rows), key=_uuid_order)
                    )
                    d.cur.execute(
                        f"SELECT id FROM ledger_accounts WHERE tenant_id = {d.p} AND {clause}"
                        f" ORDER BY id{d.lock_suffix()}",
                        (d.uuid_in(tenant), param),
                    )
                self._write(d, prepared.outcome)
            return prepared.outcome.results, False

        with _no_gc():
            return self._in_transaction(run)

    def _in_transaction(self, body: Callable[[_Dialect], _T]) -> _T:
        raw = self._writer()
        d = self._dialect(raw)
        try:
            d.begin()
            result = body(d)
            raw.commit()
        except BaseException:
            try:
                raw.rollback()
            finally:
                # A connection that failed mid-transaction is not trusted again.
                with contextlib.suppress(Exception):
                    raw.close()
                self._raw = None
            raise
        finally:
            d.cur.close()
        return result

    def _apply_locked(self, d: _Dialect, units: Sequence[Unit]) -> BatchOutcome:
        keys = _Keys(units)
        tenants = {
            tenant: TenantState(tenant, self._lock_head(d, tenant), d.row_id(tenant))
            for tenant in keys.tenants
        }
        state = self._state(d, tenants)
        for tenant in keys.tenants:
            self._load_tenant(d, keys, tenants[tenant], lock=True)
        outcome = apply_batch(state, units)
        self._write(d, outcome)
        return outcome

    # ---- reading ---------------------------------------------------------------------------

    _HEAD_SQL = (
        "SELECT last_seq, last_hash, last_event_seq, last_created_at FROM ledger_chain_heads"
    )

    def _read_head(self, d: _Dialect, tenant: uuid.UUID) -> ChainHead:
        row = d.cur.execute(f"{self._HEAD_SQL} WHERE tenant_id = {d.p}", (d.uuid_in(tenant),))
        found = row.fetchone()
        if found is None:
            return ChainHead(0, GENESIS_HASH, 0, 0)
        return ChainHead(int(found[0]), bytes(found[1]), int(found[2]), int(found[3]))

    def _lock_head(self, d: _Dialect, tenant: uuid.UUID) -> ChainHead:
        tid = d.uuid_in(tenant)
        sql = f"{self._HEAD_SQL} WHERE tenant_id = {d.p}{d.lock_suffix()}"
        row = d.cur.execute(sql, (tid,)).fetchone()
        if row is None:
            d.cur.execute(
                "INSERT INTO ledger_chain_heads (tenant_id, last_seq, last_hash,"
                f" last_event_seq, last_created_at) VALUES ({d.p}, 0, {d.p}, 0, 0)"
                " ON CONFLICT (tenant_id) DO NOTHING",
                (tid, GENESIS_HASH),
            )
            row = d.cur.execute(sql, (tid,)).fetchone()
        return ChainHead(int(row[0]), bytes(row[1]), int(row[2]), int(row[3]))

    def _state(self, d: _Dialect, tenants: dict[uuid.UUID, TenantState]) -> BatchState:
        # One clock reading per batch; never behind the last commit, so created_at is
        # monotonic in the sequence for every tenant (point-in-time reads rely on it).
        now = max([self.clock(), *(t.head.last_created_at for t in tenants.values())])
        return BatchState(now, tenants, d.row_id, d.row_digest)

    def _load_tenant(self, d: _Dialect, keys: _Keys, t: TenantState, *, lock: bool) -> None:
        """Read what the batch refers to and ``t`` does not know yet (all of it when fresh)."""
        tenant, out = t.tenant_id, d.uuid_out
        tid = d.uuid_in(tenant)
        p = d.p
        unknown_ids = [i for i in keys.transfer_ids[tenant] if i.int not in t.existing]
        if unknown_ids:
            clause, param = d.in_ids("id", unknown_ids)
            for row in d.rows(
                f"SELECT id, fingerprint FROM ledger_transfers WHERE tenant_id = {p} AND {clause}",
                (tid, param),
            ):
                t.existing[out(row[0]).int] = d.digest_out(row[1])

        account_ids = {a for a in keys.account_ids[tenant] if a.int not in t.accounts}
        pending_ids = {
            i
            for i in keys.pending_ids.get(tenant, ())
            if i.int not in t.holds and i.int not in t.resolved
        }
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
        reversal_ids = {
            i
            for i in keys.reversal_ids.get(tenant, ())
            if i.int not in t.entries and i.int not in t.targets
        }
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
                if account.int not in t.accounts:
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
            clause, param = d.in_ids("id", sorted(account_ids, key=_uuid_order))
            for r in d.rows(
                f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts WHERE tenant_id = {p}"
                f" AND {clause} ORDER BY id{d.lock_suffix() if lock else ''}",
                (tid, param),
            ):
                account_id = out(r[0])
                t.accounts[account_id.int] = AccountState(
                    tenant, account_id, r[1], r[2], bool(r[3]), bool(r[4]), r[5],
                    int(r[6]), int(r[7]), int(r[8]), int(r[9]), int(r[10]), d.row_id(account_id),
                )  # fmt: skip

    # ---- writing ---------------------------------------------------------------------------

    def _write(self, d: _Dialect, outcome: BatchOutcome) -> None:
        if outcome.transfers:
            # Postings before transfers: on SQLite the balance trigger fires on the transfer.
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
        for tenant, rows in outcome.balances.items():
            d.update_balances(tenant, rows)
        for tenant, head in outcome.heads.items():
            d.cur.execute(
                f"UPDATE ledger_chain_heads SET last_seq = {d.p}, last_hash = {d.p},"
                f" last_event_seq = {d.p}, last_created_at = {d.p} WHERE tenant_id = {d.p}",
                (*head, d.uuid_in(tenant)),
            )
