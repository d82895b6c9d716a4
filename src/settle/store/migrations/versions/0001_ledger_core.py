"""Ledger core: accounts, transfers, postings, holds, chain heads and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from settle.store.types import Digest

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "ledger_accounts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("debits_must_not_exceed_credits", sa.Boolean(), nullable=False),
        sa.Column("credits_must_not_exceed_debits", sa.Boolean(), nullable=False),
        sa.Column("overdraft_limit", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'frozen', 'closed')", name=op.f("ck_ledger_accounts_status")
        ),
        sa.CheckConstraint(
            "type IN ('asset', 'liability', 'equity', 'revenue', 'expense')",
            name=op.f("ck_ledger_accounts_type"),
        ),
        sa.CheckConstraint(
            "NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)",
            name=op.f("ck_ledger_accounts_one_balance_flag"),
        ),
        sa.CheckConstraint(
            "NOT credits_must_not_exceed_debits OR CAST(credits_posted AS NUMERIC) + credits_pending <= CAST(debits_posted AS NUMERIC) + COALESCE(overdraft_limit, 0)",
            name=op.f("ck_ledger_accounts_credits_within_debits"),
        ),
        sa.CheckConstraint(
            "NOT debits_must_not_exceed_credits OR CAST(debits_posted AS NUMERIC) + debits_pending <= CAST(credits_posted AS NUMERIC) + COALESCE(overdraft_limit, 0)",
            name=op.f("ck_ledger_accounts_debits_within_credits"),
        ),
        sa.CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
            name=op.f("ck_ledger_accounts_counters_non_negative"),
        ),
        sa.CheckConstraint(
            "overdraft_limit IS NULL OR overdraft_limit >= 0",
            name=op.f("ck_ledger_accounts_overdraft_limit_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "parent_id"],
            ["ledger_accounts.tenant_id", "ledger_accounts.id"],
            name=op.f("fk_ledger_accounts_tenant_id_parent_id"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_ledger_accounts_tenant_id_code")),
        postgresql_with={"fillfactor": 70},
    )
    op.create_table(
        "ledger_chain_heads",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("last_event_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_created_at", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_ledger_chain_heads")),
    )
    op.create_table(
        "ledger_pending_holds",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("timeout_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "transfer_id", name=op.f("pk_ledger_pending_holds")),
    )
    with op.batch_alter_table("ledger_pending_holds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_pending_holds_timeout_at"), ["timeout_at"], unique=False
        )

    op.create_table(
        "ledger_postings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("idx", sa.SmallInteger(), nullable=False),
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("side", sa.String(length=1), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("posted_amount", sa.BigInteger(), nullable=False),
        sa.Column("pending_amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("side IN ('D', 'C')", name=op.f("ck_ledger_postings_side")),
        sa.CheckConstraint(
            "posted_amount > 0 OR pending_amount <> 0",
            name=op.f("ck_ledger_postings_moves_something"),
        ),
        sa.CheckConstraint(
            "posted_amount >= 0", name=op.f("ck_ledger_postings_posted_amount_non_negative")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "seq", "idx", name=op.f("pk_ledger_postings")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_postings_tenant_id_account_id_created_at_seq"),
            ["tenant_id", "account_id", "created_at", "seq"],
            unique=False,
        )

    op.create_table(
        "ledger_transfers",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("pending_id", sa.Uuid(), nullable=True),
        sa.Column("reversal_of", sa.Uuid(), nullable=True),
        sa.Column("timeout_at", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("effective_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        # Digest: BYTEA on PostgreSQL, hex text on SQLite (see settle.store.types).
        sa.Column("fingerprint", Digest(), nullable=False),
        sa.Column("hash", Digest(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('transfer', 'pending', 'post_pending', 'void_pending', 'expire_pending', 'reversal')",
            name=op.f("ck_ledger_transfers_kind"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_ledger_transfers")),
        sa.UniqueConstraint("tenant_id", "seq", name=op.f("uq_ledger_transfers_tenant_id_seq")),
    )
    # Partial: most transfers resolve nothing and reverse nothing, and need no index entry.
    for column in ("pending_id", "reversal_of"):
        op.create_index(
            f"uq_ledger_transfers_tenant_id_{column}",
            "ledger_transfers",
            ["tenant_id", column],
            unique=True,
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
        )
    op.create_table(
        "outbox_events",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.Uuid(), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "seq", name=op.f("pk_outbox_events")),
        sqlite_with_rowid=False,
    )

    _create_ledger_triggers()


_PG_TRIGGERS = """
CREATE FUNCTION settle_reject_ledger_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are immutable: % on % rejected', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE FUNCTION settle_check_postings_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT tenant_id, seq, currency INTO bad FROM new_postings
    GROUP BY tenant_id, seq, currency
    HAVING sum(CASE WHEN side = 'D' THEN posted_amount ELSE -posted_amount END) <> 0
        OR sum(CASE WHEN side = 'D' THEN pending_amount ELSE -pending_amount END) <> 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unbalanced transfer % (seq %) in %', bad.tenant_id, bad.seq, bad.currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_transfers_immutable BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION settle_reject_ledger_mutation();
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION settle_reject_ledger_mutation();
CREATE TRIGGER ledger_postings_immutable BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION settle_reject_ledger_mutation();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION settle_reject_ledger_mutation();
CREATE TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION settle_check_postings_balanced();

