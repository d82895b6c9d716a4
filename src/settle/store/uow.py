"""The unit of work: one connection, one transaction, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Self

from settle.clock import Clock, system_clock
from settle.store.ledger_repo import SqlLedgerRepository
from settle.store.security_repo import SqlSecurityRepository

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["SqlUnitOfWork"]


class SqlUnitOfWork:
    """``with uow: ...; uow.commit()`` — leaving the block without commit rolls back."""

    ledger: SqlLedgerRepository
    security: SqlSecurityRepository

    def __init__(self, engine: sa.Engine, clock: Clock = system_clock) -> None:
        self._engine = engine
        self._clock = clock
        self._connection: sa.Connection | None = None
        self._transaction: sa.RootTransaction | None = None

    def __enter__(self) -> Self:
        connection = self._engine.connect().execution_options(sqlite_begin="IMMEDIATE")
        self._connection = connection
        self._transaction = connection.begin()
        self.ledger = SqlLedgerRepository(connection, self._clock)
        self.security = SqlSecurityRepository(connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            self._transaction = None

    def commit(self) -> None:
        if self._transaction is None:
            raise RuntimeError("commit outside the unit of work")
        self._transaction.commit()

    def now(self) -> int:
        return self._clock()
