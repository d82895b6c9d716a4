"""``/v1/payment_intents``: create, confirm, capture and cancel card payments; read them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from settle.api.deps import PaymentsReadCaller
from settle.api.idempotency import JSON, Keyed, PaymentsKeyedDep, idempotent_call
from settle.api.payment_schemas import (
    PaymentIntentCancel,
    PaymentIntentCapture,
    PaymentIntentConfirm,
    PaymentIntentCreate,
    PaymentIntentPublic,
    PaymentIntentsPublic,
)
from settle.api.render import dump
from settle.api.routers.common import Limit
from settle.payments.errors import PaymentIntentNotFoundError
from settle.payments.model import IntentStatus, PaymentIntent
from settle.payments.payloads import attempt_payload, intent_payload
from settle.payments.service import (
    NewPaymentIntent,
    cancel_payment_intent,
    capture_payment_intent,
    confirm_payment_intent,
    create_payment_intent,
)
from settle.store.payments_repo import SqlPaymentsRepository, intents_page
from settle.store.uow import SqlUnitOfWork

router = APIRouter(prefix="/v1/payment_intents", tags=["payment intents"])


def _answer(status: int) -> Callable[[PaymentIntent], tuple[int, bytes]]:
    def render(intent: PaymentIntent) -> tuple[int, bytes]:
        return status, dump(intent_payload(intent))

    return render


@router.post("", status_code=201, response_model=PaymentIntentPublic)
async def create_intent(body: PaymentIntentCreate, keyed: PaymentsKeyedDep) -> Response:
    """Create a payment intent; with `confirm: true` it is confirmed at once. The processor is
    asked after the answer: the intent is `processing` until it replies (poll it, or listen
    for its webhooks)."""
    cmd = NewPaymentIntent(
        tenant_id=keyed.tenant_id,
        amount=body.amount,
        currency=body.currency,
        capture_method=body.capture_method.value,
        customer=body.customer,
        payment_method=body.payment_method,
        description=body.description,
        metadata=body.metadata,
        confirm=body.confirm,
        live=keyed.live,
    )

    def effect(uow: SqlUnitOfWork) -> PaymentIntent:
        return create_payment_intent(uow, cmd)

    return await idempotent_call(keyed, effect, _answer(201))


@router.get("", response_model=PaymentIntentsPublic)
def list_intents(
    caller: PaymentsReadCaller,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
    ending_before: uuid.UUID | None = None,
    status: IntentStatus | None = None,
    customer: str | None = None,
) -> Response:
    """Payment intents, newest first."""
    with caller.state.store.read() as repo:
        found, more = intents_page(
            repo.conn,
            caller.tenant_id,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            status=status,
            customer=customer,
        )
    body = {"data": [intent_payload(i) for i in found], "has_more": more}
    return Response(dump(body), media_type=JSON)


@router.get("/{intent_id}", response_model=PaymentIntentPublic)
def get_intent(intent_id: uuid.UUID, caller: PaymentsReadCaller) -> Response:
    """The intent, with every processor attempt made for it."""
    with caller.state.store.read() as repo:
        payments = SqlPaymentsRepository(repo.conn)
        intent = payments.get_intent(caller.tenant_id, intent_id)
        if intent is None:
            raise PaymentIntentNotFoundError(f"payment intent {intent_id} not found", param="id")
        attempts = payments.attempts_for(caller.tenant_id, intent_id)
    body: dict[str, Any] = intent_payload(intent)
    body["attempts"] = [attempt_payload(a) for a in attempts]
    return Response(dump(body), media_type=JSON)


async def _keyed_change(keyed: Keyed, change: Callable[[SqlUnitOfWork], PaymentIntent]) -> Response:
    return await idempotent_call(keyed, change, _answer(200))


@router.post("/{intent_id}/confirm", response_model=PaymentIntentPublic)
async def confirm_intent(
    intent_id: uuid.UUID, keyed: PaymentsKeyedDep, body: PaymentIntentConfirm | None = None
) -> Response:
    """Confirm the intent (optionally giving its payment method now)."""
    method = None if body is None else body.payment_method

    def effect(uow: SqlUnitOfWork) -> PaymentIntent:
        return confirm_payment_intent(
            uow, keyed.tenant_id, intent_id, payment_method=method, live=keyed.live
        )

    return await _keyed_change(keyed, effect)


@router.post("/{intent_id}/capture", response_model=PaymentIntentPublic)
async def capture_intent(
    intent_id: uuid.UUID, keyed: PaymentsKeyedDep, body: PaymentIntentCapture | None = None
) -> Response:
    """Capture an authorized intent, in full or in part (`amount_to_capture`)."""
    amount = None if body is None else body.amount_to_capture

    def effect(uow: SqlUnitOfWork) -> PaymentIntent:
        return capture_payment_intent(uow, keyed.tenant_id, intent_id, amount=amount)

    return await _keyed_change(keyed, effect)


@router.post("/{intent_id}/cancel", response_model=PaymentIntentPublic)
async def cancel_intent(
    intent_id: uuid.UUID, keyed: PaymentsKeyedDep, body: PaymentIntentCancel | None = None
) -> Response:
    """Cancel the intent; an authorized one's hold is voided at the processor first."""
    reason = None if body is None else body.cancellation_reason

    def effect(uow: SqlUnitOfWork) -> PaymentIntent:
        return cancel_payment_intent(uow, keyed.tenant_id, intent_id, reason=reason)

    return await _keyed_change(keyed, effect)
