"""What the ledger needs from storage, as protocols: the store implements them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from settle.ports import UnitOfWork

if TYPE_CHECKING:
    from settle.ledger.apply import TransferResult
    from settle.ledger.model import Account, AccountStatus, Transfer
    from settle.ledger.requests import TransferRequest

__all__ = ["LedgerRepository", "LedgerUnitOfWork"]


class LedgerRepository(Protocol):
    """Reads and account writes inside one unit of work (one transaction)."""

    def lock_tenant(self, tenant_id: uuid.UUID) -> None:
        """Take the tenant's ledger lock (its chain head). Every writer takes it first, then
        account rows in id order: one lock order for all, so no deadlock."""
        ...

    def apply_transfers(
        self, requests: Sequence[TransferRequest], *, atomic: bool = True
    ) -> list[TransferResult]:
        """Move money inside this unit of work's transaction (it commits with the caller's
        other writes); one result per request, refusals as result codes."""
        ...

    def get_account(
        self, tenant_id: uuid.UUID, account_id: uuid.UUID, *, lock: bool = False
    ) -> Account | None: ...

    def get_account_by_code(self, tenant_id: uuid.UUID, code: str) -> Account | None: ...

    def insert_account(self, account: Account) -> None: ...

    def update_account(
        self,
        account: Account,
        *,
        name: str,
        metadata: Mapping[str, str],
        status: AccountStatus,
    ) -> None: ...

    def append_event(
        self, tenant_id: uuid.UUID, type: str, object_id: uuid.UUID, payload: Mapping[str, object]
    ) -> None:
        """Add an event to the tenant's outbox, numbered in its sequence when it commits."""
        ...

    def get_transfer(self, tenant_id: uuid.UUID, transfer_id: uuid.UUID) -> Transfer | None: ...

    def expired_holds(self, now: int, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(tenant_id, pending transfer id) of open holds whose timeout is at or before now."""
        ...


class LedgerUnitOfWork(UnitOfWork, Protocol):
    @property
    def ledger(self) -> LedgerRepository: ...
