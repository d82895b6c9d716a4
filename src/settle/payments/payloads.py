"""Intents, attempts and refunds as JSON-ready dicts: the API's bodies and the events' payloads.

Events carry a snapshot (intents change, events don't) with ``sequence`` = the object's
version, so a consumer receiving them out of order can keep the newest.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from settle.payments.methods import last4

if TYPE_CHECKING:
    from settle.payments.model import PaymentAttempt, PaymentIntent, Refund

__all__ = ["attempt_payload", "intent_payload", "refund_payload", "rfc3339"]


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def intent_payload(i: PaymentIntent) -> dict[str, Any]:
    error = i.last_error
    return {
        "id": str(i.id),
        "object": "payment_intent",
        "sequence": i.version,
        "amount": i.amount,
        "currency": i.currency,
        "status": i.status.value,
        "capture_method": i.capture_method.value,
        "amount_capturable": i.amount_capturable,
        "amount_received": i.amount_received,
        "amount_refunded": i.amount_refunded,
        "fee": i.fee,
        "customer": i.customer,
        "payment_method": i.payment_method,
        "card_last4": None if i.payment_method is None else last4(i.payment_method),
        "processing_action": None if i.action is None else i.action.value,
        "processor": i.processor,
        "processor_reference": i.authorization,
        "hold_transfer_id": None if i.hold_transfer_id is None else str(i.hold_transfer_id),
        "last_payment_error": None
        if error is None
        else {
            "code": error.code,
            "message": error.message,
            "decline_code": error.decline_code,
            "do_not_retry": error.do_not_retry,
        },
        "cancellation_reason": i.cancellation_reason,
        "canceled_at": rfc3339(i.canceled_at),
        "description": i.description,
        "metadata": dict(i.metadata),
        "created_at": rfc3339(i.created_at),
        "updated_at": rfc3339(i.updated_at),
    }


def attempt_payload(a: PaymentAttempt) -> dict[str, Any]:
    return {
        "id": str(a.id),
        "object": "payment_attempt",
        "operation": a.operation.value,
        "processor": a.processor,
        "amount": a.amount,
        "outcome": a.status.value,
        "processor_reference": a.reference,
        "decline_code": a.decline_code,
        "do_not_retry": a.do_not_retry,
        "latency_ms": None if a.latency_us is None else round(a.latency_us / 1000, 3),
        "created_at": rfc3339(a.created_at),
        "completed_at": rfc3339(a.completed_at),
    }


def refund_payload(f: Refund) -> dict[str, Any]:
    return {
        "id": str(f.id),
        "object": "refund",
        "sequence": f.version,
        "payment_intent": str(f.intent_id),
        "amount": f.amount,
        "currency": f.currency,
        "status": f.status.value,
        "reason": f.reason,
        "processor": f.processor,
        "processor_reference": f.reference,
        "failure_code": f.failure_code,
        "hold_transfer_id": None if f.hold_transfer_id is None else str(f.hold_transfer_id),
        "metadata": dict(f.metadata),
        "created_at": rfc3339(f.created_at),
        "updated_at": rfc3339(f.updated_at),
    }
