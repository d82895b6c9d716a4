"""The ledger wired to a database: the group-commit writer, units of work and reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from settle.clock import Clock, system_clock
from settle.ledger.group_commit import MAX_BATCH, GroupCommitEngine
from settle.store.db import create_db_engine
from settle.store.ledger_batch import SqlBatchCommitter
from settle.store.ledger_repo import SqlLedgerRepository
from settle.store.uow import SqlUnitOfWork

if TYPE_CHECKING:
    from settle.ledger.apply import TransferResult
    from settle.ledger.requests import TransferRequest

__all__ = ["LedgerStore"]


class LedgerStore:
    """One process's handle on the ledger in one database."""

    def __init__(
        self,
        engine: sa.Engine | str | None = None,
        *,
        clock: Clock = system_clock,
        max_batch: int = MAX_BATCH,
        pipeline: bool = True,
    ) -> None:
        self.db = engine if isinstance(engine, sa.Engine) else create_db_engine(engine)
        self.clock = clock
        self.committer = SqlBatchCommitter(self.db, clock)
        self.writer = GroupCommitEngine(self.committer, max_batch=max_batch, pipeline=pipeline)
        # Called after every unit of work's commit (the app points it at the job runner's wake).
        self.after_commit: Callable[[], None] | None = None

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, self.clock, after_commit=self.after_commit)

    @contextmanager
    def read(self) -> Iterator[SqlLedgerRepository]:
        """A repository on a read-only transaction (a consistent snapshot on PostgreSQL)."""
        with self.db.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                )
            yield SqlLedgerRepository(connection, self.clock)
            connection.rollback()

    def submit(
        self, requests: Sequence[TransferRequest], *, atomic: bool = False
    ) -> list[TransferResult]:
        """Commit transfers through the group-commit writer; one result per request."""
        return self.writer.submit(requests, atomic=atomic)

    def close(self) -> None:
        self.writer.close()
        self.db.dispose()
