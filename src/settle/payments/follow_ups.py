"""Captures and voids of authorized intents, at the processor that authorized them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from settle.clock import from_micros
from settle.jobs.model import Job, Reschedule
from settle.ledger.requests import VoidPending
from settle.payments.accounts import ensure_payment_accounts
from settle.payments.ledger_moves import (
    capture_lines,
    check_moved,
    derived_id,
    post_hold,
)
from settle.payments.model import (
    UNANSWERED,
    AttemptOperation,
    AttemptStatus,
    IntentStatus,
    PaymentAttempt,
    PaymentError,
    PaymentIntent,
)
from settle.payments.processors import (
    CaptureRequest,
    ProcessorOutcome,
    ProcessorResult,
    VoidRequest,
)
from settle.payments.service import (
    intent_event,
)
from settle.payments.settling import Next, ProcessorUnavailableError, Settler, answered

if TYPE_CHECKING:
    from settle.payments.ports import PaymentsUnitOfWork

_log = structlog.get_logger(__name__)
_O = ProcessorOutcome

__all__ = ["FollowUps"]


class FollowUps(Settler):
    """The ``payments.capture`` and ``payments.void`` jobs and the recording of their answers."""

    def capture(self, job: Job) -> None:
        """Capture an authorized intent at the processor that authorized it."""
        self._follow_up(job, AttemptOperation.CAPTURE)

    def void(self, job: Job) -> None:
        """Void an authorized intent's hold at its processor (the intent is being canceled)."""
        self._follow_up(job, AttemptOperation.VOID)

    def _follow_up(self, job: Job, operation: AttemptOperation) -> None:
        intent_id = uuid.UUID(job.payload["intent_id"])
        for _ in range(3):
            step = self._follow_up_step(job.tenant_id, intent_id, operation)
            if step is None:
                return
            intent, attempt, ask = step
            processor = self.processors.get(attempt.processor)
            if intent.authorization is None:
                raise RuntimeError(f"payment intent {intent.id} has no authorization")
            if ask:
                result = self.ask(processor, attempt.idempotency_key)
            elif operation is AttemptOperation.CAPTURE:
                result = processor.capture(
                    CaptureRequest(attempt.idempotency_key, intent.authorization, attempt.amount)
                )
            else:
                result = processor.void(VoidRequest(attempt.idempotency_key, intent.authorization))
            following = self.record_follow_up(job.tenant_id, attempt.id, result)
            if following is Next.RESOLVE:
                raise Reschedule(self.resolve_after_seconds, "outcome unknown: ask again")
            if following is Next.DONE:
                return
            # Not processed after a lookup said "never received": send a new attempt now;
            # not processed after sending: the processor is struggling, back off.
            if not ask:
                raise ProcessorUnavailableError(f"{processor.name} did not take the {operation}")
        raise ProcessorUnavailableError(f"the {operation} did not settle in this run")

    def _follow_up_step(
        self, tenant_id: uuid.UUID, intent_id: uuid.UUID, operation: AttemptOperation
    ) -> tuple[PaymentIntent, PaymentAttempt, bool] | None:
        with self.uow() as uow:
            intent = uow.payments.get_intent(tenant_id, intent_id, lock=True)
            if (
                intent is None
                or intent.status is not IntentStatus.PROCESSING
                or intent.action is not operation
                or intent.processor is None
            ):
                return None
            unsettled = [
                a
                for a in uow.payments.attempts_for(tenant_id, intent_id)
                if a.operation is operation and a.status in UNANSWERED
            ]
            if unsettled:
                return intent, unsettled[-1], True
            amount = (
                intent.capture_amount or intent.amount_capturable
                if operation is AttemptOperation.CAPTURE
                else intent.amount_capturable
            )
            attempt = PaymentAttempt(
                tenant_id=tenant_id,
                id=uuid.uuid4(),
                intent_id=intent_id,
                operation=operation,
                processor=intent.processor,
                amount=amount,
                status=AttemptStatus.PENDING,
                created_at=from_micros(uow.now()),
            )
            uow.payments.insert_attempt(attempt)
            uow.commit()
        return intent, attempt, False

    def record_follow_up(
        self, tenant_id: uuid.UUID, attempt_id: uuid.UUID, result: ProcessorResult
    ) -> Next:
        """Record a capture's or a void's answer and move the money, in one transaction."""
        with self.uow() as uow:
            found = self.open_attempt(uow, tenant_id, attempt_id)
            if isinstance(found, Next):
                return found
            intent, attempt = found
            now = from_micros(uow.now())
            uow.payments.update_attempt(answered(attempt, result, now))
            if result.outcome is _O.UNKNOWN:
                uow.commit()
                return Next.RESOLVE
            if result.outcome is _O.NOT_PROCESSED:
                uow.commit()
                return Next.RETRY
            if (
                intent.status is not IntentStatus.PROCESSING
                or intent.action is not attempt.operation
            ):
                _log.error("late follow-up answer", attempt_id=str(attempt.id))
            elif result.outcome is _O.APPROVED:
                self._followed_up(uow, intent, attempt, now)
            else:
                refused = intent.moved(
                    IntentStatus.REQUIRES_CAPTURE,
                    now,
                    action=None,
                    capture_amount=None,
                    cancellation_reason=None,
                    last_error=PaymentError(
                        f"{attempt.operation.value}_failed",
                        f"the processor refused the {attempt.operation.value}",
                        result.decline_code,
                        result.do_not_retry,
                    ),
                )
                uow.payments.update_intent(refused)
                intent_event(uow, refused, "requires_capture")
            uow.commit()
        return Next.DONE

    def _followed_up(
        self,
        uow: PaymentsUnitOfWork,
        intent: PaymentIntent,
        attempt: PaymentAttempt,
        moment: datetime,
    ) -> None:
        if intent.hold_transfer_id is None or intent.processor is None:
            raise RuntimeError(f"payment intent {intent.id} is authorized without a hold")
        uow.ledger.lock_tenant(intent.tenant_id)
        if attempt.operation is AttemptOperation.CAPTURE:
            accounts = ensure_payment_accounts(
                uow,
                intent.tenant_id,
                intent.currency,
                intent.processor,
                moment,
                self.known_accounts,
            )
            captured = attempt.amount
            lines = capture_lines(
                accounts, intent.amount_capturable, captured, intent.currency, self.fees
            )
            check_moved(
                uow.ledger.apply_transfers(
                    [
                        post_hold(
                            intent.tenant_id,
                            derived_id("capture", attempt.id),
                            intent.hold_transfer_id,
                            lines,
                            f"capture of payment {intent.id}",
                        )
                    ]
                )
            )
            settled = intent.moved(
                IntentStatus.SUCCEEDED,
                moment,
                action=None,
                capture_amount=None,
                amount_capturable=0,
                amount_received=captured,
                fee=self.fees.fee_for(captured),
            )
            event = "succeeded"
        else:
            check_moved(
                uow.ledger.apply_transfers(
                    [
                        VoidPending(
                            intent.tenant_id,
                            derived_id("void", attempt.id),
                            intent.hold_transfer_id,
                            f"cancel of payment {intent.id}",
                        )
                    ]
                )
            )
            settled = intent.moved(
                IntentStatus.CANCELED, moment, action=None, amount_capturable=0, canceled_at=moment
            )
            event = "canceled"
        uow.payments.update_intent(settled)
        intent_event(uow, settled, event)
