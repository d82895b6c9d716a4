"""Authorizations: one attempt at a time; the next one (on the next processor) only once the
last one certainly did nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
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
    from settle.payments.accounts import PaymentAccounts
    from settle.payments.fees import FeeSchedule
    from settle.payments.ports import PaymentsUnitOfWork
    from settle.payments.processors import ProcessorDirectory

_log = structlog.get_logger(__name__)
_O = ProcessorOutcome

__all__ = ["Authorizations"]


@dataclass(frozen=True)
class _Step:
    """What one job does next: send ``attempt`` (``ask`` False) or ask about it (True)."""

    job: Job
    intent: PaymentIntent
    attempt: PaymentAttempt
    ask: bool


Outcome = BaseException | None  # a job's outcome: None when done, else what its run raised


class Authorizations(Settler):
    """The ``payments.authorize`` job and the recording of authorization answers.

    Jobs run in batches (:meth:`authorize_jobs`), the way the ledger commits: one transaction
    records the attempts of every job in the batch, the processor calls go out concurrently,
    and one transaction records every answer with one set-based ledger apply. A batch whose
    transaction fails is run again job by job, so one bad payment cannot hold up the others.
    """

    def __init__(
        self,
        uow: Callable[[], PaymentsUnitOfWork],
        processors: ProcessorDirectory,
        fees: FeeSchedule,
        *,
        resolve_after_seconds: float,
        max_attempts: int,
        give_up_after_seconds: float,
        call_concurrency: int = 32,
    ) -> None:
        super().__init__(uow, processors, fees, resolve_after_seconds=resolve_after_seconds)
        self.max_authorization_attempts = max_attempts
        self.give_up_after = timedelta(seconds=give_up_after_seconds)
        self._calls = ThreadPoolExecutor(call_concurrency, thread_name_prefix="settle-authorize")

    def close(self) -> None:
        self._calls.shutdown(wait=True)

    def authorize(self, job: Job) -> None:
        """Authorize a confirmed intent: one attempt at a time, the next one (on the next
        processor) only once the last one certainly did nothing."""
        outcome = self.authorize_jobs([job])[job.id]
        if outcome is not None:
            raise outcome

    def authorize_jobs(self, jobs: Sequence[Job]) -> dict[uuid.UUID, Outcome]:
        """:meth:`authorize` for each of ``jobs``, together; each job's outcome."""
        first: dict[uuid.UUID, Job] = {}
        again: list[Job] = []  # a second job for an intent already in the batch runs after it
        for job in jobs:
            intent_id = uuid.UUID(job.payload["intent_id"])
            if intent_id in first:
                again.append(job)
            else:
                first[intent_id] = job
        together = list(first.values())
        try:
            outcomes = self._authorize_together(together)
        except Exception as exc:  # noqa: BLE001 - isolated below, or this job's outcome
            if len(together) == 1:
                outcomes = {together[0].id: exc}
            else:
                _log.warning("authorization batch failed; running it job by job", error=repr(exc))
                outcomes = {}
                for job in together:
                    outcomes |= self.authorize_jobs([job])
        for job in again:
            outcomes |= self.authorize_jobs([job])
        return outcomes

    def _authorize_together(self, jobs: Sequence[Job]) -> dict[uuid.UUID, Outcome]:
        outcomes: dict[uuid.UUID, Outcome] = {}
        live = list(jobs)
        for _ in range(2 * self.max_authorization_attempts + 1):
            if not live:
                return outcomes
            steps = self._authorization_steps(live, outcomes)
            results = self._call_processors(steps, outcomes)
            answered_steps = [step for step in steps if step.job.id in results]
            following = self.record_authorizations(
                [(s.job.tenant_id, s.attempt.id, results[s.job.id]) for s in answered_steps]
            )
            live = []
            for step, then in zip(answered_steps, following, strict=True):
                if then is Next.RESOLVE:
                    outcomes[step.job.id] = Reschedule(
                        self.resolve_after_seconds, "outcome unknown: ask again"
                    )
                elif then is Next.DONE:
                    outcomes[step.job.id] = None
                else:
                    live.append(step.job)
        for job in live:
            outcomes[job.id] = ProcessorUnavailableError(
                "the authorization did not settle in this run"
            )
        return outcomes

    def _call_processors(
        self, steps: Sequence[_Step], outcomes: dict[uuid.UUID, Outcome]
    ) -> dict[uuid.UUID, ProcessorResult]:
        """Each step's processor answer, the calls made concurrently; a call that raised
        sets its job's outcome instead."""
        # A batch of one calls on this thread: no hand-off for a lone payment.
        calls: list[Callable[[], ProcessorResult]] = (
            [partial(self._call, steps[0])]
            if len(steps) == 1
            else [self._calls.submit(self._call, step).result for step in steps]
        )
        results: dict[uuid.UUID, ProcessorResult] = {}
        for step, call in zip(steps, calls, strict=True):
            try:
                results[step.job.id] = call()
            except Exception as exc:  # noqa: BLE001 - the job's outcome
                outcomes[step.job.id] = exc
        return results

    def _call(self, step: _Step) -> ProcessorResult:
        processor = self.processors.get(step.attempt.processor)
        if step.ask:
            return self.ask(processor, step.attempt.idempotency_key)
        intent = step.intent
        if intent.payment_method is None:
            raise RuntimeError(f"payment intent {intent.id} is confirmed without a card")
        return processor.authorize(
            AuthorizeRequest(
                idempotency_key=step.attempt.idempotency_key,
                amount=step.attempt.amount,
                currency=intent.currency,
                card_number=card_number_for(intent.payment_method),
                capture=intent.capture_method is CaptureMethod.AUTOMATIC,
                reference=str(intent.id),
            )
        )

    def _authorization_steps(
        self, jobs: Sequence[Job], outcomes: dict[uuid.UUID, Outcome]
    ) -> list[_Step]:
        """In one transaction, the attempt each job sends or asks about next; a job with
        nothing left to do (or that must wait) gets its outcome instead."""
        steps: list[_Step] = []
        with self.uow() as uow:
            wanted: dict[uuid.UUID, set[uuid.UUID]] = {}
            for job in jobs:
                wanted.setdefault(job.tenant_id, set()).add(uuid.UUID(job.payload["intent_id"]))
            intents: dict[uuid.UUID, PaymentIntent] = {}
            attempts: dict[uuid.UUID, list[PaymentAttempt]] = {}
            for tenant_id in sorted(wanted):
                intents |= uow.payments.get_intents(tenant_id, wanted[tenant_id], lock=True)
                attempts |= uow.payments.attempts_for_intents(tenant_id, wanted[tenant_id])
            now = from_micros(uow.now())
            new_attempts: list[PaymentAttempt] = []
            failed: list[PaymentIntent] = []
            for job in jobs:
                intent = intents.get(uuid.UUID(job.payload["intent_id"]))
                try:
                    step = self._next_step(
                        job, intent, attempts.get(intent.id, []) if intent else [], now
                    )
                except Reschedule as wait:
                    outcomes[job.id] = wait
                    continue
                if isinstance(step, PaymentIntent):
                    failed.append(step)
                    outcomes[job.id] = None
                elif step is None:
                    outcomes[job.id] = None
                else:
                    if not step.ask:
                        new_attempts.append(step.attempt)
                    steps.append(step)
            uow.payments.insert_attempts(new_attempts)
            if new_attempts or failed:
                uow.payments.update_intents(failed)
                for intent in failed:
                    intent_event(uow, intent, "payment_failed")
                uow.commit()
        return steps

    def _next_step(
        self,
        job: Job,
        intent: PaymentIntent | None,
        attempts: list[PaymentAttempt],
        now: datetime,
    ) -> _Step | PaymentIntent | None:
        """A job's next step; or the intent failed when no processor could take it; or None
        when nothing is left to do."""
        if (
            intent is None
            or intent.status is not IntentStatus.PROCESSING
            or intent.action is not AttemptOperation.AUTHORIZE
        ):
            return None
        attempts = [a for a in attempts if a.operation is AttemptOperation.AUTHORIZE]
        unsettled = [a for a in attempts if a.status in UNANSWERED]
        if unsettled:
            # Maybe sent by a run that died, or sent and timed out: ask, never resend.
            return _Step(job, intent, unsettled[-1], ask=True)
        this_round: list[PaymentAttempt] = []
        for a in attempts:  # the attempts since the last answer a processor gave
            this_round = (
                []
                if a.status in (AttemptStatus.APPROVED, AttemptStatus.DECLINED)
                else [*this_round, a]
            )
        tried = {a.processor for a in this_round}
        processor = self.processors.pick(exclude=tried) or self.processors.pick()
        exhausted = len(this_round) >= self.max_authorization_attempts
        if exhausted or (processor is None and now - intent.updated_at > self.give_up_after):
            return intent.moved(
                IntentStatus.FAILED,
                now,
                action=None,
                last_error=PaymentError(
                    "processor_unavailable",
                    f"no processor could take the payment ({len(this_round)} attempts)",
                ),
            )
        if processor is None:
            raise Reschedule(self.resolve_after_seconds * 5, "no processor is available")
        attempt = PaymentAttempt(
            tenant_id=intent.tenant_id,
            id=uuid.uuid4(),
            intent_id=intent.id,
            operation=AttemptOperation.AUTHORIZE,
            processor=processor.name,
            amount=intent.amount,
            status=AttemptStatus.PENDING,
            created_at=now,
        )
        return _Step(job, intent, attempt, ask=False)

    def record_authorization(
        self, tenant_id: uuid.UUID, attempt_id: uuid.UUID, result: ProcessorResult
    ) -> Next:
        """Record an authorization's answer and move the money, in one transaction."""
        return self.record_authorizations([(tenant_id, attempt_id, result)])[0]

    def record_authorizations(
        self, answers: Sequence[tuple[uuid.UUID, uuid.UUID, ProcessorResult]]
    ) -> list[Next]:
        """Record each (tenant, attempt, answer) and move the money, all in one transaction:
        the attempts and intents written with one statement each, the transfers with one
        ledger apply."""
        if not answers:
            return []
        following: list[Next] = []
        with self.uow() as uow:
            opened = self.open_attempts(uow, [(t, a) for t, a, _ in answers])
            now = from_micros(uow.now())
            recorded: list[PaymentAttempt] = []
            approved: list[tuple[PaymentIntent, PaymentAttempt]] = []
            changed: list[tuple[PaymentIntent, str]] = []
            for (_t, _a, result), found in zip(answers, opened, strict=True):
                if isinstance(found, Next):
                    following.append(found)
                    continue
                intent, attempt = found
                answer = answered(attempt, result, now)
                recorded.append(answer)
                awaiting = (
                    intent.status is IntentStatus.PROCESSING
                    and intent.action is AttemptOperation.AUTHORIZE
                )
                if result.outcome is _O.UNKNOWN:
                    following.append(Next.RESOLVE)
                    continue
                following.append(Next.RETRY if result.outcome is _O.NOT_PROCESSED else Next.DONE)
                if result.outcome is _O.NOT_PROCESSED:
                    continue
                if not awaiting:
                    # An answer for an intent no longer waiting for one: recorded, nothing moves.
                    _log.error("late authorization answer", attempt_id=str(attempt.id))
                elif result.outcome is _O.APPROVED:
                    approved.append((intent, answer))
                else:
                    changed.append((self._declined(intent, result, now), "payment_failed"))
            uow.payments.update_attempts(recorded)
            changed.extend(self._authorized(uow, approved, now))
            uow.payments.update_intents([intent for intent, _ in changed])
            for intent, event in changed:
                intent_event(uow, intent, event)
            uow.commit()
        return following

    @staticmethod
    def _declined(intent: PaymentIntent, result: ProcessorResult, now: datetime) -> PaymentIntent:
        soft = not result.do_not_retry
        return intent.moved(
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

    def _authorized(
        self,
        uow: PaymentsUnitOfWork,
        approved: Sequence[tuple[PaymentIntent, PaymentAttempt]],
        moment: datetime,
    ) -> list[tuple[PaymentIntent, str]]:
        """Hold (or, with automatic capture, move) every approved payment's money in one
        ledger apply; each intent as it is now, with the event to tell."""
        if not approved:
            return []
        for tenant_id in sorted({intent.tenant_id for intent, _ in approved}):
            uow.ledger.lock_tenant(tenant_id)
        accounts: dict[tuple[uuid.UUID, str, str], PaymentAccounts] = {}
        specs = []
        settled: list[tuple[PaymentIntent, str]] = []
        for intent, attempt in approved:
            key = (intent.tenant_id, intent.currency, attempt.processor)
            if key not in accounts:  # once per transaction (see ensure_payment_accounts)
                accounts[key] = ensure_payment_accounts(uow, *key, moment, self.known_accounts)
            lines = payment_lines(accounts[key], intent.amount, intent.currency, self.fees)
            automatic = intent.capture_method is CaptureMethod.AUTOMATIC
            transfer_id = derived_id("capture" if automatic else "hold", attempt.id)
            specs.append(
                hold_spec(
                    intent.tenant_id,
                    transfer_id,
                    lines,
                    pending=not automatic,
                    description=f"payment {intent.id} via {attempt.processor}",
                    metadata={"payment_intent": str(intent.id), "attempt": str(attempt.id)},
                )
            )
            common = {
                "action": None,
                "processor": attempt.processor,
                "authorization": attempt.reference,
                "hold_transfer_id": transfer_id,
            }
            if automatic:
                done = intent.moved(
                    IntentStatus.SUCCEEDED,
                    moment,
                    amount_received=intent.amount,
                    fee=self.fees.fee_for(intent.amount),
                    **common,
                )
                settled.append((done, "succeeded"))
            else:
                held = intent.moved(
                    IntentStatus.REQUIRES_CAPTURE, moment, amount_capturable=intent.amount, **common
                )
                settled.append((held, "requires_capture"))
        check_moved(uow.ledger.apply_transfers(specs))
        return settled
