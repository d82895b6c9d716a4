"""Engines and migrations for the two supported stores: embedded SQLite and PostgreSQL."""

from __future__ import annotations

import os
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


def _sqlite_begin(conn: sa.Connection) -> None:
    # Writers take the write lock at BEGIN: a deferred transaction that reads and then writes
    # can fail with SQLITE_BUSY instead of waiting for the lock.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


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
            **kwargs,
        )
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        # With the driver in autocommit, SQLAlchemy must emit BEGIN itself.
        sa.event.listen(engine, "begin", _sqlite_begin)
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
