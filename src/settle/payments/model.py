"""Payment intents, their processor attempts and refunds: states, transitions and values.

Each state says what it means for the money (STYLE rule 6). An intent's ``version`` grows by
one with every change and is its events' ``sequence``, so consumers can order them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from settle.payments.errors import InvalidPaymentStateError

__all__ = [
    "ATTEMPT_KEY_PREFIX",
    "REFUND_KEY_PREFIX",
    "UNANSWERED",
    "AttemptOperation",
    "AttemptStatus",
    "CaptureMethod",
    "IntentStatus",
    "PaymentAttempt",
    "PaymentError",
    "PaymentIntent",
    "Refund",
    "RefundStatus",
    "check_intent_transition",
    "parse_processor_key",
]


ATTEMPT_KEY_PREFIX = "settle_att_"
REFUND_KEY_PREFIX = "settle_re_"


def parse_processor_key(key: str) -> tuple[str, uuid.UUID, uuid.UUID] | None:
    """(``"attempt"`` or ``"refund"``, tenant id, object id) of a key Settle sent, else None."""
    for kind, prefix in (("attempt", ATTEMPT_KEY_PREFIX), ("refund", REFUND_KEY_PREFIX)):
        if key.startswith(prefix):
            tenant, _, object_id = key.removeprefix(prefix).partition("_")
            try:
                return kind, uuid.UUID(hex=tenant), uuid.UUID(hex=object_id)
            except ValueError:
                return None
    return None


class IntentStatus(StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # nothing held; needs a card
    REQUIRES_CONFIRMATION = "requires_confirmation"  # nothing held; a card, not yet confirmed
    PROCESSING = "processing"  # a processor call is in flight; money moves when it answers
    REQUIRES_CAPTURE = "requires_capture"  # authorized: held as a pending ledger transfer
    SUCCEEDED = "succeeded"  # captured: posted to the merchant's balance, fee taken
    CANCELED = "canceled"  # nothing moved, or the hold was voided
    FAILED = "failed"  # the card may not be tried again, or no processor could take it


_S = IntentStatus
_TRANSITIONS: Mapping[IntentStatus, frozenset[IntentStatus]] = {
    _S.REQUIRES_PAYMENT_METHOD: frozenset({_S.REQUIRES_CONFIRMATION, _S.PROCESSING, _S.CANCELED}),
    _S.REQUIRES_CONFIRMATION: frozenset(
        {_S.REQUIRES_PAYMENT_METHOD, _S.REQUIRES_CONFIRMATION, _S.PROCESSING, _S.CANCELED}
    ),
    _S.PROCESSING: frozenset(
        {
            _S.REQUIRES_PAYMENT_METHOD,  # a soft decline: another card may be tried
            _S.REQUIRES_CAPTURE,
            _S.SUCCEEDED,
            _S.CANCELED,
            _S.FAILED,
        }
    ),
    _S.REQUIRES_CAPTURE: frozenset({_S.PROCESSING}),  # capture or cancel goes to the processor
    _S.SUCCEEDED: frozenset(),
    _S.CANCELED: frozenset(),
    _S.FAILED: frozenset(),
}


def check_intent_transition(source: IntentStatus, target: IntentStatus) -> None:
    if target not in _TRANSITIONS[source]:
        raise InvalidPaymentStateError(
            f"a payment intent cannot go from {source.value} to {target.value}", param="status"
        )


class CaptureMethod(StrEnum):
    AUTOMATIC = "automatic"  # the processor captures with the authorization
    MANUAL = "manual"  # authorized now, captured (in full or part) or canceled later


class AttemptOperation(StrEnum):
    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"


class AttemptStatus(StrEnum):
    PENDING = "pending"  # sent, or about to be; no answer recorded
    APPROVED = "approved"
    DECLINED = "declined"
    NOT_PROCESSED = "not_processed"  # certainly not done by the processor: may be tried again
    UNKNOWN = "unknown"  # may have been done: resolved by asking the processor, never resent


_A = AttemptStatus
# Attempts still waiting for the processor's answer: they are asked about, never resent.
UNANSWERED = frozenset({_A.PENDING, _A.UNKNOWN})
ATTEMPT_TRANSITIONS: Mapping[AttemptStatus, frozenset[AttemptStatus]] = {
    _A.PENDING: frozenset({_A.APPROVED, _A.DECLINED, _A.NOT_PROCESSED, _A.UNKNOWN}),
    _A.UNKNOWN: frozenset({_A.APPROVED, _A.DECLINED, _A.NOT_PROCESSED}),
    _A.APPROVED: frozenset(),
    _A.DECLINED: frozenset(),
    _A.NOT_PROCESSED: frozenset(),
}


class RefundStatus(StrEnum):
    PENDING = "pending"  # held out of the merchant's balance; the processor is asked
    SUCCEEDED = "succeeded"  # the hold posted: the money went back to the card
    FAILED = "failed"  # the processor refused: the hold is voided, the balance restored


REFUND_TRANSITIONS: Mapping[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class PaymentError:
    """Why the last attempt did not succeed."""

    code: str
    message: str
    decline_code: str | None = None
    do_not_retry: bool = False


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    tenant_id: uuid.UUID
    id: uuid.UUID
    amount: int
    currency: str
    status: IntentStatus
    capture_method: CaptureMethod
    customer: str | None
    payment_method: str | None
    description: str
    metadata: Mapping[str, str]
    created_at: datetime
    updated_at: datetime
    version: int = 1
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    fee: int = 0
    # What the processing state is doing (authorize, capture or void), and the capture asked.
    action: AttemptOperation | None = None
    capture_amount: int | None = None
    processor: str | None = None  # of the approved authorization
    authorization: str | None = None  # the processor's reference
    hold_transfer_id: uuid.UUID | None = None
    last_error: PaymentError | None = None
    cancellation_reason: str | None = None
    canceled_at: datetime | None = None

    def moved(self, status: IntentStatus, now: datetime, **changes: Any) -> PaymentIntent:
        """This intent in ``status`` (checked against the transition table), one version on."""
        if status is not self.status:
            check_intent_transition(self.status, status)
        return replace(self, status=status, updated_at=now, version=self.version + 1, **changes)


@dataclass(frozen=True, slots=True)
class PaymentAttempt:
    """One processor call made for an intent; its idempotency key is derived from its id."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    intent_id: uuid.UUID
    operation: AttemptOperation
    processor: str
    amount: int
    status: AttemptStatus
    created_at: datetime
    reference: str | None = None
    decline_code: str | None = None
    do_not_retry: bool = False
    latency_us: int | None = None
    completed_at: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        # The tenant is in the key so a processor's notification names the attempt fully.
        return f"{ATTEMPT_KEY_PREFIX}{self.tenant_id.hex}_{self.id.hex}"


@dataclass(frozen=True, slots=True)
class Refund:
    tenant_id: uuid.UUID
    id: uuid.UUID
    intent_id: uuid.UUID
    amount: int
    currency: str
    status: RefundStatus
    reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int = 1
    hold_transfer_id: uuid.UUID | None = None
    processor: str | None = None
    reference: str | None = None
    failure_code: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        return f"{REFUND_KEY_PREFIX}{self.tenant_id.hex}_{self.id.hex}"
