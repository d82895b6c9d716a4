"""When the database refuses a batch, the writer isolates the culprit and answers everyone."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from settle.ledger.errors import ResultCode
from settle.ledger.model import AccountType, Balances, NewAccount
from settle.ledger.requests import TransferSpec
from settle.ledger.service import open_account
from settle.store.ledger_store import LedgerStore
from settle.store.ledger_verify import verify_ledger

POSTGRES_ONLY = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _open(store: LedgerStore, tenant: uuid.UUID, code: str, kind: AccountType) -> uuid.UUID:
    return open_account(store.uow(), NewAccount(tenant, code, code, kind, "USD")).id


@POSTGRES_ONLY
@pytest.mark.parametrize("pipeline", [True, False])
def test_a_transfer_the_database_refuses_fails_alone(
    db_url: str, tenant: uuid.UUID, pipeline: bool
) -> None:
    # PostgreSQL text cannot hold a NUL character: the batch holding this transfer fails in the
    # database on every attempt. The writer must commit the other caller's transfer, hand the
    # database's error to the culprit's caller, and leave the books whole.
    store = LedgerStore(db_url, pipeline=pipeline)
    try:
        bank = _open(store, tenant, "bank", AccountType.ASSET)
        wallet = _open(store, tenant, "wallet", AccountType.LIABILITY)

        def pay(description: str) -> TransferSpec:
            return TransferSpec.shorthand(
                tenant, uuid.uuid4(), debit_account_id=bank, credit_account_id=wallet,
                amount=100, currency="USD", description=description,
            )  # fmt: skip

        assert [r.code for r in store.submit([pay("opening")])] == [ResultCode.OK]
        first, good, poisoned = pay("first"), pay("rent"), pay("bad\x00byte")
        # Hold the tenant's ledger lock: the writer blocks on `first`, and meanwhile the two
        # other submissions queue up behind it and go into the next batch together.
        with store.db.connect() as blocker:
            blocker.execute(
                sa.text("SELECT 1 FROM ledger_chain_heads WHERE tenant_id = :t FOR UPDATE"),
                {"t": tenant},
            )
            first_future = store.writer.submit_future([first])
            threading.Event().wait(0.2)
            good_future = store.writer.submit_future([good])
            poisoned_future = store.writer.submit_future([poisoned])
            threading.Event().wait(0.2)
            blocker.rollback()

        assert [r.code for r in first_future.result(timeout=30)] == [ResultCode.OK]
        assert [r.code for r in good_future.result(timeout=30)] == [ResultCode.OK]
        with pytest.raises(psycopg.DataError, match="cannot be converted to text"):
            poisoned_future.result(timeout=30)
        with store.read() as repo:
            account = repo.get_account(tenant, wallet)
            assert account is not None
            assert account.balances == Balances(credits_posted=300)
            assert repo.get_transfer(tenant, poisoned.id) is None
        assert verify_ledger(store.db, tenant).problems == []
        # The writer keeps working after the failure.
        assert [r.code for r in store.submit([pay("again")])] == [ResultCode.OK]
    finally:
        store.close()
