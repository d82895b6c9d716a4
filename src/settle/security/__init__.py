"""Security: tenants, API keys with scopes, and authenticating a request."""

from settle.security.errors import (
    ApiKeyNotFoundError,
    InsufficientScopeError,
    InvalidApiKeyError,
    InvalidScopeError,
    InvalidTenantError,
    SecurityError,
    TenantNotFoundError,
)
from settle.security.keys import KeyMode, SecretKey, generate_secret_key, hash_secret_key
from settle.security.model import ApiKey, Principal, Scope, Tenant, parse_scopes
from settle.security.service import (
    ApiKeyAuthenticator,
    create_tenant,
    issue_api_key,
    revoke_api_key,
)

__all__ = [
    "ApiKey",
    "ApiKeyAuthenticator",
    "ApiKeyNotFoundError",
    "InsufficientScopeError",
    "InvalidApiKeyError",
    "InvalidScopeError",
    "InvalidTenantError",
    "KeyMode",
    "Principal",
    "Scope",
    "SecretKey",
    "SecurityError",
    "Tenant",
    "TenantNotFoundError",
    "create_tenant",
    "generate_secret_key",
    "hash_secret_key",
    "issue_api_key",
    "parse_scopes",
    "revoke_api_key",
]
