"""Storage: tables, migrations, the unit of work, the outbox and the ledger's SQL paths."""

from settle.store.db import (
    DEFAULT_DATABASE_URL,
    create_db_engine,
    database_url_from_env,
    migrations_current,
    upgrade_database,
)
from settle.store.ledger_store import LedgerStore
from settle.store.ledger_verify import VerifyReport, verify_ledger
from settle.store.uow import SqlUnitOfWork

__all__ = [
    "DEFAULT_DATABASE_URL",
    "LedgerStore",
    "SqlUnitOfWork",
    "VerifyReport",
    "create_db_engine",
    "database_url_from_env",
    "migrations_current",
    "upgrade_database",
    "verify_ledger",
]
