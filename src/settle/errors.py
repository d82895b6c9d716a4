"""The root of Settle's exception tree.

Every domain error carries a stable ``code`` (documented in ``docs/errors.md``) so that clients,
the API layer and tests can rely on it. Each bounded context subclasses :class:`SettleError`.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["SettleError", "ValidationError"]


class SettleError(Exception):
    """Base of every error Settle raises on purpose."""

    code: ClassVar[str] = "settle_error"

    def __init__(self, detail: str, *, param: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.param = param


class ValidationError(SettleError):
    """Input that can never be valid, whatever the state of the system."""

    code: ClassVar[str] = "invalid_request"
