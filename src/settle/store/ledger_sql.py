"""The SQL the ledger's batch writer speaks, per database: bulk reads and writes.

PostgreSQL gets binary ``COPY`` payloads (see :mod:`settle.store.pg_copy`; for a few rows, one
``INSERT`` from a JSON array, which can run in a pipeline) and array parameters sent as text
literals, and updates all balances with one set-based ``UPDATE``; SQLite gets one prepared
statement stepped over all rows, balances included (it runs in-process: there is no round trip
to save), and ``json_each`` for id lists.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from settle.ledger.requests import (
    ExpirePending,
    PostPending,
    ReverseTransfer,
    TransferSpec,
    VoidPending,
)
from settle.store.pg_copy import encode_events, encode_holds, encode_postings, encode_transfers

if TYPE_CHECKING:
    from settle.ledger.apply import BatchOutcome, Unit

__all__ = [
    "ACCOUNT_COLUMNS",
    "EVENT_COLUMNS",
    "HOLD_COLUMNS",
    "POSTING_COLUMNS",
    "TRANSFER_COLUMNS",
    "BatchKeys",
    "Dialect",
    "PostgresDialect",
    "SqliteDialect",
]

ACCOUNT_COLUMNS = (
    "id, currency, status, debits_must_not_exceed_credits, credits_must_not_exceed_debits,"
    " overdraft_limit, debits_posted, credits_posted, debits_pending, credits_pending, last_seq"
)
TRANSFER_COLUMNS = (
    "tenant_id, id, seq, kind, pending_id, reversal_of, timeout_at, description, metadata,"
    " effective_at, created_at, fingerprint, hash"
)
POSTING_COLUMNS = (
    "tenant_id, seq, idx, transfer_id, account_id, side, currency, posted_amount,"
    " pending_amount, created_at, debits_posted, credits_posted, debits_pending, credits_pending"
)
EVENT_COLUMNS = "tenant_id, seq, type, object_id, payload, created_at"
HOLD_COLUMNS = "tenant_id, transfer_id, seq, timeout_at"


# Column types as PostgreSQL declares them: a small write's INSERT casts each field of its JSON
# rows to these (ids and digests travel as hex). Larger writes are binary COPY payloads, see
# settle.store.pg_copy.
_PG_TYPES = {
    "ledger_transfers": ["uuid", "uuid", "int8", "text", "uuid", "uuid", "int8", "text",
                         "jsonb", "int8", "int8", "bytea", "bytea"],
    "ledger_postings": ["uuid", "int8", "int2", "uuid", "uuid", "text", "text", "int8", "int8",
                        "int8", "int8", "int8", "int8", "int8"],
    "outbox_events": ["uuid", "int8", "text", "uuid", "jsonb", "int8"],
    "ledger_pending_holds": ["uuid", "uuid", "int8", "int8"],
}  # fmt: skip
_COPY_ENCODERS: dict[str, Callable[[list[tuple[Any, ...]]], bytes]] = {
    "ledger_postings": encode_postings,
    "ledger_transfers": encode_transfers,
    "outbox_events": encode_events,
    "ledger_pending_holds": encode_holds,
}
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


def _array_literal(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of ids or integers (no element needs quoting)."""
    return "{" + ",".join(map(str, values)) + "}"


