"""The ledger's hot path: one database transaction per batch, set-based reads and writes.

Under lock, for a batch of units the writer (1) locks the tenants' chain heads, (2) reads, with
one statement per table, the transfers that already exist, the open holds and the reversal
targets the batch refers to, and the touched accounts' counters, (3) runs the pure
:func:`settle.ledger.apply.apply_batch`, (4) writes every table with one bulk statement
(``COPY`` on PostgreSQL) and all balances with one statement, and (5) commits once. Ahead of
time (the pipeline), steps 2-3 run without locks on the state the batches in flight left, and
the commit locks the chain heads, checks they are what the speculation assumed, and writes.

The chain head is the one lock every writer of a tenant's ledger and accounts takes first, so
several processes sharing one PostgreSQL database serialise per tenant and never deadlock.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from settle.clock import Clock, system_clock
from settle.ledger.apply import (
    AccountState,
    BatchState,
    ChainHead,
    Hold,
    TenantState,
    TransferResult,
    Unit,
)
from settle.ledger.hashing import GENESIS_HASH
from settle.ledger.model import TransferKind
from settle.store.ledger_receipts import AppliedBatch, apply_with_receipts, stored_receipts
from settle.store.ledger_sql import (
    ACCOUNT_COLUMNS,
    EVENT_COLUMNS,
    HOLD_COLUMNS,
    POSTING_COLUMNS,
    TRANSFER_COLUMNS,
    BatchKeys,
    Dialect,
    PostgresDialect,
    SqliteDialect,
)
from settle.store.sqlite_checkpoint import WalCheckpointer

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["BatchApplier", "SqlBatchCommitter"]

_T = TypeVar("_T")
_HAND_OVER_SECONDS = 0.0001


class _Prepared:
    """A batch applied speculatively, ahead of the transaction that will commit it."""

    __slots__ = ("applied", "encoded", "expected", "state", "units")

    def __init__(
        self,
        units: Sequence[Unit],
        state: BatchState,
        applied: AppliedBatch,
        expected: dict[uuid.UUID, tuple[int, bytes, int]],
        encoded: dict[Any, Any],
    ) -> None:
        self.units = units
        self.state = state
        self.applied = applied
        self.encoded = encoded
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


class BatchApplier:
    """Applies and writes ledger units under lock, on a transaction its caller opened.

    The group-commit committer below uses it for every batch; a unit of work uses it to move
    money in the same transaction as another context's state change (a payment's).
    """

    _committing = False

    def __init__(self, clock: Clock = system_clock) -> None:
        self.clock = clock

    def apply_units(self, d: Dialect, units: Sequence[Unit]) -> list[list[TransferResult]]:
        """Lock, load, apply and write ``units``; one result list per unit."""
        return self._apply_locked(d, units).results

    def _apply_locked(self, d: Dialect, units: Sequence[Unit]) -> AppliedBatch:
        keys = BatchKeys(units)
        tenants = {
            tenant: TenantState(tenant, self._lock_head(d, tenant), d.row_id(tenant))
            for tenant in keys.tenants
        }
        state = self._state(d, tenants)
        for tenant in keys.tenants:
            self._load_tenant(d, keys, tenants[tenant], lock=True)
        applied = apply_with_receipts(d, state, units, stored_receipts(d, units))
        self._write(d, applied)
        return applied

    # ---- reading ---------------------------------------------------------------------------

    _HEAD_SQL = (
        "SELECT last_seq, last_hash, last_event_seq, last_created_at FROM ledger_chain_heads"
    )

    def _read_head(self, d: Dialect, tenant: uuid.UUID) -> ChainHead:
        row = d.cur.execute(f"{self._HEAD_SQL} WHERE tenant_id = {d.p}", (d.uuid_in(tenant),))
        found = row.fetchone()
        if found is None:
            return ChainHead(0, GENESIS_HASH, 0, 0)
        return ChainHead(int(found[0]), bytes(found[1]), int(found[2]), int(found[3]))

    def _lock_head(self, d: Dialect, tenant: uuid.UUID) -> ChainHead:
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

    def _state(
        self, d: Dialect, tenants: dict[uuid.UUID, TenantState], *, ahead: bool = False
    ) -> BatchState:
        # One clock reading per batch; never behind the last commit, so created_at is
        # monotonic in the sequence for every tenant (point-in-time reads rely on it).
        now = max([self.clock(), *(t.head.last_created_at for t in tenants.values())])
        pause = self._let_committer_run if ahead else None
        return BatchState(now, tenants, d.row_id, d.row_digest, pause)

    def _let_committer_run(self) -> None:
        # Applying ahead holds the GIL; the committer, between its round trips, waits for it
        # and would otherwise get it only when the interpreter forces a switch (5 ms by
        # default), dozens of times a batch. A short sleep hands it over at once.
        if self._committing:
            time.sleep(_HAND_OVER_SECONDS)

    def _load_tenant(self, d: Dialect, keys: BatchKeys, t: TenantState, *, lock: bool) -> None:
        """Read what the batch refers to and ``t`` does not know yet (all of it when fresh)."""
        tenant, out = t.tenant_id, d.uuid_out
        tid = d.uuid_in(tenant)
        p = d.p
        existing, known_accounts = t.existing, t.accounts
        unknown_ids = [i for k, i in keys.transfer_ids[tenant].items() if k not in existing]
        if unknown_ids:
            clause, param = d.in_ids("id", unknown_ids)
            for row in d.rows(
                f"SELECT id, fingerprint FROM ledger_transfers WHERE tenant_id = {p} AND {clause}",
                (tid, param),
            ):
                t.existing[out(row[0]).int] = d.digest_out(row[1])

        account_ids = {a for k, a in keys.account_ids[tenant].items() if k not in known_accounts}
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
            clause, param = d.in_ids("id", account_ids)
            for r in d.rows(
                f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE tenant_id = {p}"
                f" AND {clause} ORDER BY id{d.lock_suffix() if lock else ''}",
                (tid, param),
            ):
                account_id = out(r[0])
                t.accounts[account_id.int] = AccountState(
                    tenant, account_id, r[1], r[2], bool(r[3]), bool(r[4]), r[5],
                    int(r[6]), int(r[7]), int(r[8]), int(r[9]), int(r[10]), d.row_id(account_id),
                )  # fmt: skip

    # ---- writing ---------------------------------------------------------------------------

    def _write(
        self, d: Dialect, applied: AppliedBatch, encoded: dict[Any, Any] | None = None
    ) -> None:
        """Write the batch; ``encoded`` is what :meth:`Dialect.encode_ahead` made of it."""
        ahead = encoded or {}
        outcome = applied.outcome
        if applied.receipt_rows:
            d.insert_receipts(applied.receipt_rows)
        if outcome.transfers:
            # Postings before transfers: on SQLite the balance trigger fires on the transfer.
            d.write_rows(
                "ledger_postings", POSTING_COLUMNS, outcome.postings, ahead.get("ledger_postings")
            )
            d.write_rows(
                "ledger_transfers",
                TRANSFER_COLUMNS,
                outcome.transfers,
                ahead.get("ledger_transfers"),
            )
            d.write_rows("outbox_events", EVENT_COLUMNS, outcome.events, ahead.get("outbox_events"))
        if outcome.holds_added:
            d.write_rows("ledger_pending_holds", HOLD_COLUMNS, outcome.holds_added)
        released: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for tenant, transfer_id in outcome.holds_released:
            released[tenant].append(transfer_id)
        for tenant, ids in released.items():
            d.delete_holds(tenant, ids)
        for tenant, rows in outcome.balances.items():
            d.update_balances(tenant, rows, ahead.get(("balances", tenant)))
        for tenant, head in outcome.heads.items():
            d.cur.execute(
                f"UPDATE ledger_chain_heads SET last_seq = {d.p}, last_hash = {d.p},"
                f" last_event_seq = {d.p}, last_created_at = {d.p} WHERE tenant_id = {d.p}",
                (*head, d.uuid_in(tenant)),
            )


class SqlBatchCommitter(BatchApplier):
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
        super().__init__(clock)
        self.engine = engine
        self._raw: Any = None
        self._reader: Any = None
        self._committing = False  # whether a transaction is open on the writer connection
        self._pg = engine.dialect.name == "postgresql"
        # SQLite runs inside this process and holds the GIL between the rows it writes: a
        # preparer and a committer interleaving on it stall each other (each row's GIL hand-off
        # waits out the other thread's switch interval). So on SQLite they take turns, and the
        # committer passes the turn on while it waits for COMMIT (the fsync, which releases the
        # GIL): the next batch is applied while this one reaches the disk.
        self._turn = contextlib.nullcontext() if self._pg else threading.Lock()
        # SQLite: WAL checkpoints run on a thread of their own (see sqlite_checkpoint).
        self.checkpointer = None if self._pg else WalCheckpointer(engine)

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        for raw in (self._raw, self._reader):
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.close()
        self._raw = self._reader = None

    def _dialect(self, raw: Any) -> Dialect:
        cursor = raw.cursor()
        return PostgresDialect(cursor) if self._pg else SqliteDialect(cursor)

    def _writer(self) -> Any:
        if self._raw is None:
            self._raw = self.engine.raw_connection()
            if self.checkpointer is not None:
                self.checkpointer.writer_connected(self._raw)
        return self._raw

    def commit(self, units: Sequence[Unit]) -> list[list[TransferResult]]:
        """Apply ``units`` in order and commit them as one transaction; one result per request."""
        return self._in_transaction(lambda d: self._apply_locked(d, units).results)

    def prepare(
        self, units: Sequence[Unit], cache: dict[uuid.UUID, TenantState] | None
    ) -> _Prepared:
        """Apply ``units`` speculatively on top of ``cache`` (the previous prepared state)."""
        with self._turn:
            return self._prepare(units, cache)

    def _prepare(
        self, units: Sequence[Unit], cache: dict[uuid.UUID, TenantState] | None
    ) -> _Prepared:
        if self._reader is None:
            self._reader = self.engine.raw_connection()
            if self._pg:
                self._reader.driver_connection.autocommit = True
        d = self._dialect(self._reader)
        try:
            keys = BatchKeys(units)
            tenants: dict[uuid.UUID, TenantState] = {}
            expected: dict[uuid.UUID, tuple[int, bytes, int]] = {}
            for tenant in keys.tenants:
                t = None if cache is None else cache.get(tenant)
                if t is None:
                    t = TenantState(tenant, self._read_head(d, tenant), d.row_id(tenant))
                tenants[tenant] = t
                expected[tenant] = (t.head.last_seq, t.head.last_hash, t.head.last_event_seq)
            state = self._state(d, tenants, ahead=True)
            for tenant in keys.tenants:
                self._load_tenant(d, keys, tenants[tenant], lock=False)
            applied = apply_with_receipts(d, state, units, stored_receipts(d, units))
            # Encoding the rows is Python work the committer would otherwise do between its
            # round trips; done here, it overlaps the previous batch's commit.
            encoded = d.encode_ahead(applied.outcome)
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
        return _Prepared(units, state, applied, expected, encoded)

    def commit_prepared(self, prepared: _Prepared) -> tuple[list[list[TransferResult]], bool]:
        """Commit a prepared batch; returns its results and whether it had to be re-applied."""

        def run(d: Dialect) -> tuple[list[list[TransferResult]], bool]:
            for tenant in sorted(prepared.expected):
                head = self._lock_head(d, tenant)
                if (head.last_seq, head.last_hash, head.last_event_seq) != prepared.expected[
                    tenant
                ]:
                    # Someone else moved this tenant's ledger: redo the batch under lock.
                    return self._apply_locked(d, prepared.units).results, True
            applied = prepared.applied
            # Idempotency keys are not re-read here: one stored since the batch was prepared
            # makes its INSERT violate the primary key, the transaction rolls back, and the
            # engine redoes the batch under lock (_apply_locked reads the keys under it).
            # No lock on the accounts themselves: every writer of a tenant's accounts (this
            # committer, opening, freezing or closing one) holds the tenant's chain head first,
            # so the head lock taken above already serialises them, and the equal head proves
            # the counters the batch was applied to are still the stored ones.
            with d.pipelined(applied.outcome):
                self._write(d, applied, prepared.encoded)
            return applied.results, False

        return self._in_transaction(run)

    def _in_transaction(self, body: Callable[[Dialect], _T]) -> _T:
        raw = self._writer()
        d = self._dialect(raw)
        try:
            with self._turn:
                self._committing = True
                if self.checkpointer is not None:
                    self.checkpointer.before_begin()
                d.begin()
                result = body(d)
            raw.commit()
            if self.checkpointer is not None:
                self.checkpointer.after_commit()
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
            self._committing = False
            d.cur.close()
        return result
