"""Moving money inside a unit of work's own transaction, beside another context's writes.

The group-commit engine gives every batch a transaction of its own. A payment's state change
and its ledger transfer must commit together, so the payments service applies its transfers
here: the same locked apply and set-based writes as a batch, on the unit of work's connection.
The chain-head lock it takes is the one the engine takes; the engine's speculative batches see
the moved head at their commit and re-apply under lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from settle.ledger.apply import TransferResult, Unit
from settle.store.ledger_batch import BatchApplier
from settle.store.ledger_sql import PostgresDialect, SqliteDialect

if TYPE_CHECKING:
    import sqlalchemy as sa

    from settle.clock import Clock
    from settle.ledger.requests import TransferRequest

__all__ = ["apply_in_transaction"]


def apply_in_transaction(
    connection: sa.Connection,
    clock: Clock,
    requests: Sequence[TransferRequest],
    *,
    atomic: bool = True,
) -> list[TransferResult]:
    """Apply ``requests`` in ``connection``'s open transaction; one result per request.

    Nothing is committed here: the caller's commit carries the transfers with its own rows,
    and its rollback undoes them.
    """
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the unit of work's connection is closed")
    cursor = raw.cursor()
    try:
        pg = connection.dialect.name == "postgresql"
        d = PostgresDialect(cursor) if pg else SqliteDialect(cursor)
        return BatchApplier(clock).apply_units(d, [Unit(tuple(requests), atomic)])[0]
    finally:
        cursor.close()
