"""Payment use cases called by the API: create, confirm, capture and cancel intents; refund.

Each is one transaction (``with uow: ... uow.commit()``). None calls a processor: each leaves
a job for the worker in the same transaction (the outbox), and the worker's answer moves the
money (``settle.payments.processing``). Every intent and refund lock is taken before the
tenant's ledger lock, here and in the worker, so the two never wait on each other in a cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from settle.clock import from_micros
from settle.jobs.model import NewJob
from settle.ledger.model import MAX_AMOUNT
from settle.money import Currency
from settle.payments.errors import (
    AmountExceedsCapturableError,
    InvalidPaymentError,
    InvalidPaymentStateError,
    PaymentIntentNotFoundError,
)
from settle.payments.methods import payment_method_token
from settle.payments.model import (
    AttemptOperation,
    CaptureMethod,
    IntentStatus,
    PaymentIntent,
    Refund,
)
from settle.payments.payloads import intent_payload, refund_payload

if TYPE_CHECKING:
    from settle.payments.ports import PaymentsUnitOfWork

__all__ = [
    "JOB_AUTHORIZE",
    "JOB_CAPTURE",
    "JOB_REFUND",
    "JOB_VOID",
    "REFUND_REASONS",
    "NewPaymentIntent",
    "amount_of",
    "cancel_payment_intent",
    "capture_payment_intent",
    "confirm_payment_intent",
    "create_payment_intent",
    "intent_event",
    "locked_intent",
    "metadata_of",
    "refund_event",
]

JOB_AUTHORIZE = "payments.authorize"
JOB_CAPTURE = "payments.capture"
JOB_VOID = "payments.void"
JOB_REFUND = "payments.refund"
_CANCEL_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer", "abandoned"})
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


@dataclass(frozen=True, slots=True)
class NewPaymentIntent:
    tenant_id: uuid.UUID
    amount: int
    currency: str
    capture_method: str = CaptureMethod.AUTOMATIC.value
    customer: str | None = None
    payment_method: str | None = None
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    confirm: bool = False
    live: bool = False


def amount_of(value: object, param: str = "amount") -> int:
    if type(value) is not int or not 0 < value <= MAX_AMOUNT:
        raise InvalidPaymentError(f"{param} must be a positive integer of minor units", param=param)
    return value


def metadata_of(metadata: Mapping[str, str]) -> dict[str, str]:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise InvalidPaymentError("metadata keys and values must be strings", param="metadata")
    return dict(metadata)


def intent_event(uow: PaymentsUnitOfWork, intent: PaymentIntent, event: str) -> None:
    """Append ``payment_intent.<event>`` with the intent's snapshot (appending takes the
    tenant's lock)."""
    uow.ledger.append_event(
        intent.tenant_id, f"payment_intent.{event}", intent.id, intent_payload(intent)
    )


def refund_event(uow: PaymentsUnitOfWork, refund: Refund, event: str) -> None:
    uow.ledger.append_event(refund.tenant_id, f"refund.{event}", refund.id, refund_payload(refund))


def locked_intent(
    uow: PaymentsUnitOfWork, tenant_id: uuid.UUID, intent_id: uuid.UUID
) -> PaymentIntent:
    intent = uow.payments.get_intent(tenant_id, intent_id, lock=True)
    if intent is None:
        raise PaymentIntentNotFoundError(f"payment intent {intent_id} not found", param="id")
    return intent


def _enqueue(uow: PaymentsUnitOfWork, kind: str, intent: PaymentIntent, **extra: str) -> None:
    # One job per state entered: the version names it, so a replayed request makes none.
    uow.jobs.enqueue(
        NewJob(
            tenant_id=intent.tenant_id,
            kind=kind,
            payload={"intent_id": str(intent.id), **extra},
            run_at=uow.now(),
            dedupe_key=f"{kind}:{intent.tenant_id.hex}:{intent.id.hex}:{intent.version}",
            max_attempts=12,
        ),
        now=uow.now(),
    )


def _start_authorization(
    uow: PaymentsUnitOfWork, intent: PaymentIntent, payment_method: str | None
) -> PaymentIntent:
    method = payment_method or intent.payment_method
    if method is None:
        raise InvalidPaymentStateError(
            "a payment method is needed to confirm", param="payment_method"
        )
    confirmed = intent.moved(
        IntentStatus.PROCESSING,
        from_micros(uow.now()),
        payment_method=method,
        action=AttemptOperation.AUTHORIZE,
        last_error=None,
    )
    uow.payments.update_intent(confirmed)
    intent_event(uow, confirmed, "processing")
    _enqueue(uow, JOB_AUTHORIZE, confirmed)
    return confirmed


