"""Migrations run forwards and backwards; the trigger each revision installs is in force.

Revision 0002 rewrites SQLite's balanced-transfer trigger to read a transfer's postings once,
revision 0003 takes the tenant id out of the postings' per-account index; going back to 0001
must restore the originals, and both triggers must refuse the same unbalanced entry.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from settle.store import schema, tables
from settle.store.db import (
    create_db_engine,
    downgrade_database,
    migrations_current,
    upgrade_database,
)

NOW = 1_767_225_600_000_000


def _trigger_sql(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text(
                    "SELECT sql FROM sqlite_master"
                    " WHERE type = 'trigger' AND name = 'ledger_transfers_balanced'"
                )
            ).scalar_one()
        )


def _unbalanced_entry_is_refused(engine: sa.Engine) -> bool:
    tenant, transfer, a, b = (uuid.uuid4() for _ in range(4))
    try:
        with engine.begin() as conn:
            conn.execute(
                tables.ledger_postings.insert().values(
                    [
                        {
                            "tenant_id": tenant, "seq": 1, "idx": idx, "transfer_id": transfer,
                            "account_id": account, "side": side, "currency": "USD",
                            "posted_amount": amount, "pending_amount": 0, "created_at": NOW,
                            "debits_posted": 0, "credits_posted": 0, "debits_pending": 0,
                            "credits_pending": 0,
                        }
                        for idx, (account, side, amount) in enumerate([(a, "D", 100), (b, "C", 99)])
                    ]
                )
            )  # fmt: skip
            conn.execute(
                tables.ledger_transfers.insert().values(
                    tenant_id=tenant, id=transfer, seq=1, kind="transfer", description="",
                    metadata={}, effective_at=NOW, created_at=NOW, fingerprint=bytes(32),
                    hash=bytes(32),
                )
            )  # fmt: skip
    except sa.exc.IntegrityError as error:
        return "unbalanced transfer" in str(error)
    return False


def _postings_indexes(engine: sa.Engine) -> dict[str, list[str]]:
    inspector = sa.inspect(engine)
    return {
        str(ix["name"]): [str(c) for c in ix["column_names"]]
        for ix in inspector.get_indexes("ledger_postings")
    }


def test_sqlite_balance_trigger_reads_postings_once_at_head_and_twice_at_0001(
    tmp_path: Path,
) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
    try:
        upgrade_database(engine)
        assert migrations_current(engine) is True
        assert "min(p.currency) = max(p.currency)" in _trigger_sql(engine)
        assert _unbalanced_entry_is_refused(engine) is True
        assert _postings_indexes(engine) == {
            "ix_ledger_postings_account_id_created_at_seq": ["account_id", "created_at", "seq"]
        }

        downgrade_database(engine, "0001")
        assert migrations_current(engine) is False
        assert "min(p.currency)" not in _trigger_sql(engine)
        assert "GROUP BY p.currency" in _trigger_sql(engine)
        assert _unbalanced_entry_is_refused(engine) is True
        assert _postings_indexes(engine) == {
            "ix_ledger_postings_tenant_id_account_id_created_at_seq": [
                "tenant_id", "account_id", "created_at", "seq",
            ]
        }  # fmt: skip

        upgrade_database(engine)
        assert migrations_current(engine) is True
        assert "min(p.currency) = max(p.currency)" in _trigger_sql(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_upgrades_to_head_and_back_to_0001_and_forward_again(
    postgres_server: str,
) -> None:
    """0002 leaves PostgreSQL's triggers alone: the round trip keeps its statement triggers."""
    name = f"settle_migrations_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(postgres_server).set(database=name)
    engine = create_db_engine(url.render_as_string(hide_password=False))
    try:
        upgrade_database(engine)
        assert migrations_current(engine) is True
        downgrade_database(engine, "0001")
        assert migrations_current(engine) is False
        assert list(_postings_indexes(engine)) == [
            "ix_ledger_postings_tenant_id_account_id_created_at_seq"
        ]
        upgrade_database(engine)
        assert migrations_current(engine) is True
        assert _postings_indexes(engine) == {
            "ix_ledger_postings_account_id_created_at_seq": ["account_id", "created_at", "seq"]
        }
        with engine.connect() as conn:
            triggers = (
                conn.execute(
                    sa.text(
                        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
                        " AND tgrelid = 'ledger_postings'::regclass ORDER BY tgname"
                    )
                )
                .scalars()
                .all()
            )
        assert triggers == [
            "ledger_postings_balanced",
            "ledger_postings_immutable",
            "ledger_postings_no_truncate",
        ]
        assert _unbalanced_entry_is_refused(engine) is True
    finally:
        engine.dispose()
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_migrated_schema_is_exactly_the_declared_tables(db_url: str) -> None:
    """Alembic's autogenerate finds nothing to add or drop between the migrations (at head)
    and ``settle.store.tables``: the code's view of the schema is the database's."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": False, "compare_server_default": False}
            )
            diff = [
                d for d in compare_metadata(context, schema.metadata)
                if not (isinstance(d, tuple) and d[0] == "remove_table"
                        and d[1].name == "alembic_version")
            ]  # fmt: skip
    finally:
        engine.dispose()
    assert diff == []
