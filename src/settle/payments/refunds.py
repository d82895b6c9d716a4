"""Refunding a captured payment (the worker sends it: ``settle.payments.refund_processing``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from settle.clock import from_micros
from settle.jobs.model import NewJob
from settle.ledger.requests import TransferSpec
from settle.payments.accounts import ensure_payment_accounts
from settle.payments.errors import (
    InvalidPaymentError,
    InvalidPaymentStateError,
    RefundExceedsCapturedError,
)
from settle.payments.ledger_moves import check_moved, derived_id
from settle.payments.model import IntentStatus, Refund, RefundStatus
from settle.payments.service import (
    JOB_REFUND,
    REFUND_REASONS,
    amount_of,
    locked_intent,
    metadata_of,
    refund_event,
)

if TYPE_CHECKING:
    from settle.payments.ports import PaymentsUnitOfWork

__all__ = ["NewRefund", "create_refund"]


@dataclass(frozen=True, slots=True)
class NewRefund:
    tenant_id: uuid.UUID
    payment_intent_id: uuid.UUID
    amount: int | None = None
    reason: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def create_refund(uow: PaymentsUnitOfWork, cmd: NewRefund) -> Refund:
    """Refund a captured payment, in full or in part; several partial refunds may follow.

    The refund's amount is held out of the merchant's balance at once (a pending ledger
    transfer back to the processor's clearing account) and the intent's ``amount_refunded``
    grows under the intent's row lock, so concurrent refunds never total more than was
    captured (the database's check is the backstop). The platform keeps its fee.

    Raises:
        PaymentIntentNotFoundError, InvalidPaymentStateError (not succeeded),
        RefundExceedsCapturedError, InvalidPaymentError.
    """
    if cmd.reason is not None and cmd.reason not in REFUND_REASONS:
        raise InvalidPaymentError(
            f"reason is one of {', '.join(sorted(REFUND_REASONS))}", param="reason"
        )
    metadata = metadata_of(cmd.metadata)
    with uow:
        intent = locked_intent(uow, cmd.tenant_id, cmd.payment_intent_id)
        if intent.status is not IntentStatus.SUCCEEDED or intent.processor is None:
            raise InvalidPaymentStateError(
                f"a {intent.status.value} payment intent cannot be refunded",
                param="payment_intent",
            )
        left = intent.amount_received - intent.amount_refunded
        amount = left if cmd.amount is None else amount_of(cmd.amount)
        if amount > left or left == 0:
            raise RefundExceedsCapturedError(
                f"{amount} exceeds the {left} left to refund", param="amount"
            )
        now = from_micros(uow.now())
        refund_id = uuid.uuid4()
        hold_id = derived_id("refund_hold", refund_id)
        uow.ledger.lock_tenant(cmd.tenant_id)
        accounts = ensure_payment_accounts(
            uow, cmd.tenant_id, intent.currency, intent.processor, now
        )
        check_moved(
            uow.ledger.apply_transfers(
                [
                    TransferSpec.shorthand(
                        cmd.tenant_id,
                        hold_id,
                        debit_account_id=accounts.merchant,
                        credit_account_id=accounts.clearing,
                        amount=amount,
                        currency=intent.currency,
                        pending=True,
                        description=f"refund {refund_id} of payment {intent.id}",
                        metadata={"refund": str(refund_id), "payment_intent": str(intent.id)},
                    )
                ]
            )
        )
        refund = Refund(
            tenant_id=cmd.tenant_id,
            id=refund_id,
            intent_id=intent.id,
            amount=amount,
            currency=intent.currency,
            status=RefundStatus.PENDING,
            reason=cmd.reason,
            created_at=now,
            updated_at=now,
            hold_transfer_id=hold_id,
            processor=intent.processor,
            metadata=metadata,
        )
        uow.payments.insert_refund(refund)
        refunded = intent.moved(intent.status, now, amount_refunded=intent.amount_refunded + amount)
        uow.payments.update_intent(refunded)
        refund_event(uow, refund, "created")
        uow.jobs.enqueue(
            NewJob(
                tenant_id=cmd.tenant_id,
                kind=JOB_REFUND,
                payload={"refund_id": str(refund_id)},
                run_at=uow.now(),
                dedupe_key=f"{JOB_REFUND}:{cmd.tenant_id.hex}:{refund_id.hex}",
                max_attempts=12,
            ),
            now=uow.now(),
        )
        uow.commit()
    return refund
