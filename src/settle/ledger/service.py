"""Ledger use cases other than moving money (which goes through the group-commit engine).

Each function is one use case and one transaction: ``with uow: ... uow.commit()``; events are
appended to the outbox inside the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from settle.ledger.errors import (
    AccountCodeTakenError,
    AccountExistsError,
    AccountNotEmptyError,
    AccountNotFoundError,
    InvalidAccountError,
    ParentAccountError,
)
from settle.ledger.model import (
    MAX_AMOUNT,
    Account,
    AccountStatus,
    AccountType,
    Balances,
    NewAccount,
    from_micros,
)
from settle.ledger.requests import ExpirePending
from settle.money import Currency

if TYPE_CHECKING:
    from settle.ledger.apply import TransferResult
    from settle.ledger.group_commit import GroupCommitEngine
    from settle.ledger.ports import LedgerUnitOfWork

__all__ = ["account_payload", "expire_pending", "open_account", "update_account"]

# Expiry transfers get a deterministic id, so a retried expiry run is idempotent.
_EXPIRY_NAMESPACE = uuid.UUID("6f1d2c1e-5b7a-4c3e-9a51-3f0e8f4b2d17")


def _validate_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise InvalidAccountError("metadata keys and values must be strings", param="metadata")
    return dict(metadata)


def account_payload(account: Account) -> dict[str, object]:
    """The account as an event payload (a snapshot: accounts change, events don't)."""
    return {
        "id": str(account.id),
        "code": account.code,
        "name": account.name,
        "type": account.type.value,
        "currency": account.currency,
        "parent_id": str(account.parent_id) if account.parent_id else None,
        "status": account.status.value,
        "metadata": dict(account.metadata),
    }


def _same_definition(existing: Account, cmd: NewAccount) -> bool:
    return (
        existing.code == cmd.code
        and existing.name == cmd.name
        and existing.type == cmd.type
        and existing.currency == cmd.currency
        and existing.parent_id == cmd.parent_id
        and existing.debits_must_not_exceed_credits == cmd.debits_must_not_exceed_credits
        and existing.credits_must_not_exceed_debits == cmd.credits_must_not_exceed_debits
        and existing.overdraft_limit == cmd.overdraft_limit
        and dict(existing.metadata) == dict(cmd.metadata)
    )


def open_account(uow: LedgerUnitOfWork, cmd: NewAccount) -> Account:
    """Open an account. With a client-supplied id, repeating the same request returns it.

    Raises:
        InvalidAccountError: the definition can never be valid.
        AccountExistsError: the id is taken by a different account.
        AccountCodeTakenError: another account of the tenant has this code.
        ParentAccountError: the parent is missing or holds another currency.
    """
    Currency.of(cmd.currency)
    AccountType(cmd.type)
    if not cmd.code or not cmd.name:
        raise InvalidAccountError("code and name are required", param="code")
    if cmd.debits_must_not_exceed_credits and cmd.credits_must_not_exceed_debits:
        raise InvalidAccountError(
            "an account can limit debits or credits, not both",
            param="credits_must_not_exceed_debits",
        )
    if cmd.overdraft_limit is not None:
        if type(cmd.overdraft_limit) is not int or not 0 <= cmd.overdraft_limit <= MAX_AMOUNT:
            raise InvalidAccountError(
                "overdraft_limit must be a non-negative integer", param="overdraft_limit"
            )
        if not (cmd.debits_must_not_exceed_credits or cmd.credits_must_not_exceed_debits):
            raise InvalidAccountError(
                "overdraft_limit needs a balance constraint flag", param="overdraft_limit"
            )
    metadata = _validate_metadata(cmd.metadata)
    with uow:
        uow.ledger.lock_tenant(cmd.tenant_id)
        if cmd.id is not None:
            existing = uow.ledger.get_account(cmd.tenant_id, cmd.id)
            if existing is not None:
                if _same_definition(existing, cmd):
                    return existing
                raise AccountExistsError(
                    f"account {cmd.id} exists with different fields", param="id"
                )
        if uow.ledger.get_account_by_code(cmd.tenant_id, cmd.code) is not None:
            raise AccountCodeTakenError(f"account code {cmd.code!r} is taken", param="code")
        if cmd.parent_id is not None:
            parent = uow.ledger.get_account(cmd.tenant_id, cmd.parent_id)
            if parent is None or parent.currency != cmd.currency:
                raise ParentAccountError(
                    "the parent must be an account of the same currency", param="parent_id"
                )
        account = Account(
            tenant_id=cmd.tenant_id,
            id=cmd.id or uuid.uuid4(),
            code=cmd.code,
            name=cmd.name,
            type=AccountType(cmd.type),
            currency=cmd.currency,
            parent_id=cmd.parent_id,
            debits_must_not_exceed_credits=cmd.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=cmd.credits_must_not_exceed_debits,
            overdraft_limit=cmd.overdraft_limit,
            status=AccountStatus.ACTIVE,
            metadata=metadata,
            created_at=from_micros(uow.now()),
            balances=Balances(),
        )
        uow.ledger.insert_account(account)
        uow.ledger.append_event(
            cmd.tenant_id, "account.created", account.id, account_payload(account)
        )
        uow.commit()
    return account


def update_account(
    uow: LedgerUnitOfWork,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    name: str | None = None,
    metadata: Mapping[str, str] | None = None,
    status: AccountStatus | None = None,
) -> Account:
    """Rename, re-tag, freeze, unfreeze or close an account.

    The account row is locked, so a status change serialises with ledger batches: once this
    commits, no batch can move money through a frozen account. Only an empty account (nothing
    posted, nothing held) can be closed.

    Raises:
        AccountNotFoundError: no such account for the tenant.
        InvalidStatusTransitionError: e.g. reopening a closed account.
        AccountNotEmptyError: closing an account that still holds or owes money.
    """
    with uow:
        # Lock order shared with the ledger engine: the tenant's chain head, then the account.
        uow.ledger.lock_tenant(tenant_id)
        account = uow.ledger.get_account(tenant_id, account_id, lock=True)
        if account is None:
            raise AccountNotFoundError(f"account {account_id} not found", param="id")
        new_status = account.status if status is None else AccountStatus(status)
        account.status.check_transition(new_status)
        if new_status is AccountStatus.CLOSED and account.status is not AccountStatus.CLOSED:
            b = account.balances
            if b.debits_posted != b.credits_posted or b.debits_pending or b.credits_pending:
                raise AccountNotEmptyError(
                    f"account {account_id} has a balance or holds", param="status"
                )
        new_name = account.name if name is None else name
        new_metadata = dict(account.metadata) if metadata is None else _validate_metadata(metadata)
        if not new_name:
            raise InvalidAccountError("name may not be empty", param="name")
        uow.ledger.update_account(account, name=new_name, metadata=new_metadata, status=new_status)
        updated = Account(
            **{
                **{f: getattr(account, f) for f in Account.__dataclass_fields__},
                "name": new_name,
                "metadata": new_metadata,
                "status": new_status,
            }
        )
        event = "account.updated"
        if new_status is not account.status:
            event = (
                f"account.{new_status.value}"
                if new_status is not AccountStatus.ACTIVE
                else "account.unfrozen"
            )
        uow.ledger.append_event(tenant_id, event, account_id, account_payload(updated))
        uow.commit()
    return updated


def expire_pending(
    uow: LedgerUnitOfWork, engine: GroupCommitEngine, now: int, *, limit: int = 8190
) -> list[TransferResult]:
    """Expire holds whose timeout is at or before ``now`` (microseconds since the epoch).

    Each expiry is an ``expire_pending`` transfer with an id derived from the pending id, so
    running this twice, or from several processes at once, expires each hold once.
    """
    with uow:
        expired = uow.ledger.expired_holds(now, limit)
    requests = [
        ExpirePending(tenant, uuid.uuid5(_EXPIRY_NAMESPACE, pending.hex), pending)
        for tenant, pending in expired
    ]
    return engine.submit(requests) if requests else []
