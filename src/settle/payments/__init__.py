"""Payments: intents authorized and captured through card processors, and refunds; money
moves only through the ledger, in the transaction that records the processor's answer."""

from settle.payments.errors import (
    AmountExceedsCapturableError,
    InvalidPaymentError,
    InvalidPaymentMethodError,
    InvalidPaymentStateError,
    PaymentIntentNotFoundError,
    PaymentLedgerRefusedError,
    PaymentsError,
    RefundExceedsCapturedError,
    RefundNotFoundError,
)
from settle.payments.fees import FeeSchedule
from settle.payments.model import (
    AttemptOperation,
    AttemptStatus,
    CaptureMethod,
    IntentStatus,
    PaymentAttempt,
    PaymentIntent,
    Refund,
    RefundStatus,
)

__all__ = [
    "AmountExceedsCapturableError",
    "AttemptOperation",
    "AttemptStatus",
    "CaptureMethod",
    "FeeSchedule",
    "IntentStatus",
    "InvalidPaymentError",
    "InvalidPaymentMethodError",
    "InvalidPaymentStateError",
    "PaymentAttempt",
    "PaymentIntent",
    "PaymentIntentNotFoundError",
    "PaymentLedgerRefusedError",
    "PaymentsError",
    "Refund",
    "RefundExceedsCapturedError",
    "RefundNotFoundError",
    "RefundStatus",
]
