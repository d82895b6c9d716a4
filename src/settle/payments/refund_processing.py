"""Refunds at the processor: the refund's key never changes, so it is never refunded twice."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

from settle.clock import from_micros
from settle.jobs.model import Job, Reschedule
from settle.ledger.requests import VoidPending
from settle.payments.errors import InvalidPaymentStateError
from settle.payments.ledger_moves import (
    check_moved,
    derived_id,
    post_hold,
)
from settle.payments.model import (
    REFUND_TRANSITIONS,
    Refund,
    RefundStatus,
)
from settle.payments.processors import (
    ProcessorOutcome,
    ProcessorResult,
    RefundRequest,
)
from settle.payments.service import (
    refund_event,
)
from settle.payments.settling import ProcessorUnavailableError, Settler

_O = ProcessorOutcome

__all__ = ["Refunds"]


class Refunds(Settler):
    """The ``payments.refund`` job and the recording of refund answers."""

    def refund(self, job: Job) -> None:
        """Send a pending refund to its processor (asking first whether it has it already:
        the refund's key never changes, so the processor never refunds it twice)."""
        refund_id = uuid.UUID(job.payload["refund_id"])
        with self.uow() as uow:
            refund = uow.payments.get_refund(job.tenant_id, refund_id)
            if refund is None or refund.status is not RefundStatus.PENDING:
                return
            intent = uow.payments.get_intent(job.tenant_id, refund.intent_id)
        if intent is None or intent.authorization is None or refund.processor is None:
            raise RuntimeError(f"refund {refund.id} has no authorization to refund")
        processor = self.processors.get(refund.processor)
        result = self.ask(processor, refund.idempotency_key)
        if result.outcome is _O.NOT_PROCESSED:
            result = processor.refund(
                RefundRequest(refund.idempotency_key, intent.authorization, refund.amount)
            )
        if result.outcome is _O.UNKNOWN:
            raise Reschedule(self.resolve_after_seconds, "outcome unknown: ask again")
        if result.outcome is _O.NOT_PROCESSED:
            raise ProcessorUnavailableError(f"{processor.name} did not take the refund")
        self.record_refund(job.tenant_id, refund_id, result)

    def record_refund(
        self, tenant_id: uuid.UUID, refund_id: uuid.UUID, result: ProcessorResult
    ) -> bool:
        """Settle a pending refund with the processor's final answer; False if it was settled."""
        if result.outcome not in (_O.APPROVED, _O.DECLINED):
            return False
        with self.uow() as uow:
            unlocked = uow.payments.get_refund(tenant_id, refund_id)
            if unlocked is None:
                return False
            intent = uow.payments.get_intent(tenant_id, unlocked.intent_id, lock=True)
            refund = uow.payments.get_refund(tenant_id, refund_id, lock=True)
            if intent is None or refund is None or refund.status is not RefundStatus.PENDING:
                return False
            if refund.hold_transfer_id is None:
                raise RuntimeError(f"refund {refund.id} has no hold")
            now = from_micros(uow.now())
            uow.ledger.lock_tenant(tenant_id)
            if result.outcome is _O.APPROVED:
                check_moved(
                    uow.ledger.apply_transfers(
                        [
                            post_hold(
                                tenant_id,
                                derived_id("refund", refund.id),
                                refund.hold_transfer_id,
                                None,
                                f"refund {refund.id}",
                            )
                        ]
                    )
                )
                settled = _refund_moved(refund, RefundStatus.SUCCEEDED, now, result.reference, None)
                event = "succeeded"
            else:
                check_moved(
                    uow.ledger.apply_transfers(
                        [
                            VoidPending(
                                tenant_id,
                                derived_id("refund_void", refund.id),
                                refund.hold_transfer_id,
                                f"failed refund {refund.id}",
                            )
                        ]
                    )
                )
                settled = _refund_moved(
                    refund, RefundStatus.FAILED, now, None, result.decline_code or "declined"
                )
                restored = intent.moved(
                    intent.status, now, amount_refunded=intent.amount_refunded - refund.amount
                )
                uow.payments.update_intent(restored)
                event = "failed"
            uow.payments.update_refund(settled)
            refund_event(uow, settled, event)
            uow.commit()
        return True


def _refund_moved(
    refund: Refund,
    status: RefundStatus,
    now: datetime,
    reference: str | None,
    failure_code: str | None,
) -> Refund:
    if status not in REFUND_TRANSITIONS[refund.status]:
        raise InvalidPaymentStateError(
            f"a refund cannot go from {refund.status.value} to {status.value}", param="status"
        )
    return replace(
        refund,
        status=status,
        updated_at=now,
        version=refund.version + 1,
        reference=reference,
        failure_code=failure_code,
    )
