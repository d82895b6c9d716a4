"""Payment intents', refunds' and jobs' request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from settle.api.schemas import NO_NUL, Amount, CurrencyCode, Metadata, NonNegativeAmount, Text
from settle.api.schemas import _In as In
from settle.api.schemas import _Out as Out
from settle.jobs.model import JobStatus
from settle.payments.methods import TEST_CARDS
from settle.payments.model import AttemptOperation, AttemptStatus, CaptureMethod, IntentStatus

__all__ = [
    "JobPublic",
    "JobsPublic",
    "PaymentIntentCancel",
    "PaymentIntentCapture",
    "PaymentIntentConfirm",
    "PaymentIntentCreate",
    "PaymentIntentPublic",
    "PaymentIntentsPublic",
    "ProcessorNotificationPublic",
    "RefundCreate",
    "RefundPublic",
    "RefundsPublic",
]

PaymentMethod = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_]+$",
        description="A payment method token; with a test key also a test card's number. Test"
        f" tokens: {', '.join(TEST_CARDS)}.",
        examples=["pm_card_visa"],
    ),
]
Customer = Annotated[str, Field(min_length=1, max_length=255, pattern=NO_NUL)]


class PaymentIntentCreate(In):
    amount: Amount
    currency: CurrencyCode
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC
    customer: Customer | None = None
    payment_method: PaymentMethod | None = None
    confirm: bool = Field(False, description="Confirm at once (needs a payment_method)")
    description: Text = ""
    metadata: Metadata = Field(default_factory=dict)


class PaymentIntentConfirm(In):
    payment_method: PaymentMethod | None = None


class PaymentIntentCapture(In):
    amount_to_capture: Amount | None = Field(
        None, description="Capture part of the authorization; the rest is released."
    )


class PaymentIntentCancel(In):
    cancellation_reason: (
        Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None
    ) = None


class PaymentErrorPublic(Out):
    code: str
    message: str
    decline_code: str | None
    do_not_retry: bool


class PaymentAttemptPublic(Out):
    id: uuid.UUID
    object: Literal["payment_attempt"] = "payment_attempt"
    operation: AttemptOperation
    processor: str
    amount: int
    outcome: AttemptStatus
    processor_reference: str | None
    decline_code: str | None
    do_not_retry: bool
    latency_ms: float | None
    created_at: datetime
    completed_at: datetime | None


class PaymentIntentPublic(Out):
    id: uuid.UUID
    object: Literal["payment_intent"] = "payment_intent"
    sequence: int = Field(description="Grows by one with every change of the intent")
    amount: int
    currency: str
    status: IntentStatus
    capture_method: CaptureMethod
    amount_capturable: NonNegativeAmount
    amount_received: NonNegativeAmount
    amount_refunded: NonNegativeAmount = Field(
        description="Refunded, or being refunded (pending refunds hold their amount)"
    )
    fee: NonNegativeAmount
    customer: str | None
    payment_method: str | None
    card_last4: str | None
    processing_action: AttemptOperation | None
    processor: str | None
    processor_reference: str | None
    hold_transfer_id: uuid.UUID | None
    last_payment_error: PaymentErrorPublic | None
    cancellation_reason: str | None
    canceled_at: datetime | None
    description: str
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    attempts: list[PaymentAttemptPublic] | None = Field(
        None, description="Every processor call made for the intent (on single reads)"
    )


class PaymentIntentsPublic(Out):
    data: list[PaymentIntentPublic]
    has_more: bool


class RefundCreate(In):
    payment_intent: uuid.UUID
    amount: Amount | None = Field(None, description="Default: all that is left to refund")
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = Field(default_factory=dict)


class RefundPublic(Out):
    id: uuid.UUID
    object: Literal["refund"] = "refund"
    sequence: int
    payment_intent: uuid.UUID
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    reason: str | None
    processor: str | None
    processor_reference: str | None
    failure_code: str | None
    hold_transfer_id: uuid.UUID | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime


class RefundsPublic(Out):
    data: list[RefundPublic]
    has_more: bool


class JobPublic(Out):
    id: uuid.UUID
    object: Literal["job"] = "job"
    kind: str
    status: JobStatus
    attempts: int
    max_attempts: int
    run_at: datetime
    last_error: str | None
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class JobsPublic(Out):
    data: list[JobPublic]
    has_more: bool


class ProcessorNotificationPublic(Out):
    received: bool
    applied: bool = Field(description="Whether it settled something waiting for the processor")
