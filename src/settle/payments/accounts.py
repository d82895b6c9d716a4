"""The ledger accounts a merchant tenant's payments move money through, made on first use.

Per currency: the merchant's balance (a liability: what the platform owes the merchant), the
platform's fee revenue, and per processor a clearing account (an asset: what the processor
owes the platform until it settles). Ids are derived from the codes, so two transactions
creating the same account collide on its key instead of making two.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from settle.ledger.model import Account, AccountStatus, AccountType, Balances
from settle.ledger.service import account_payload

if TYPE_CHECKING:
    from settle.payments.ports import PaymentsUnitOfWork

__all__ = ["KnownAccounts", "PaymentAccounts", "ensure_payment_accounts"]

_NAMESPACE = uuid.UUID("a4f1e0d2-8c3b-4e5f-9a7d-1b2c3d4e5f60")


@dataclass(frozen=True, slots=True)
class PaymentAccounts:
    clearing: uuid.UUID
    merchant: uuid.UUID
    fees: uuid.UUID


class KnownAccounts:
    """Account ids found before, by (tenant, code): accounts are never deleted, so a process
    that has seen one need not read it again."""

    def __init__(self) -> None:
        self._ids: dict[tuple[uuid.UUID, str], uuid.UUID] = {}

    def get(self, tenant_id: uuid.UUID, code: str) -> uuid.UUID | None:
        return self._ids.get((tenant_id, code))

    def remember(self, tenant_id: uuid.UUID, code: str, account_id: uuid.UUID) -> None:
        self._ids[tenant_id, code] = account_id


def _ensure(
    uow: PaymentsUnitOfWork,
    tenant_id: uuid.UUID,
    code: str,
    name: str,
    kind: AccountType,
    currency: str,
    now: datetime,
    known: KnownAccounts | None,
) -> uuid.UUID:
    if known is not None and (seen := known.get(tenant_id, code)) is not None:
        return seen
    found = uow.ledger.get_account_by_code(tenant_id, code)
    if found is not None:
        if known is not None:
            known.remember(tenant_id, code, found.id)
        return found.id
    account = Account(
        tenant_id=tenant_id,
        id=uuid.uuid5(_NAMESPACE, f"{tenant_id.hex}:{code}"),
        code=code,
        name=name,
        type=kind,
        currency=currency,
        parent_id=None,
        debits_must_not_exceed_credits=False,
        credits_must_not_exceed_debits=False,
        overdraft_limit=None,
        status=AccountStatus.ACTIVE,
        metadata={"managed_by": "payments"},
        created_at=now,
        balances=Balances(),
    )
    uow.ledger.insert_account(account)
    uow.ledger.append_event(tenant_id, "account.created", account.id, account_payload(account))
    return account.id


def ensure_payment_accounts(
    uow: PaymentsUnitOfWork,
    tenant_id: uuid.UUID,
    currency: str,
    processor: str,
    now: datetime,
    known: KnownAccounts | None = None,
) -> PaymentAccounts:
    """The accounts for ``processor`` and ``currency``; the caller holds the tenant's lock.

    ``known`` learns ids only from reads of accounts that were there already, never from this
    transaction's own inserts, so a creation that is rolled back is never remembered (call it
    once per transaction).
    """
    return PaymentAccounts(
        clearing=_ensure(
            uow, tenant_id, f"payments:clearing:{processor}:{currency}",
            f"{processor} clearing ({currency})", AccountType.ASSET, currency, now, known,
        ),
        merchant=_ensure(
            uow, tenant_id, f"payments:merchant:{currency}",
            f"Merchant balance ({currency})", AccountType.LIABILITY, currency, now, known,
        ),
        fees=_ensure(
            uow, tenant_id, f"payments:fees:{currency}",
            f"Platform fees ({currency})", AccountType.REVENUE, currency, now, known,
        ),
    )  # fmt: skip
