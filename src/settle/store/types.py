"""Column types that differ between the two stores."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = ["Digest"]


class Digest(sa.types.TypeDecorator[bytes]):
    """A SHA-256 digest: BYTEA on PostgreSQL, hex TEXT on SQLite.

    Hex on SQLite lets the ledger's hot path insert whole batches with one
    ``INSERT ... SELECT FROM json_each(?)`` (JSON carries no blobs), which SQLite runs in C
    from start to end.
    """

    impl = sa.LargeBinary(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(64))
        return dialect.type_descriptor(sa.LargeBinary(32))

    def process_bind_param(self, value: bytes | None, dialect: sa.Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return value.hex()

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> bytes | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return bytes.fromhex(value)
        return bytes(value)
