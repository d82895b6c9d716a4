"""The payments context's errors; every code has a heading in ``docs/errors.md``."""

from __future__ import annotations

from typing import ClassVar

from settle.errors import SettleError

__all__ = [
    "AmountExceedsCapturableError",
    "InvalidPaymentError",
    "InvalidPaymentMethodError",
    "InvalidPaymentStateError",
    "PaymentIntentNotFoundError",
    "PaymentLedgerRefusedError",
    "PaymentsError",
    "RefundExceedsCapturedError",
    "RefundNotFoundError",
]


class PaymentsError(SettleError):
    """Base of the payments context's errors."""

    code: ClassVar[str] = "payments_error"


class InvalidPaymentError(PaymentsError):
    """A payment request that can never be valid (a zero amount, an unknown capture method)."""

    code: ClassVar[str] = "invalid_payment"


class InvalidPaymentMethodError(PaymentsError):
    """The payment method is not a token Settle issued, nor a documented test card (raw card
    numbers other than the test cards never enter Settle: they belong in the card vault)."""

    code: ClassVar[str] = "invalid_payment_method"


class PaymentIntentNotFoundError(PaymentsError):
    """No payment intent with that id exists for this tenant."""

    code: ClassVar[str] = "payment_intent_not_found"


class RefundNotFoundError(PaymentsError):
    """No refund with that id exists for this tenant."""

    code: ClassVar[str] = "refund_not_found"


class InvalidPaymentStateError(PaymentsError):
    """The intent's state does not allow this (capturing a canceled intent, confirming twice,
    refunding an uncaptured payment); the transition table decides."""

    code: ClassVar[str] = "payment_intent_unexpected_state"


class AmountExceedsCapturableError(PaymentsError):
    """A capture asks for more than the authorization holds."""

    code: ClassVar[str] = "amount_exceeds_capturable"


class RefundExceedsCapturedError(PaymentsError):
    """Refunds of a payment never total more than was captured, however many run at once."""

    code: ClassVar[str] = "refund_exceeds_captured"


class PaymentLedgerRefusedError(PaymentsError):
    """The ledger refused a payment's transfer (a frozen or closed merchant account): the
    payment's state change is rolled back with it, so state and money never disagree."""

    code: ClassVar[str] = "payment_ledger_refused"

    def __init__(self, detail: str, *, ledger_code: str, param: str | None = None) -> None:
        super().__init__(detail, param=param)
        self.ledger_code = ledger_code
