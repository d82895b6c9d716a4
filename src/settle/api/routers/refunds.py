"""``/v1/refunds``: refund captured payments, in full or in part; read refunds."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from starlette.responses import Response

from settle.api.deps import PaymentsReadCaller
from settle.api.idempotency import JSON, PaymentsKeyedDep, idempotent_call
from settle.api.payment_schemas import RefundCreate, RefundPublic, RefundsPublic
from settle.api.render import dump
from settle.api.routers.common import Limit
from settle.payments.errors import RefundNotFoundError
from settle.payments.model import Refund
from settle.payments.payloads import refund_payload
from settle.payments.refunds import NewRefund, create_refund
from settle.store.payments_repo import SqlPaymentsRepository, refunds_page
from settle.store.uow import SqlUnitOfWork

router = APIRouter(prefix="/v1/refunds", tags=["refunds"])


@router.post("", status_code=201, response_model=RefundPublic)
async def create(body: RefundCreate, keyed: PaymentsKeyedDep) -> Response:
    """Refund a succeeded payment (all that is left by default). The amount is held out of
    the merchant's balance at once; the refund is `pending` until the processor confirms."""
    cmd = NewRefund(
        tenant_id=keyed.tenant_id,
        payment_intent_id=body.payment_intent,
        amount=body.amount,
        reason=body.reason,
        metadata=body.metadata,
    )

    def effect(uow: SqlUnitOfWork) -> Refund:
        return create_refund(uow, cmd)

    def render(refund: Refund) -> tuple[int, bytes]:
        return 201, dump(refund_payload(refund))

    return await idempotent_call(keyed, effect, render)


@router.get("", response_model=RefundsPublic)
def list_refunds(
    caller: PaymentsReadCaller,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
    ending_before: uuid.UUID | None = None,
    payment_intent: uuid.UUID | None = None,
) -> Response:
    """Refunds, newest first; of one payment intent with `payment_intent`."""
    with caller.state.store.read() as repo:
        found, more = refunds_page(
            repo.conn,
            caller.tenant_id,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            intent_id=payment_intent,
        )
    body = {"data": [refund_payload(r) for r in found], "has_more": more}
    return Response(dump(body), media_type=JSON)


@router.get("/{refund_id}", response_model=RefundPublic)
def get(refund_id: uuid.UUID, caller: PaymentsReadCaller) -> Response:
    with caller.state.store.read() as repo:
        refund = SqlPaymentsRepository(repo.conn).get_refund(caller.tenant_id, refund_id)
    if refund is None:
        raise RefundNotFoundError(f"refund {refund_id} not found", param="id")
    return Response(dump(refund_payload(refund)), media_type=JSON)
