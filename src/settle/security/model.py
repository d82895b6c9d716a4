"""Tenants, API keys and the scopes that say what a key may do."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from settle.security.errors import InsufficientScopeError, InvalidScopeError

if TYPE_CHECKING:
    from settle.security.keys import KeyMode

__all__ = ["ApiKey", "Principal", "Scope", "Tenant", "parse_scopes"]


class Scope(StrEnum):
    """What a key may do. ``admin`` implies every other scope."""

    LEDGER_READ = "ledger:read"  # read accounts, balances, statements, transfers and events
    LEDGER_WRITE = "ledger:write"  # open and change accounts, move money
    PAYMENTS_READ = "payments:read"  # read payment intents, refunds and their attempts
    PAYMENTS_WRITE = "payments:write"  # create, confirm, capture and cancel payments; refund
    WEBHOOKS_MANAGE = "webhooks:manage"  # manage webhook endpoints, read and retry deliveries
    ADMIN = "admin"  # everything, including managing the tenant's keys


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scopes from their names; at least one, each one of :class:`Scope`."""
    names = [v.strip() for v in values if v.strip()]
    if not names:
        raise InvalidScopeError("a key needs at least one scope", param="scopes")
    try:
        return frozenset(Scope(n) for n in names)
    except ValueError:
        known = ", ".join(s.value for s in Scope)
        raise InvalidScopeError(f"scopes are: {known}", param="scopes") from None


@dataclass(frozen=True, slots=True)
class Tenant:
    """An isolated set of books: every row in Settle belongs to exactly one tenant."""

    id: uuid.UUID
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: its visible prefix and hash, never the key itself."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    prefix: str
    digest: bytes
    mode: KeyMode
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and what the presented key allows."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[Scope]
    mode: KeyMode

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def require(self, scope: Scope) -> None:
        """Raise unless the key holds ``scope`` (or ``admin``)."""
        if not self.allows(scope):
            raise InsufficientScopeError(f"this operation needs the {scope.value} scope")
