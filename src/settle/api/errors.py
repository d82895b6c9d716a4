"""Errors that only the HTTP layer raises (the domain's own errors live in its packages)."""

from __future__ import annotations

from typing import ClassVar

from settle.errors import SettleError

__all__ = [
    "ApiError",
    "IdempotencyKeyInFlightError",
    "IdempotencyKeyReusedError",
    "InternalServerError",
    "InvalidIdempotencyKeyError",
    "InvalidSignatureError",
    "MalformedJsonError",
    "MethodNotAllowedError",
    "PayloadTooLargeError",
    "RouteNotFoundError",
    "ServiceUnavailableError",
    "UnsupportedMediaTypeError",
]


class ApiError(SettleError):
    """Base of the HTTP layer's errors."""

    code: ClassVar[str] = "api_error"


class MalformedJsonError(ApiError):
    """The request body is not a JSON document (or not UTF-8)."""

    code: ClassVar[str] = "malformed_json"


class UnsupportedMediaTypeError(ApiError):
    """Request bodies are ``application/json``."""

    code: ClassVar[str] = "unsupported_media_type"


class PayloadTooLargeError(ApiError):
    """The body exceeds the server's limit (see ``SETTLE_MAX_BODY_BYTES``)."""

    code: ClassVar[str] = "payload_too_large"


class RouteNotFoundError(ApiError):
    """No route has this path."""

    code: ClassVar[str] = "route_not_found"


class MethodNotAllowedError(ApiError):
    """The route exists but not with this HTTP method."""

    code: ClassVar[str] = "method_not_allowed"


class InvalidIdempotencyKeyError(ApiError):
    """An ``Idempotency-Key`` is 1 to 255 printable ASCII characters, bare or quoted."""

    code: ClassVar[str] = "invalid_idempotency_key"


class IdempotencyKeyReusedError(ApiError):
    """The key was used before with a different request (method, path or body)."""

    code: ClassVar[str] = "idempotency_key_reused"


class IdempotencyKeyInFlightError(ApiError):
    """A request with this key is still being processed: retry after it finishes."""

    code: ClassVar[str] = "idempotency_key_in_flight"


class ServiceUnavailableError(ApiError):
    """The server cannot take the request now (shutting down, database unreachable)."""

    code: ClassVar[str] = "service_unavailable"


class InternalServerError(ApiError):
    """An unexpected failure. Nothing was half-written; retrying with the same key is safe."""

    code: ClassVar[str] = "internal_error"


class InvalidSignatureError(ApiError):
    """A processor's notification must carry a valid signature made with the secret
    configured for that processor, within five minutes of its timestamp."""

    code: ClassVar[str] = "invalid_signature"