def _json_value(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


class BatchKeys:
    """What a batch refers to, per tenant: ids keyed by their integer (hashing a ``uuid.UUID``
    runs Python code; hashing an int does not)."""

    def __init__(self, units: Sequence[Unit]) -> None:
        self.transfer_ids: dict[uuid.UUID, dict[int, uuid.UUID]] = defaultdict(dict)
        self.account_ids: dict[uuid.UUID, dict[int, uuid.UUID]] = defaultdict(dict)
        self.pending_ids: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        self.reversal_ids: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        last: uuid.UUID | None = None
        transfers: dict[int, uuid.UUID] = {}
        accounts: dict[int, uuid.UUID] = {}
        for unit in units:
            for req in unit.requests:
                tenant = req.tenant_id
                if tenant is not last:  # a batch's requests mostly share one tenant object
                    last = tenant
                    transfers = self.transfer_ids[tenant]
                    accounts = self.account_ids[tenant]
                transfers[req.id.int] = req.id
                if isinstance(req, TransferSpec):
                    for p in req.postings:
                        accounts[p.account_id.int] = p.account_id
                elif isinstance(req, PostPending | VoidPending | ExpirePending):
                    self.pending_ids[tenant].add(req.pending_id)
                elif isinstance(req, ReverseTransfer):
                    self.reversal_ids[tenant].add(req.reversal_of)
        self.tenants = sorted(self.transfer_ids)


class Dialect:
    """The few statements whose SQL differs between PostgreSQL and SQLite."""

    name = ""

    def __init__(self, cursor: Any) -> None:
        self.cur = cursor

    def begin(self) -> None:
        raise NotImplementedError

    @contextmanager
    def pipelined(self, outcome: BatchOutcome) -> Iterator[None]:  # noqa: ARG002 - see PostgresDialect
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
        return self.in_hex_ids(column, (f"{i.int:032x}" for i in ids))

    def in_hex_ids(self, column: str, hexes: Iterable[str]) -> tuple[str, Any]:
        """A condition on ``column`` being one of ``hexes`` (ids as 32 lowercase hex digits)."""
        raise NotImplementedError

    def ref_out(self, value: Any) -> uuid.UUID:
        """An id as :meth:`row_id` wrote it, back to a UUID."""
        return uuid.UUID(bytes=value)

    def in_texts(self, column: str, values: list[str]) -> tuple[str, Any]:
        """A condition on ``column`` being one of ``values`` (one parameter)."""
        raise NotImplementedError

    def insert_receipts(self, rows: list[tuple[Any, ...]]) -> None:
        """Write idempotency keys: (tenant, key, fingerprint, status, body, created_at)."""
        p = self.p
        self.cur.executemany(
            "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, body, created_at)"
            f" VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
            rows,
        )

    def lock_suffix(self) -> str:
        return ""

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        raise NotImplementedError

    def encode_ahead(self, outcome: BatchOutcome) -> dict[Any, Any]:  # noqa: ARG002 - see PostgresDialect
        """What of the batch's writes can be encoded before its transaction.

        :meth:`write_rows` and :meth:`update_balances` take it back as ``encoded``.
        """
        return {}

    def write_rows(
        self, table: str, columns: str, rows: list[tuple[Any, ...]], encoded: Any = None
    ) -> None:
        raise NotImplementedError

    def update_balances(
        self, tenant: uuid.UUID, rows: list[tuple[Any, ...]], encoded: Any = None
    ) -> None:
        """Set the counters of every account in ``rows`` (hex, ref, dp, cp, dpe, cpe, last_seq)."""
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


class PostgresDialect(Dialect):
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

    def in_hex_ids(self, column: str, hexes: Iterable[str]) -> tuple[str, Any]:
        # One text parameter (an array literal): cheap to send however many ids there are.
        return f"{column} = ANY(%s::uuid[])", _array_literal(hexes)

    def lock_suffix(self) -> str:
        return " FOR UPDATE"

    def in_texts(self, column: str, values: list[str]) -> tuple[str, Any]:
        return f"{column} = ANY(%s::text[])", values

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        return "seq = ANY(%s::int8[])", _array_literal(seqs)

    def encode_ahead(self, outcome: BatchOutcome) -> dict[Any, Any]:
        encoded: dict[Any, Any] = {}
        for table, rows in (
            ("ledger_postings", outcome.postings),
            ("ledger_transfers", outcome.transfers),
            ("outbox_events", outcome.events),
        ):
            if len(rows) >= _SMALL_WRITE:
                encoded[table] = _COPY_ENCODERS[table](rows)
        for tenant, balance_rows in outcome.balances.items():
            encoded["balances", tenant] = self._balance_params(tenant, balance_rows)
        return encoded

    def write_rows(
        self, table: str, columns: str, rows: list[tuple[Any, ...]], encoded: Any = None
    ) -> None:
        if len(rows) < _SMALL_WRITE:
            casts = ", ".join(_JSON_CASTS[c].format(i=i) for i, c in enumerate(_PG_TYPES[table]))
            self.cur.execute(
                f"INSERT INTO {table} ({columns})"
                f" SELECT {casts} FROM jsonb_array_elements(%s::jsonb) AS e",
                (json.dumps([[_json_value(v) for v in row] for row in rows]),),
            )
            return
        # Binary COPY: the fastest bulk path into PostgreSQL (one statement per table).
        if encoded is None:
            encoded = _COPY_ENCODERS[table](rows)
        with self.cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(encoded)

    def update_balances(
        self, tenant: uuid.UUID, rows: list[tuple[Any, ...]], encoded: Any = None
    ) -> None:
        # unnest() of arrays sent as text literals: the planner drives the update from the
        # (few) rows given, through the primary key, instead of hashing the tenant's accounts.
        # For a few rows, an extra "id = ANY" keeps the index path even when the statistics
        # think the tenant is small; for many, hashing the tenant's accounts is the right plan
        # (and ANY over thousands of ids would be a quadratic filter).
        few = len(rows) <= _SMALL_WRITE
        self.cur.execute(
            "UPDATE ledger_accounts AS a SET debits_posted = v.dp, credits_posted = v.cp,"
            " debits_pending = v.dpe, credits_pending = v.cpe, last_seq = v.ls"
            " FROM unnest(%s::uuid[], %s::int8[], %s::int8[], %s::int8[], %s::int8[],"
            " %s::int8[]) AS v(id, dp, cp, dpe, cpe, ls)"
            " WHERE a.tenant_id = %s AND a.id = v.id"
            + (" AND a.id = ANY(%s::uuid[])" if few else ""),
            encoded if encoded is not None else self._balance_params(tenant, rows),
        )

    @staticmethod
    def _balance_params(tenant: uuid.UUID, rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        ids, _refs, *counters = zip(*rows, strict=True)
        id_list = _array_literal(ids)
        few = len(rows) <= _SMALL_WRITE
        return (
            id_list,
            *(_array_literal(c) for c in counters),
            tenant,
            *([id_list] if few else []),
        )


class SqliteDialect(Dialect):
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

    def in_hex_ids(self, column: str, hexes: Iterable[str]) -> tuple[str, Any]:
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(hexes))

    def in_seqs(self, seqs: list[int]) -> tuple[str, Any]:
        return "seq IN (SELECT value FROM json_each(?))", json.dumps(seqs)

    def in_texts(self, column: str, values: list[str]) -> tuple[str, Any]:
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(values)

    def ref_out(self, value: Any) -> uuid.UUID:
        return uuid.UUID(hex=value)

    def write_rows(
        self,
        table: str,
        columns: str,
        rows: list[tuple[Any, ...]],
        encoded: Any = None,  # noqa: ARG002 - nothing to encode ahead: SQLite binds the rows
    ) -> None:
        # SQLite runs in-process: one prepared statement stepped over every row is its bulk
        # insert, with no round trip per row to save (measured 2x faster than one INSERT from
        # a JSON array, which re-parses each row once per column).
        marks = ", ".join("?" * (columns.count(",") + 1))
        self.cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)

    def update_balances(
        self,
        tenant: uuid.UUID,
        rows: list[tuple[Any, ...]],
        encoded: Any = None,  # noqa: ARG002 - nothing to encode ahead: SQLite binds the rows
    ) -> None:
        # One prepared UPDATE stepped over the accounts, each found through the primary key:
        # O(touched accounts) whatever the tenant's size (measured faster than staging the
        # counters in a temp table and updating from it, for a few accounts and for thousands).
        tid = tenant.hex
        self.cur.executemany(
            "UPDATE ledger_accounts SET debits_posted = ?, credits_posted = ?,"
            " debits_pending = ?, credits_pending = ?, last_seq = ?"
            " WHERE tenant_id = ? AND id = ?",
            [(dp, cp, dpe, cpe, ls, tid, ref) for _hex, ref, dp, cp, dpe, cpe, ls in rows],
        )