def create_payment_intent(uow: PaymentsUnitOfWork, cmd: NewPaymentIntent) -> PaymentIntent:
    """Create an intent; with ``confirm`` it is confirmed at once (the processor is asked
    after the commit, by the worker).

    Raises:
        InvalidPaymentError: a bad amount, capture method, customer or metadata.
        InvalidPaymentMethodError: not a test token or test card (or one with a live key).
    """
    amount = amount_of(cmd.amount)
    currency = Currency.of(cmd.currency).code
    try:
        capture_method = CaptureMethod(cmd.capture_method)
    except ValueError:
        raise InvalidPaymentError(
            "capture_method is automatic or manual", param="capture_method"
        ) from None
    if cmd.customer is not None and not 1 <= len(cmd.customer) <= 255:
        raise InvalidPaymentError("customer is 1 to 255 characters", param="customer")
    method = (
        None
        if cmd.payment_method is None
        else payment_method_token(cmd.payment_method, live=cmd.live)
    )
    if cmd.confirm and method is None:
        raise InvalidPaymentError("confirm needs a payment_method", param="payment_method")
    metadata = metadata_of(cmd.metadata)
    with uow:
        now = from_micros(uow.now())
        intent = PaymentIntent(
            tenant_id=cmd.tenant_id,
            id=uuid.uuid4(),
            amount=amount,
            currency=currency,
            status=IntentStatus.REQUIRES_PAYMENT_METHOD
            if method is None
            else IntentStatus.REQUIRES_CONFIRMATION,
            capture_method=capture_method,
            customer=cmd.customer,
            payment_method=method,
            description=cmd.description,
            metadata=metadata,
            created_at=now,
            updated_at=now,
        )
        if cmd.confirm:
            # Created and confirmed in one write: the row goes in already processing, and
            # both events are told, each with its own snapshot.
            confirmed = intent.moved(
                IntentStatus.PROCESSING, now, action=AttemptOperation.AUTHORIZE
            )
            uow.payments.insert_intent(confirmed)
            intent_event(uow, intent, "created")
            intent_event(uow, confirmed, "processing")
            _enqueue(uow, JOB_AUTHORIZE, confirmed)
            intent = confirmed
        else:
            uow.payments.insert_intent(intent)
            intent_event(uow, intent, "created")
        uow.commit()
    return intent


def confirm_payment_intent(
    uow: PaymentsUnitOfWork,
    tenant_id: uuid.UUID,
    intent_id: uuid.UUID,
    *,
    payment_method: str | None = None,
    live: bool = False,
) -> PaymentIntent:
    """Confirm: the intent goes to ``processing`` and the worker asks a processor.

    Raises:
        PaymentIntentNotFoundError: no such intent for the tenant.
        InvalidPaymentStateError: it is not awaiting confirmation (or has no payment method).
    """
    method = None if payment_method is None else payment_method_token(payment_method, live=live)
    with uow:
        intent = locked_intent(uow, tenant_id, intent_id)
        if intent.status not in (
            IntentStatus.REQUIRES_PAYMENT_METHOD,
            IntentStatus.REQUIRES_CONFIRMATION,
        ):
            raise InvalidPaymentStateError(
                f"a {intent.status.value} payment intent cannot be confirmed", param="id"
            )
        intent = _start_authorization(uow, intent, method)
        uow.commit()
    return intent


def capture_payment_intent(
    uow: PaymentsUnitOfWork,
    tenant_id: uuid.UUID,
    intent_id: uuid.UUID,
    *,
    amount: int | None = None,
) -> PaymentIntent:
    """Capture an authorized intent, in full or in part (the rest of the hold is released
    when the processor confirms the capture).

    Raises:
        PaymentIntentNotFoundError, InvalidPaymentStateError (not ``requires_capture``),
        AmountExceedsCapturableError.
    """
    with uow:
        intent = locked_intent(uow, tenant_id, intent_id)
        if intent.status is not IntentStatus.REQUIRES_CAPTURE:
            raise InvalidPaymentStateError(
                f"a {intent.status.value} payment intent cannot be captured", param="id"
            )
        to_capture = intent.amount_capturable if amount is None else amount_of(amount)
        if to_capture > intent.amount_capturable:
            raise AmountExceedsCapturableError(
                f"{to_capture} exceeds the {intent.amount_capturable} that can be captured",
                param="amount_to_capture",
            )
        capturing = intent.moved(
            IntentStatus.PROCESSING,
            from_micros(uow.now()),
            action=AttemptOperation.CAPTURE,
            capture_amount=to_capture,
            last_error=None,
        )
        uow.payments.update_intent(capturing)
        intent_event(uow, capturing, "processing")
        _enqueue(uow, JOB_CAPTURE, capturing)
        uow.commit()
    return capturing


def cancel_payment_intent(
    uow: PaymentsUnitOfWork,
    tenant_id: uuid.UUID,
    intent_id: uuid.UUID,
    *,
    reason: str | None = None,
) -> PaymentIntent:
    """Cancel: at once if nothing is held; an authorized intent's hold is voided at the
    processor first (the worker then releases it in the ledger).

    Raises:
        PaymentIntentNotFoundError, InvalidPaymentStateError (processing, or finished),
        InvalidPaymentError (an unknown reason).
    """
    if reason is not None and reason not in _CANCEL_REASONS:
        raise InvalidPaymentError(
            f"cancellation_reason is one of {', '.join(sorted(_CANCEL_REASONS))}",
            param="cancellation_reason",
        )
    with uow:
        intent = locked_intent(uow, tenant_id, intent_id)
        now = from_micros(uow.now())
        if intent.status in (
            IntentStatus.REQUIRES_PAYMENT_METHOD,
            IntentStatus.REQUIRES_CONFIRMATION,
        ):
            canceled = intent.moved(
                IntentStatus.CANCELED, now, cancellation_reason=reason, canceled_at=now
            )
            uow.payments.update_intent(canceled)
            intent_event(uow, canceled, "canceled")
        elif intent.status is IntentStatus.REQUIRES_CAPTURE:
            canceled = intent.moved(
                IntentStatus.PROCESSING,
                now,
                action=AttemptOperation.VOID,
                cancellation_reason=reason,
                last_error=None,
            )
            uow.payments.update_intent(canceled)
            intent_event(uow, canceled, "processing")
            _enqueue(uow, JOB_VOID, canceled)
        else:
            raise InvalidPaymentStateError(
                f"a {intent.status.value} payment intent cannot be canceled", param="id"
            )
        uow.commit()
    return canceled
