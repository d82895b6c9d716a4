"""The ledger's errors and transfer result codes.

Account operations raise :class:`LedgerError` subclasses. Transfers never raise for a business
refusal: each gets a :class:`ResultCode` in its :class:`TransferResult`, so a batch can report
one outcome per transfer. Every code here has a heading in ``docs/errors.md``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from settle.errors import SettleError

__all__ = [
    "AccountCodeTakenError",
    "AccountExistsError",
    "AccountNotEmptyError",
    "AccountNotFoundError",
    "InvalidAccountError",
    "InvalidStatusTransitionError",
    "LedgerError",
    "ParentAccountError",
    "ResultCode",
    "TransferNotFoundError",
]


class LedgerError(SettleError):
    """Base of the ledger's errors."""

    code: ClassVar[str] = "ledger_error"


class AccountNotFoundError(LedgerError):
    """No account with that id exists for this tenant."""

    code: ClassVar[str] = "account_not_found"


class TransferNotFoundError(LedgerError):
    """No transfer with that id exists for this tenant."""

    code: ClassVar[str] = "transfer_not_found"


class AccountExistsError(LedgerError):
    """An account with the client's id exists with different fields: the id is not reusable."""

    code: ClassVar[str] = "account_exists_with_different_fields"


class AccountCodeTakenError(LedgerError):
    """Account codes are unique per tenant."""

    code: ClassVar[str] = "account_code_taken"


class InvalidAccountError(LedgerError):
    """An account definition that can never be valid (both balance flags, negative limit...)."""

    code: ClassVar[str] = "invalid_account"


class ParentAccountError(LedgerError):
    """A parent account must exist for the tenant and hold the same currency."""

    code: ClassVar[str] = "invalid_parent_account"


class InvalidStatusTransitionError(LedgerError):
    """Account statuses follow a transition table: a closed account stays closed."""

    code: ClassVar[str] = "invalid_status_transition"


class AccountNotEmptyError(LedgerError):
    """Only an account with nothing posted and nothing on hold can be closed."""

    code: ClassVar[str] = "account_not_empty"


class ResultCode(StrEnum):
    """The outcome of one transfer in a submission. Stable strings: clients match on them."""

    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_POSTINGS = "invalid_postings"
    INVALID_TIMEOUT = "invalid_timeout"
    UNBALANCED = "unbalanced"
    ACCOUNT_NOT_FOUND = "account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_CLOSED = "account_closed"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXCEEDS_DEBITS = "exceeds_debits"
    BALANCE_OVERFLOW = "balance_overflow"
    PENDING_NOT_FOUND = "pending_not_found"
    PENDING_ALREADY_POSTED = "pending_already_posted"
    PENDING_ALREADY_VOIDED = "pending_already_voided"
    PENDING_EXPIRED = "pending_expired"
    AMOUNT_EXCEEDS_PENDING = "amount_exceeds_pending"
    TRANSFER_NOT_FOUND = "transfer_not_found"
    NOT_REVERSIBLE = "not_reversible"
    ALREADY_REVERSED = "already_reversed"
    LINKED_TRANSFER_FAILED = "linked_transfer_failed"

    @property
    def succeeded(self) -> bool:
        """Whether the transfer is in the ledger after this result (new or already there)."""
        return self in (ResultCode.OK, ResultCode.EXISTS)
