"""The unit of work: one connection, one transaction, rolled back unless committed."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from settle.clock import Clock, system_clock
from settle.store.jobs_repo import SqlJobQueue
from settle.store.ledger_repo import SqlLedgerRepository
from settle.store.payments_repo import SqlPaymentsRepository
from settle.store.security_repo import SqlSecurityRepository
from settle.store.webhooks_repo import SqlWebhookRepository

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["SqlUnitOfWork"]


class SqlUnitOfWork:
    """``with uow: ...; uow.commit()`` — leaving the block without commit rolls back."""

    ledger: SqlLedgerRepository
    security: SqlSecurityRepository
    payments: SqlPaymentsRepository
    jobs: SqlJobQueue
    webhooks: SqlWebhookRepository

    def __init__(
        self,
        engine: sa.Engine,
        clock: Clock = system_clock,
        *,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        # Called after each commit: wakes the worker that runs the jobs it may have enqueued.
        self._after_commit = after_commit
        self._connection: sa.Connection | None = None
        self._transaction: sa.RootTransaction | None = None

    def __enter__(self) -> Self:
        connection = self._engine.connect().execution_options(sqlite_begin="IMMEDIATE")
        self._connection = connection
        self._transaction = connection.begin()
        self.ledger = SqlLedgerRepository(connection, self._clock)
        self.security = SqlSecurityRepository(connection)
        self.payments = SqlPaymentsRepository(connection)
        self.jobs = SqlJobQueue(connection)
        self.webhooks = SqlWebhookRepository(connection)
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
        self.ledger.flush_events()
        self._transaction.commit()
        if self._after_commit is not None:
            self._after_commit()

    def now(self) -> int:
        return self._clock()
