"""What the security context needs from storage."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from settle.ports import UnitOfWork

if TYPE_CHECKING:
    from settle.security.model import ApiKey, Tenant

__all__ = ["SecurityRepository", "SecurityUnitOfWork"]


class SecurityRepository(Protocol):
    def insert_tenant(self, tenant: Tenant) -> None: ...

    def get_tenant(self, tenant_id: uuid.UUID) -> Tenant | None: ...

    def insert_api_key(self, key: ApiKey) -> None: ...

    def get_api_key(self, key_id: uuid.UUID) -> ApiKey | None: ...

    def find_api_key(self, digest: bytes) -> ApiKey | None: ...

    def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]: ...

    def revoke_api_key(self, key_id: uuid.UUID, at: int) -> None: ...

    def touch_api_keys(self, used: Sequence[tuple[uuid.UUID, int]]) -> None:
        """Record when each key was last used (never moving a time backwards)."""
        ...


class SecurityUnitOfWork(UnitOfWork, Protocol):
    @property
    def security(self) -> SecurityRepository: ...
