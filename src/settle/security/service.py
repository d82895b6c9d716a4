"""Security use cases: tenants, issuing and revoking keys, and authenticating a request.

Each write is one transaction (``with uow: ... uow.commit()``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from settle.clock import from_micros
from settle.security.errors import (
    ApiKeyNotFoundError,
    InvalidApiKeyError,
    InvalidTenantError,
    TenantNotFoundError,
)
from settle.security.keys import (
    KEY_PATTERN,
    KeyMode,
    SecretKey,
    generate_secret_key,
    hash_secret_key,
)
from settle.security.model import ApiKey, Principal, Tenant, parse_scopes

if TYPE_CHECKING:
    from settle.clock import Clock
    from settle.security.ports import SecurityUnitOfWork

__all__ = [
    "ApiKeyAuthenticator",
    "create_tenant",
    "issue_api_key",
    "revoke_api_key",
]

_MAX_TENANT_NAME = 200


def create_tenant(
    uow: SecurityUnitOfWork, name: str, *, tenant_id: uuid.UUID | None = None
) -> Tenant:
    """Create a tenant. With a client-chosen id, repeating the same request returns it.

    Raises:
        InvalidTenantError: an empty or over-long name, or the id taken by another name.
    """
    name = name.strip()
    if not name or len(name) > _MAX_TENANT_NAME:
        raise InvalidTenantError(
            f"a tenant name has 1 to {_MAX_TENANT_NAME} characters", param="name"
        )
    with uow:
        if tenant_id is not None:
            existing = uow.security.get_tenant(tenant_id)
            if existing is not None:
                if existing.name != name:
                    raise InvalidTenantError(
                        f"tenant {tenant_id} exists with another name", param="id"
                    )
                return existing
        tenant = Tenant(tenant_id or uuid.uuid4(), name, from_micros(uow.now()))
        uow.security.insert_tenant(tenant)
        uow.commit()
    return tenant


def issue_api_key(
    uow: SecurityUnitOfWork,
    tenant_id: uuid.UUID,
    scopes: Iterable[str],
    *,
    mode: KeyMode = KeyMode.TEST,
) -> tuple[ApiKey, SecretKey]:
    """Issue a key for a tenant. The secret is returned once and never stored.

    Raises:
        TenantNotFoundError: no such tenant.
        InvalidScopeError: no scope, or one that does not exist.
    """
    granted = parse_scopes(scopes)
    secret = generate_secret_key(mode)
    with uow:
        if uow.security.get_tenant(tenant_id) is None:
            raise TenantNotFoundError(f"tenant {tenant_id} not found", param="tenant_id")
        key = ApiKey(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            prefix=secret.prefix,
            digest=secret.digest(),
            mode=KeyMode(mode),
            scopes=granted,
            created_at=from_micros(uow.now()),
        )
        uow.security.insert_api_key(key)
        uow.commit()
    return key, secret


def revoke_api_key(
    uow: SecurityUnitOfWork, key_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None
) -> ApiKey:
    """Revoke a key for good; revoking it again changes nothing.

    Raises:
        ApiKeyNotFoundError: no such key (for that tenant, when one is given).
    """
    with uow:
        key = uow.security.get_api_key(key_id)
        if key is None or (tenant_id is not None and key.tenant_id != tenant_id):
            raise ApiKeyNotFoundError(f"API key {key_id} not found", param="key_id")
        if key.revoked_at is None:
            uow.security.revoke_api_key(key_id, uow.now())
            uow.commit()
            key = uow.security.get_api_key(key_id) or key
    return key


class ApiKeyAuthenticator:
    """Turns a presented key into a :class:`Principal`, without a database read per request.

    Lookups are cached by the key's digest for ``ttl`` microseconds (a revoked key stops working
    within that time, in every process); unknown keys are cached too, briefly, so a flood of bad
    keys does not become a flood of queries. Uses are collected and flushed in one statement by
    :meth:`drain_uses`, at most once per key per ``touch_every``.
    """

    def __init__(
        self,
        lookup: Callable[[bytes], ApiKey | None],
        clock: Clock,
        *,
        ttl: int = 5_000_000,
        touch_every: int = 60_000_000,
        max_entries: int = 100_000,
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._ttl = ttl
        self._touch_every = touch_every
        self._max_entries = max_entries
        self._cache: dict[bytes, tuple[int, ApiKey | None]] = {}
        self._touched: dict[uuid.UUID, int] = {}
        self._uses: dict[uuid.UUID, int] = {}
        self._lock = threading.Lock()

    def authenticate(self, presented: str | None) -> Principal:
        """The caller behind ``presented`` (the bearer token), looked up if not cached.

        Raises:
            InvalidApiKeyError: missing, malformed, unknown or revoked.
        """
        found = self.cached_principal(presented)
        if found is not None:
            return found
        digest = self._digest(presented)
        now = self._clock()
        key = self._lookup(digest)
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, key)
        return self._principal(key, now)

    def cached_principal(self, presented: str | None) -> Principal | None:
        """The caller from the cache alone (no I/O); None when a lookup is needed.

        Raises:
            InvalidApiKeyError: malformed, or cached as unknown or revoked.
        """
        cached = self._cache.get(self._digest(presented))
        now = self._clock()
        if cached is None or cached[0] <= now:
            return None
        return self._principal(cached[1], now)

    def is_cached(self, presented: str | None) -> bool:
        """Whether :meth:`authenticate` can answer without a lookup (no I/O)."""
        if not presented or not KEY_PATTERN.match(presented):
            return True
        cached = self._cache.get(hash_secret_key(presented))
        return cached is not None and cached[0] > self._clock()

    @staticmethod
    def _digest(presented: str | None) -> bytes:
        if not presented or not KEY_PATTERN.match(presented):
            raise InvalidApiKeyError("a valid API key is required: Authorization: Bearer sk_…")
        return hash_secret_key(presented)

    def _principal(self, key: ApiKey | None, now: int) -> Principal:
        if key is None or key.revoked_at is not None:
            raise InvalidApiKeyError("a valid API key is required: Authorization: Bearer sk_…")
        if now - self._touched.get(key.id, 0) >= self._touch_every:
            with self._lock:
                self._touched[key.id] = now
                self._uses[key.id] = now
        return Principal(key.tenant_id, key.id, key.scopes, key.mode)

    def forget(self) -> None:
        """Drop every cached lookup (after a revocation in this process)."""
        self._cache.clear()

    def drain_uses(self) -> list[tuple[uuid.UUID, int]]:
        """The (key id, time) uses not yet recorded; the caller writes them."""
        with self._lock:
            uses, self._uses = list(self._uses.items()), {}
        return uses
