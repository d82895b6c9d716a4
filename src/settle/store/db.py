"""Engines and migrations for the two supported stores: embedded SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = [
    "DEFAULT_DATABASE_URL",
    "create_db_engine",
    "database_url_from_env",
    "downgrade_database",
    "migrations_current",
    "normalize_database_url",
    "upgrade_database",
    "write_transaction",
]

DEFAULT_DATABASE_URL = "sqlite:///var/settle.db"
_MIGRATIONS = Path(__file__).parent / "migrations"


def database_url_from_env() -> str:
    """``SETTLE_DATABASE_URL``, or the embedded SQLite file under ``./var/``."""
    return os.environ.get("SETTLE_DATABASE_URL") or DEFAULT_DATABASE_URL


def normalize_database_url(url: str) -> str:
    """Pin the drivers Settle is built for: psycopg 3 for PostgreSQL, the stdlib for SQLite."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() != "sqlite":
        raise ValueError(
            f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL"
        )
    return parsed.render_as_string(hide_password=False)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL for concurrent readers; FULL sync so a commit survives power loss (durable commits);
    # transactions are managed explicitly (BEGIN IMMEDIATE for ledger writes).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


_BUSY_TIMEOUT_SECONDS = 30.0


class SqliteWriterGate:
    """The writers of one SQLite file in this process, queued on a lock of their own.

    SQLite lets one writer in at a time, and a writer that finds the file locked sleeps in
    its busy handler for 1, 2, 5 … up to 100 ms before looking again: under load the lock
    sits free while its waiters sleep. Queued here instead, the next writer starts the
    moment the last one commits. The gate is taken before ``BEGIN IMMEDIATE`` and given back
    after the commit or rollback; writers in other processes still meet at SQLite's own lock.
    """

    def __init__(self, timeout: float = _BUSY_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._holder: int | None = None  # id() of the sqlite3 connection inside

    @staticmethod
    def _identity(connection: Any) -> int:
        # SQLAlchemy hands over the pool's proxy or the sqlite3 connection, by the call.
        return id(getattr(connection, "dbapi_connection", connection))

    @property
    def held(self) -> bool:
        """Whether some writer has the turn now."""
        return self._holder is not None

    def enter(self, connection: Any) -> None:
        if not self._lock.acquire(timeout=self.timeout):
            # As SQLite's own busy timeout would end, wrapped as SQLAlchemy wraps it.
            locked = sqlite3.OperationalError("database is locked (no turn to write in time)")
            raise sa.exc.OperationalError("BEGIN", None, locked)
        self._holder = self._identity(connection)

    def leave(self, connection: Any) -> None:
        """Give the turn back if ``connection`` has it (a no-op otherwise)."""
        if self._holder is not None and self._holder == self._identity(connection):
            self._holder = None
            self._lock.release()


_GATES: dict[str, SqliteWriterGate] = {}
_GATES_LOCK = threading.Lock()


def _gate_for(database: str) -> SqliteWriterGate:
    key = str(Path(database).resolve())
    with _GATES_LOCK:
        return _GATES.setdefault(key, SqliteWriterGate())


def _sqlite_begin(conn: sa.Connection) -> None:
    # Writers take the write lock at BEGIN: a deferred transaction that reads and then writes
    # can fail with SQLITE_BUSY instead of waiting for the lock.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    gate: SqliteWriterGate | None = conn.engine.dialect.__dict__.get("settle_writer_gate")
    raw = conn.connection
    if gate is not None and mode != "DEFERRED":
        gate.enter(raw)
        try:
            conn.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            gate.leave(raw)
            raise
        return
    conn.exec_driver_sql(f"BEGIN {mode}")


def _install_writer_gate(engine: sa.Engine, gate: SqliteWriterGate) -> None:
    """Give the gate back after the DBAPI commit, rollback or close (SQLAlchemy's commit
    event comes before the commit, when the file is still locked)."""
    dialect: Any = engine.dialect  # each engine has a dialect object of its own
    dialect.settle_writer_gate = gate
    commit, rollback, close = dialect.do_commit, dialect.do_rollback, dialect.do_close

    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:
            gate.leave(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            gate.leave(dbapi_connection)

    def do_close(dbapi_connection: Any) -> None:
        try:
            close(dbapi_connection)
        finally:
            gate.leave(dbapi_connection)

    dialect.do_commit, dialect.do_rollback, dialect.do_close = do_commit, do_rollback, do_close


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that writes, committed when the block ends: on SQLite it takes the
    file's write lock at BEGIN, queued on this process's writer gate (a deferred one would
    meet the lock at its first write, in SQLite's sleeping busy handler)."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        yield conn


def create_db_engine(url: str | None = None, **kwargs: Any) -> sa.Engine:
    """An engine for ``url`` (default: from the environment), configured for durable commits."""
    url = normalize_database_url(url or database_url_from_env())
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            poolclass=sa.pool.QueuePool,
            pool_size=kwargs.pop("pool_size", 8),
            # A connection is a file handle: never make a thread wait for one (a writer
            # waiting for its turn holds one, and the turn's holder may need another).
            max_overflow=kwargs.pop("max_overflow", -1),
            **kwargs,
        )
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        # With the driver in autocommit, SQLAlchemy must emit BEGIN itself.
        sa.event.listen(engine, "begin", _sqlite_begin)
        if parsed.database and parsed.database != ":memory:":
            _install_writer_gate(engine, _gate_for(parsed.database))
        return engine
    return sa.create_engine(url, pool_size=kwargs.pop("pool_size", 8), **kwargs)


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade_database(engine: sa.Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` in one transaction."""
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)


def downgrade_database(engine: sa.Engine, revision: str) -> None:
    """Undo the migrations after ``revision`` in one transaction."""
    with engine.begin() as connection:
        command.downgrade(_alembic_config(connection), revision)


def migrations_current(engine: sa.Engine) -> bool:
    """Whether the database is at the newest migration."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
        heads = ScriptDirectory.from_config(_alembic_config(connection)).get_heads()
    return set(current) == set(heads)
