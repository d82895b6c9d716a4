"""Shared pieces of the store tests' stories: a clock the test moves, accounts and payments."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from settle.ledger.model import AccountType, NewAccount
from settle.ledger.requests import TransferSpec
from settle.ledger.service import open_account

if TYPE_CHECKING:
    from settle.store.ledger_store import LedgerStore

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds


class FakeClock:
    """Microseconds since the epoch, moved only by the test."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def open_usd(
    store: LedgerStore, tenant: uuid.UUID, code: str, kind: AccountType, **fields: Any
) -> uuid.UUID:
    """Open a USD account named after its code."""
    return open_account(
        store.uow(), NewAccount(tenant, code, code.title(), kind, "USD", **fields)
    ).id


def pay(
    tenant: uuid.UUID, debit: uuid.UUID, credit: uuid.UUID, amount: int, **kw: Any
) -> TransferSpec:
    """A two-line USD transfer with a fresh id."""
    return TransferSpec.shorthand(
        tenant, uuid.uuid4(), debit_account_id=debit, credit_account_id=credit,
        amount=amount, currency="USD", **kw,
    )  # fmt: skip
