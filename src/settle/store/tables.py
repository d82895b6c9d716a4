"""The database schema, as SQLAlchemy Core tables (the migrations create exactly these).

Conventions: every table is tenant-scoped; ids are UUIDs; timestamps are integer microseconds
since the Unix epoch in UTC (exact, sortable and identical on SQLite and PostgreSQL); money
columns are BIGINT minor units. Ledger transfers and postings are append-only: triggers created
by the migrations reject UPDATE and DELETE on them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from settle.store.types import Digest

__all__ = [
    "api_keys",
    "idempotency_keys",
    "ledger_accounts",
    "ledger_chain_heads",
    "ledger_pending_holds",
    "ledger_postings",
    "ledger_transfers",
    "metadata",
    "outbox_events",
    "tenants",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Micros = sa.BigInteger  # microseconds since the epoch, UTC

# One row per tenant: the head of its transfer hash chain and its sequence counters. Locking it
# serialises ledger commits per tenant across processes, which is what makes the sequence and
# the chain gap-free.
ledger_chain_heads = sa.Table(
    "ledger_chain_heads",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("last_event_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_created_at", Micros, nullable=False, server_default="0"),
)

ledger_accounts = sa.Table(
    "ledger_accounts",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("code", sa.String(128), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("parent_id", sa.Uuid, nullable=True),
    sa.Column("debits_must_not_exceed_credits", sa.Boolean, nullable=False),
    sa.Column("credits_must_not_exceed_debits", sa.Boolean, nullable=False),
    sa.Column("overdraft_limit", sa.BigInteger, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("metadata", JsonDoc, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("debits_posted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("credits_posted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("debits_pending", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("credits_pending", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("tenant_id", "code"),
    sa.ForeignKeyConstraint(
        ["tenant_id", "parent_id"], ["ledger_accounts.tenant_id", "ledger_accounts.id"]
    ),
    sa.CheckConstraint(
        "type IN ('asset', 'liability', 'equity', 'revenue', 'expense')", name="type"
    ),
    sa.CheckConstraint("status IN ('active', 'frozen', 'closed')", name="status"),
    sa.CheckConstraint(
        "NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)",
        name="one_balance_flag",
    ),
    sa.CheckConstraint(
        "overdraft_limit IS NULL OR overdraft_limit >= 0", name="overdraft_limit_non_negative"
    ),
    sa.CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0"
        " AND credits_pending >= 0",
        name="counters_non_negative",
    ),
    # The balance constraints, enforced by the database as a backstop to the engine's checks.
    sa.CheckConstraint(
        "NOT debits_must_not_exceed_credits OR CAST(debits_posted AS NUMERIC) + debits_pending"
        " <= CAST(credits_posted AS NUMERIC) + COALESCE(overdraft_limit, 0)",
        name="debits_within_credits",
    ),
    sa.CheckConstraint(
        "NOT credits_must_not_exceed_debits OR CAST(credits_posted AS NUMERIC) + credits_pending"
        " <= CAST(debits_posted AS NUMERIC) + COALESCE(overdraft_limit, 0)",
        name="credits_within_debits",
    ),
    postgresql_with={"fillfactor": 70},  # room for HOT updates of the balance counters
)

ledger_transfers = sa.Table(
    "ledger_transfers",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("pending_id", sa.Uuid, nullable=True),
    sa.Column("reversal_of", sa.Uuid, nullable=True),
    sa.Column("timeout_at", Micros, nullable=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("metadata", JsonDoc, nullable=False),
    sa.Column("effective_at", Micros, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("fingerprint", Digest, nullable=False),
    sa.Column("hash", Digest, nullable=False),
    sa.UniqueConstraint("tenant_id", "seq"),
    # A pending transfer is resolved (posted, voided or expired) at most once, and a transfer is
    # reversed at most once: the database enforces both. Partial, so the many transfers that
    # resolve or reverse nothing cost no index entry.
    *(
        sa.Index(
            f"uq_ledger_transfers_tenant_id_{column}",
            "tenant_id",
            column,
            unique=True,
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
        )
        for column in ("pending_id", "reversal_of")
    ),
    sa.CheckConstraint(
        "kind IN ('transfer', 'pending', 'post_pending', 'void_pending', 'expire_pending',"
        " 'reversal')",
        name="kind",
    ),
)

ledger_postings = sa.Table(
    "ledger_postings",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("idx", sa.SmallInteger, primary_key=True),
    sa.Column("transfer_id", sa.Uuid, nullable=False),
    sa.Column("account_id", sa.Uuid, nullable=False),
    sa.Column("side", sa.String(1), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    # What the posting adds to its side's posted counter, and what it adds to (a hold) or
    # removes from (a release) its side's pending counter.
    sa.Column("posted_amount", sa.BigInteger, nullable=False),
    sa.Column("pending_amount", sa.BigInteger, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    # The account's counters right after this posting: point-in-time balances are one lookup.
    sa.Column("debits_posted", sa.BigInteger, nullable=False),
    sa.Column("credits_posted", sa.BigInteger, nullable=False),
    sa.Column("debits_pending", sa.BigInteger, nullable=False),
    sa.Column("credits_pending", sa.BigInteger, nullable=False),
    sa.CheckConstraint("side IN ('D', 'C')", name="side"),
    sa.CheckConstraint("posted_amount >= 0", name="posted_amount_non_negative"),
    sa.CheckConstraint("posted_amount > 0 OR pending_amount <> 0", name="moves_something"),
    # Statements and point-in-time balances: one account's postings in journal order (the
    # queries also filter on the tenant; the id alone keeps the index entries short).
    sa.Index(None, "account_id", "created_at", "seq"),
    # Clustered on (tenant, seq, idx) on SQLite: appends in key order, one B-tree fewer.
    sqlite_with_rowid=False,
)

# Open holds: one row per pending transfer not yet posted, voided or expired. Mutable on
# purpose (the transfers themselves are not); it is what the expiry job scans.
ledger_pending_holds = sa.Table(
    "ledger_pending_holds",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("transfer_id", sa.Uuid, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("timeout_at", Micros, nullable=True),
    sa.Index(None, "timeout_at"),
)

# The transactional outbox: every committed change appends its events here in the same
# transaction, numbered per tenant. Transfer events carry no payload: transfers are immutable,
# so the transfer itself is the payload at any later time.
outbox_events = sa.Table(
    "outbox_events",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("object_id", sa.Uuid, nullable=False),
    sa.Column("payload", JsonDoc, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sqlite_with_rowid=False,
)

# Tenants: each is an isolated set of books (every other table carries a tenant_id).
tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", Micros, nullable=False),
)

# API keys, stored as a SHA-256 of the key (never the key) and a visible prefix.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("digest", sa.LargeBinary(32), nullable=False),
    sa.Column("mode", sa.String(4), nullable=False),
    # Space-separated, sorted scope names.
    sa.Column("scopes", sa.String(200), nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("revoked_at", Micros, nullable=True),
    sa.Column("last_used_at", Micros, nullable=True),
    sa.UniqueConstraint("digest"),
    sa.Index(None, "tenant_id"),
    sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
)

# Idempotency keys: one row per (tenant, key), written in the same transaction as the request's
# effect, with the response to replay byte for byte. Purged after the retention period.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    # SHA-256 of the request's method, path and body.
    sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Index(None, "created_at"),
)