-- A transfer row needs its postings (written first, in the same transaction): at least two.
CREATE FUNCTION settle_check_transfers_have_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT t.tenant_id, t.id INTO bad FROM new_transfers t
    WHERE (SELECT count(*) FROM ledger_postings p
           WHERE p.tenant_id = t.tenant_id AND p.seq = t.seq) < 2
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfer % has fewer than two postings', bad.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_transfers_have_postings AFTER INSERT ON ledger_transfers
    REFERENCING NEW TABLE AS new_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION settle_check_transfers_have_postings();
"""

# SQLite has no statement-level triggers: the balance check runs when the transfer row is
# inserted, after its postings (the engine writes postings first).
_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table}
    BEGIN SELECT RAISE(ABORT, 'ledger rows are immutable: {op_name} on {table} rejected'); END"""
    for table in ("ledger_transfers", "ledger_postings")
    for op_name in ("UPDATE", "DELETE")
] + [
    """CREATE TRIGGER ledger_transfers_balanced AFTER INSERT ON ledger_transfers
    WHEN (SELECT count(*) FROM ledger_postings p
          WHERE p.tenant_id = NEW.tenant_id AND p.seq = NEW.seq) < 2
      OR EXISTS (SELECT 1 FROM ledger_postings p
          WHERE p.tenant_id = NEW.tenant_id AND p.seq = NEW.seq
          GROUP BY p.currency
          HAVING sum(CASE WHEN p.side = 'D' THEN p.posted_amount ELSE -p.posted_amount END) <> 0
              OR sum(CASE WHEN p.side = 'D' THEN p.pending_amount ELSE -p.pending_amount END)
                 <> 0)
    BEGIN SELECT RAISE(ABORT, 'unbalanced transfer'); END"""
]


def _create_ledger_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_TRIGGERS)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION settle_reject_ledger_mutation() CASCADE")
        op.execute("DROP FUNCTION settle_check_postings_balanced() CASCADE")
        op.execute("DROP FUNCTION settle_check_transfers_have_postings() CASCADE")

    op.drop_table("outbox_events")
    op.drop_table("ledger_transfers")
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_postings_tenant_id_account_id_created_at_seq"))

    op.drop_table("ledger_postings")
    with op.batch_alter_table("ledger_pending_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_pending_holds_timeout_at"))

    op.drop_table("ledger_pending_holds")
    op.drop_table("ledger_chain_heads")
    op.drop_table("ledger_accounts")
