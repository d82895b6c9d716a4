"""Idempotency keys: the stored response of a request, written with its effect.

A request that carries an ``Idempotency-Key`` is answered once; its fingerprint (method, path,
body), status and body are stored under (tenant, key) **in the same transaction as its
effect**, so a crash can never leave an effect without its record or a record without its
effect. Ledger writes carry a :class:`Receipt` through the group-commit batch for that; every
other write runs through :func:`run_idempotent`. Either way the key is checked again under the
tenant's chain-head lock before it is written, so two processes racing with one key produce
one effect, and the second answers with the first one's response.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from settle.errors import SettleError
from settle.store import tables
from settle.store.db import write_transaction
from settle.store.uow import SqlUnitOfWork

if TYPE_CHECKING:
    import uuid

    from settle.clock import Clock
    from settle.ledger.batch import TransferResult
    from settle.ledger.model import Transfer

__all__ = [
    "IDEMPOTENCY_COLUMNS",
    "Receipt",
    "StoredResponse",
    "TransferLookup",
    "find_stored_response",
    "purge_idempotency_keys",
    "run_idempotent",
]

I = tables.idempotency_keys  # noqa: E741 - the table, as the other modules name theirs
IDEMPOTENCY_COLUMNS = "tenant_id, key, fingerprint, status, body, created_at"
_T = TypeVar("_T")

TransferLookup = Callable[["uuid.UUID"], "Transfer | None"]
"""A transfer committed by the batch being written, by id (None if the batch made none)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What a key answered the first time: replayed byte for byte to every retry."""

    fingerprint: bytes
    status: int
    body: bytes
    created_at: int


class Receipt:
    """An idempotency key's record, carried by a ledger unit and written in its transaction.

    ``render(results, lookup)`` turns the unit's results into ``(status, body)``, kept in
    ``rendered``; it returns None when the answer needs a read the batch cannot make (a
    transfer that already existed), and then nothing is written with the batch: the unit moved
    no money, and the caller stores its answer afterwards. When the key turns out to be used
    already, the committer leaves the unit out of the batch and sets ``stored`` to the first
    response. Without a ``key`` the receipt only renders (nothing is stored).
    """

    __slots__ = ("fingerprint", "key", "render", "rendered", "stored", "tenant_id")

    def __init__(
        self,
        tenant_id: uuid.UUID,
        key: str | None,
        fingerprint: bytes,
        render: Callable[[Sequence[TransferResult], TransferLookup], tuple[int, bytes] | None],
    ) -> None:
        self.tenant_id = tenant_id
        self.key = key
        self.fingerprint = fingerprint
        self.render = render
        self.rendered: tuple[int, bytes] | None = None
        self.stored: StoredResponse | None = None


# Built once: on every keyed write's path.
_FIND_RESPONSE = sa.select(I.c.fingerprint, I.c.status, I.c.body, I.c.created_at).where(
    I.c.tenant_id == sa.bindparam("b_tenant_id"), I.c.key == sa.bindparam("b_key")
)
_INSERT_RESPONSE = I.insert()


def find_stored_response(
    conn: sa.Connection, tenant_id: uuid.UUID, key: str
) -> StoredResponse | None:
    row = conn.execute(_FIND_RESPONSE, {"b_tenant_id": tenant_id, "b_key": key}).first()
    if row is None:
        return None
    return StoredResponse(bytes(row[0]), int(row[1]), bytes(row[2]), int(row[3]))


def _insert(conn: sa.Connection, tenant_id: uuid.UUID, key: str, response: StoredResponse) -> None:
    conn.execute(
        _INSERT_RESPONSE,
        {
            "tenant_id": tenant_id,
            "key": key,
            "fingerprint": response.fingerprint,
            "status": response.status,
            "body": response.body,
            "created_at": response.created_at,
        },
    )


def store_response(
    engine: sa.Engine, tenant_id: uuid.UUID, key: str, response: StoredResponse
) -> StoredResponse:
    """Store the answer of a request that changed nothing; returns the answer that stands.

    Used after a ledger unit whose answer needed a read: no effect to share a transaction
    with. If another request stored the key meanwhile, its answer stands.
    """
    with write_transaction(engine) as conn:
        insert = postgresql.insert(I) if conn.dialect.name == "postgresql" else sqlite.insert(I)
        inserted = conn.execute(
            insert.values(
                tenant_id=tenant_id,
                key=key,
                fingerprint=response.fingerprint,
                status=response.status,
                body=response.body,
                created_at=response.created_at,
            ).on_conflict_do_nothing()
        ).rowcount
        # Only when the insert was skipped did another request store the key first.
        stored = None if inserted else find_stored_response(conn, tenant_id, key)
    return response if stored is None else stored


def run_idempotent(
    engine: sa.Engine,
    clock: Clock,
    tenant_id: uuid.UUID,
    key: str,
    fingerprint: bytes,
    effect: Callable[[SqlUnitOfWork], _T],
    render: Callable[[_T], tuple[int, bytes]],
    *,
    after_commit: Callable[[], None] | None = None,
) -> tuple[StoredResponse, bool]:
    """Run ``effect`` and store its rendered answer under ``key``, in one transaction.

    ``effect`` is a service function's call on the unit of work it is given: its own
    ``uow.commit()`` is held back until the answer is stored beside the effect. Returns the
    answer and whether it is a replay (the key was used first by a concurrent request, whose
    effect stands and whose answer is returned; this one's effect is rolled back).
    Errors raised by ``effect`` roll everything back and store nothing (unless a concurrent
    request stored the key meanwhile: then its answer is the replay).
    """
    uow = _HeldUnitOfWork(engine, clock, after_commit)
    with uow:
        # A retry usually finds its answer here, before the effect could refuse to repeat.
        existing = find_stored_response(uow.connection, tenant_id, key)
        if existing is not None:
            return existing, True
        try:
            value = effect(uow)
        except SettleError:
            # A concurrent request with this key may have won the race (on PostgreSQL both can
            # miss the read above): its effect is what this one's refuses to repeat, e.g. a
            # taken account code. Under the tenant's lock its answer is visible; it stands.
            uow.ledger.lock_tenant(tenant_id)
            existing = find_stored_response(uow.connection, tenant_id, key)
            if existing is not None:
                return existing, True
            raise
        status, body = render(value)  # before the lock: it needs none
        # Under the tenant's chain head, as every writer of its idempotency keys.
        uow.ledger.lock_tenant(tenant_id)
        existing = find_stored_response(uow.connection, tenant_id, key)
        if existing is not None:
            return existing, True
        response = StoredResponse(fingerprint, status, body, clock())
        _insert(uow.connection, tenant_id, key, response)
        uow.commit_held()
    return response, False


class _HeldUnitOfWork(SqlUnitOfWork):
    """A unit of work whose inner ``with``/``commit()`` (the service's) do not end it."""

    def __init__(
        self, engine: sa.Engine, clock: Clock, after_commit: Callable[[], None] | None
    ) -> None:
        super().__init__(engine, clock, after_commit=after_commit)
        self._depth = 0

    @property
    def connection(self) -> sa.Connection:
        if self._connection is None:
            raise RuntimeError("outside the unit of work")
        return self._connection

    def __enter__(self) -> _HeldUnitOfWork:
        self._depth += 1
        if self._depth == 1:
            super().__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            super().__exit__(exc_type, exc, tb)

    def commit(self) -> None:
        """The service's commit: held until :meth:`commit_held`."""

    def commit_held(self) -> None:
        super().commit()


def purge_idempotency_keys(engine: sa.Engine, before: int, *, chunk: int = 10_000) -> int:
    """Delete the keys stored before ``before`` (microseconds), ``chunk`` at a time; count them."""
    purged = 0
    while True:
        with write_transaction(engine) as conn:
            doomed = (
                sa.select(I.c.tenant_id, I.c.key)
                .where(I.c.created_at < before)
                .order_by(I.c.created_at)
                .limit(chunk)
            )
            deleted = conn.execute(
                I.delete().where(sa.tuple_(I.c.tenant_id, I.c.key).in_(doomed))
            ).rowcount
        purged += deleted
        if deleted < chunk:
            return purged
