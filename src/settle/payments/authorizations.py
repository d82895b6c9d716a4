"""Authorizations: one attempt at a time; the next one (on the next processor) only once the
last one certainly did nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from settle.clock import from_micros
from settle.jobs.model import Job, Reschedule
from settle.payments.accounts import ensure_payment_accounts
from settle.payments.ledger_moves import (
    check_moved,
    derived_id,
    hold_spec,
    payment_lines,
)
from settle.payments.methods import card_number_for
from settle.payments.model import (
    UNANSWERED,
    AttemptOperation,
    AttemptStatus,
    CaptureMethod,
    IntentStatus,
    PaymentAttempt,
    PaymentError,
    PaymentIntent,
)
from settle.payments.processors import (
    AuthorizeRequest,
    ProcessorOutcome,
    ProcessorResult,
)
from settle.payments.service import (
    intent_event,
)
from settle.payments.settling import Next, ProcessorUnavailableError, Settler, answered

if TYPE_CHECKING:
    from settle.payments.fees import FeeSchedule
    from settle.payments.ports import PaymentsUnitOfWork
    from settle.payments.processors import ProcessorDirectory

_log = structlog.get_logger(__name__)
_O = ProcessorOutcome

__all__ = ["Authorizations"]


class Authorizations(Settler):
    """The ``payments.authorize`` job and the recording of authorization answers."""

    def __init__(
        self,
        uow: Callable[[], PaymentsUnitOfWork],
        processors: ProcessorDirectory,
        fees: FeeSchedule,
        *,
        resolve_after_seconds: float,
        max_attempts: int,
        give_up_after_seconds: float,
    ) -> None:
        super().__init__(uow, processors, fees, resolve_after_seconds=resolve_after_seconds)
        self.max_authorization_attempts = max_attempts
        self.give_up_after = timedelta(seconds=give_up_after_seconds)

    def authorize(self, job: Job) -> None:
        """Authorize a confirmed intent: one attempt at a time, the next one (on the next
        processor) only once the last one certainly did nothing."""
        intent_id = uuid.UUID(job.payload["intent_id"])
        for _ in range(2 * self.max_authorization_attempts + 1):
            step = self._authorization_step(job.tenant_id, intent_id)
            if step is None:
                return
            intent, attempt, ask = step
            processor = self.processors.get(attempt.processor)
            if ask:
                result = self.ask(processor, attempt.idempotency_key)
            else:
                if intent.payment_method is None:
                    raise RuntimeError(f"payment intent {intent.id} is confirmed without a card")
                result = processor.authorize(
                    AuthorizeRequest(
                        idempotency_key=attempt.idempotency_key,
                        amount=attempt.amount,
                        currency=intent.currency,
                        card_number=card_number_for(intent.payment_method),
                        capture=intent.capture_method is CaptureMethod.AUTOMATIC,
                        reference=str(intent.id),
                    )
                )
            following = self.record_authorization(job.tenant_id, attempt.id, result)
            if following is Next.RESOLVE:
                raise Reschedule(self.resolve_after_seconds, "outcome unknown: ask again")
            if following is Next.DONE:
                return
        raise ProcessorUnavailableError("the authorization did not settle in this run")

    def _authorization_step(
        self, tenant_id: uuid.UUID, intent_id: uuid.UUID
    ) -> tuple[PaymentIntent, PaymentAttempt, bool] | None:
        """The attempt to send (False) or to ask about (True); None when nothing is left."""
        with self.uow() as uow:
            intent = uow.payments.get_intent(tenant_id, intent_id, lock=True)
            if (
                intent is None
                or intent.status is not IntentStatus.PROCESSING
                or intent.action is not AttemptOperation.AUTHORIZE
            ):
                return None
            attempts = [
                a
                for a in uow.payments.attempts_for(tenant_id, intent_id)
                if a.operation is AttemptOperation.AUTHORIZE
            ]
            unsettled = [a for a in attempts if a.status in UNANSWERED]
            if unsettled:
                # Maybe sent by a run that died, or sent and timed out: ask, never resend.
                return intent, unsettled[-1], True
            this_round: list[PaymentAttempt] = []
            for a in attempts:  # the attempts since the last answer a processor gave
                this_round = (
                    []
                    if a.status in (AttemptStatus.APPROVED, AttemptStatus.DECLINED)
                    else [*this_round, a]
                )
            tried = {a.processor for a in this_round}
            now = from_micros(uow.now())
            processor = self.processors.pick(exclude=tried) or self.processors.pick()
            exhausted = len(this_round) >= self.max_authorization_attempts
            if exhausted or (processor is None and now - intent.updated_at > self.give_up_after):
                failed = intent.moved(
                    IntentStatus.FAILED,
                    now,
                    action=None,
                    last_error=PaymentError(
                        "processor_unavailable",
                        f"no processor could take the payment ({len(this_round)} attempts)",
                    ),
                )
                uow.payments.update_intent(failed)
                intent_event(uow, failed, "payment_failed")
                uow.commit()
                return None
            if processor is None:
                raise Reschedule(self.resolve_after_seconds * 5, "no processor is available")
            attempt = PaymentAttempt(
                tenant_id=tenant_id,
                id=uuid.uuid4(),
                intent_id=intent_id,
                operation=AttemptOperation.AUTHORIZE,
                processor=processor.name,
                amount=intent.amount,
                status=AttemptStatus.PENDING,
                created_at=now,
            )
            uow.payments.insert_attempt(attempt)
            uow.commit()
        return intent, attempt, False

    def record_authorization(
        self, tenant_id: uuid.UUID, attempt_id: uuid.UUID, result: ProcessorResult
    ) -> Next:
        """Record an authorization's answer and move the money, in one transaction."""
        with self.uow() as uow:
            found = self.open_attempt(uow, tenant_id, attempt_id)
            if isinstance(found, Next):
                return found
            intent, attempt = found
            now = from_micros(uow.now())
            recorded = answered(attempt, result, now)
            uow.payments.update_attempt(recorded)
            following = Next.DONE
            awaiting = (
                intent.status is IntentStatus.PROCESSING
                and intent.action is AttemptOperation.AUTHORIZE
            )
            if result.outcome is _O.UNKNOWN:
                following = Next.RESOLVE
            elif result.outcome is _O.NOT_PROCESSED:
                following = Next.RETRY
            elif not awaiting:
                # An answer for an intent no longer waiting for one: recorded, nothing moves.
                _log.error("late authorization answer", attempt_id=str(attempt.id))
            elif result.outcome is _O.APPROVED:
                self._authorized(uow, intent, recorded, now)
            else:
                soft = not result.do_not_retry
                declined = intent.moved(
                    IntentStatus.REQUIRES_PAYMENT_METHOD if soft else IntentStatus.FAILED,
                    now,
                    action=None,
                    payment_method=None if soft else intent.payment_method,
                    last_error=PaymentError(
                        "card_declined",
                        "the card was declined",
                        result.decline_code,
                        result.do_not_retry,
                    ),
                )
                uow.payments.update_intent(declined)
                intent_event(uow, declined, "payment_failed")
            uow.commit()
        return following

    def _authorized(
        self,
        uow: PaymentsUnitOfWork,
        intent: PaymentIntent,
        attempt: PaymentAttempt,
        moment: datetime,
    ) -> None:
        uow.ledger.lock_tenant(intent.tenant_id)
        accounts = ensure_payment_accounts(
            uow, intent.tenant_id, intent.currency, attempt.processor, moment, self.known_accounts
        )
        lines = payment_lines(accounts, intent.amount, intent.currency, self.fees)
        automatic = intent.capture_method is CaptureMethod.AUTOMATIC
        transfer_id = derived_id("capture" if automatic else "hold", attempt.id)
        check_moved(
            uow.ledger.apply_transfers(
                [
                    hold_spec(
                        intent.tenant_id,
                        transfer_id,
                        lines,
                        pending=not automatic,
                        description=f"payment {intent.id} via {attempt.processor}",
                        metadata={"payment_intent": str(intent.id), "attempt": str(attempt.id)},
                    )
                ]
            )
        )
        common = {
            "action": None,
            "processor": attempt.processor,
            "authorization": attempt.reference,
            "hold_transfer_id": transfer_id,
        }
        if automatic:
            settled = intent.moved(
                IntentStatus.SUCCEEDED,
                moment,
                amount_received=intent.amount,
                fee=self.fees.fee_for(intent.amount),
                **common,
            )
            event = "succeeded"
        else:
            settled = intent.moved(
                IntentStatus.REQUIRES_CAPTURE, moment, amount_capturable=intent.amount, **common
            )
            event = "requires_capture"
        uow.payments.update_intent(settled)
        intent_event(uow, settled, event)
