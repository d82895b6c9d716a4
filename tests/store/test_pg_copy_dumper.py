"""A writer connection's binary ``COPY`` encodes bytea columns with psycopg's bytes dumper.

Out of the box, the dumper psycopg picks for the bytea oid in binary format (the one
``copy.set_types(["bytea", ...])`` uses) is ``psycopg.dbapi20``'s, meant for DB-API ``Binary``
objects; ``PostgresDialect.configure`` registers the bytes dumper again so ``COPY`` uses the
compiled one. The bytes must still land exactly as given.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import psycopg.dbapi20
import pytest
from psycopg.adapt import PyFormat
from psycopg.pq import Format

from settle.store.ledger_sql import PostgresDialect

pytestmark = pytest.mark.postgres

BYTEA_OID = 17


@pytest.fixture
def connection(postgres_server: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    url = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        yield conn


def test_a_fresh_connection_would_copy_bytea_with_the_dbapi_binary_dumper(
    connection: psycopg.Connection[tuple[object, ...]],
) -> None:
    dumper = connection.adapters.get_dumper_by_oid(BYTEA_OID, Format.BINARY)

    assert dumper is psycopg.dbapi20.BinaryBinaryDumper


def test_a_configured_connection_copies_bytea_with_the_bytes_dumper(
    connection: psycopg.Connection[tuple[object, ...]],
) -> None:
    PostgresDialect.configure(connection)

    dumper = connection.adapters.get_dumper_by_oid(BYTEA_OID, Format.BINARY)

    assert dumper.__name__ == "BytesBinaryDumper"
    assert dumper.__module__ != psycopg.dbapi20.__name__
    assert dumper is not psycopg.dbapi20.BinaryBinaryDumper
    # The very class psycopg itself picks for ``bytes`` (the compiled one when it is installed).
    assert dumper is connection.adapters.get_dumper(bytes, PyFormat.BINARY)


def test_bytes_copied_through_a_configured_connection_come_back_exactly(
    connection: psycopg.Connection[tuple[object, ...]],
) -> None:
    PostgresDialect.configure(connection)
    rows = [
        (1, bytes(32), "a zero chain head"),
        (2, bytes(range(256)), "every byte value"),
        (3, b"", "nothing at all"),
        (4, b"\x00\\x00\xff'\"\n", "quotes, escapes and a newline"),
        (5, None, "no digest"),
    ]
    with connection.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE copied (n int8, digest bytea, note text)")
        with cur.copy("COPY copied (n, digest, note) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "bytea", "text"])
            for row in rows:
                copy.write_row(row)
        cur.execute("SELECT n, digest, note FROM copied ORDER BY n")
        back = cur.fetchall()

    assert back == rows
    assert [type(digest) for _n, digest, _note in back] == [bytes, bytes, bytes, bytes, type(None)]
