"""Errors of authentication, authorisation and tenancy."""

from __future__ import annotations

from typing import ClassVar

from settle.errors import SettleError

__all__ = [
    "ApiKeyNotFoundError",
    "InsufficientScopeError",
    "InvalidApiKeyError",
    "InvalidScopeError",
    "InvalidTenantError",
    "SecurityError",
    "TenantNotFoundError",
]


class SecurityError(SettleError):
    """Base of the security context's errors."""

    code: ClassVar[str] = "security_error"


class InvalidApiKeyError(SecurityError):
    """A request must carry a live API key: missing, malformed, unknown and revoked keys are
    all refused the same way, so a caller learns nothing about which keys exist."""

    code: ClassVar[str] = "invalid_api_key"


class InsufficientScopeError(SecurityError):
    """The key is valid but lacks the scope the operation needs."""

    code: ClassVar[str] = "insufficient_scope"


class InvalidScopeError(SecurityError):
    """Scopes are a closed list: ``ledger:read``, ``ledger:write`` and ``admin``."""

    code: ClassVar[str] = "invalid_scope"


class InvalidTenantError(SecurityError):
    """A tenant needs a non-empty name of at most 200 characters."""

    code: ClassVar[str] = "invalid_tenant"


class TenantNotFoundError(SecurityError):
    """No tenant with that id exists."""

    code: ClassVar[str] = "tenant_not_found"


class ApiKeyNotFoundError(SecurityError):
    """No API key with that id exists (for that tenant)."""

    code: ClassVar[str] = "api_key_not_found"
