"""What the worker's payment steps share: the processor's answer, recorded once.

Every job runs in steps: (1) a transaction that decides what to send and records the attempt
before anything leaves; (2) the processor call, outside any transaction; (3) a transaction that
records the answer and moves the money. A worker dying between the steps leaves a ``pending``
attempt; the next run asks the processor about it instead of sending again. An attempt whose
outcome is unknown is only ever resolved by asking (a lookup), never by a second authorization.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

from settle.jobs.model import Reschedule
from settle.payments.accounts import KnownAccounts
from settle.payments.model import (
    UNANSWERED,
    AttemptStatus,
    PaymentAttempt,
    PaymentIntent,
)
from settle.payments.processors import (
    ProcessorOutcome,
    ProcessorResult,
)

if TYPE_CHECKING:
    from settle.payments.fees import FeeSchedule
    from settle.payments.ports import PaymentsUnitOfWork
    from settle.payments.processors import Processor, ProcessorDirectory

_O = ProcessorOutcome

__all__ = ["Next", "ProcessorUnavailableError", "Settler", "answered"]

_ATTEMPT_STATUS = {
    _O.APPROVED: AttemptStatus.APPROVED,
    _O.DECLINED: AttemptStatus.DECLINED,
    _O.NOT_PROCESSED: AttemptStatus.NOT_PROCESSED,
    _O.UNKNOWN: AttemptStatus.UNKNOWN,
}


class ProcessorUnavailableError(Exception):
    """The processor certainly did nothing this time: the job is retried with backoff."""


class Next(Enum):
    DONE = "done"  # settled (or nothing left to do)
    RETRY = "retry"  # not processed: a new attempt may go out
    RESOLVE = "resolve"  # unknown: ask the processor later


class Settler:
    """The dependencies of a payment step, and what every step does alike."""

    def __init__(
        self,
        uow: Callable[[], PaymentsUnitOfWork],
        processors: ProcessorDirectory,
        fees: FeeSchedule,
        *,
        resolve_after_seconds: float,
    ) -> None:
        self.uow = uow
        self.processors = processors
        self.fees = fees
        self.resolve_after_seconds = resolve_after_seconds
        self.known_accounts = KnownAccounts()

    def ask(self, processor: Processor, key: str) -> ProcessorResult:
        """The final answer to the request sent with ``key``, as far as the processor knows."""
        found = processor.lookup(key)
        if found.pending:
            raise Reschedule(self.resolve_after_seconds, "the processor is still working on it")
        if found.found and found.result is not None:
            return found.result
        if found.found:  # the lookup itself failed: the outcome is still unknown
            return ProcessorResult(_O.UNKNOWN, processor.name, detail="lookup failed")
        return ProcessorResult(_O.NOT_PROCESSED, processor.name, detail="never received")

    def open_attempt(
        self, uow: PaymentsUnitOfWork, tenant_id: uuid.UUID, attempt_id: uuid.UUID
    ) -> tuple[PaymentIntent, PaymentAttempt] | Next:
        """The attempt (and its intent, locked first) if it still awaits an answer."""
        return self.open_attempts(uow, [(tenant_id, attempt_id)])[0]

    def open_attempts(
        self, uow: PaymentsUnitOfWork, keys: Sequence[tuple[uuid.UUID, uuid.UUID]]
    ) -> list[tuple[PaymentIntent, PaymentAttempt] | Next]:
        """:meth:`open_attempt` for each (tenant, attempt) of ``keys``: three statements a
        tenant, the intents locked in (tenant, id) order."""
        intents: dict[uuid.UUID, PaymentIntent] = {}
        attempts: dict[uuid.UUID, PaymentAttempt] = {}
        by_tenant: dict[uuid.UUID, set[uuid.UUID]] = {}
        for tenant_id, attempt_id in keys:
            by_tenant.setdefault(tenant_id, set()).add(attempt_id)
        for tenant_id in sorted(by_tenant):
            ids = by_tenant[tenant_id]
            seen = uow.payments.get_attempts(tenant_id, ids)
            intents |= uow.payments.get_intents(
                tenant_id, {a.intent_id for a in seen.values()}, lock=True
            )
            attempts |= uow.payments.get_attempts(tenant_id, ids)  # re-read under the locks
        opened: list[tuple[PaymentIntent, PaymentAttempt] | Next] = []
        for _tenant_id, attempt_id in keys:
            attempt = attempts.get(attempt_id)
            intent = None if attempt is None else intents.get(attempt.intent_id)
            if intent is None or attempt is None:
                opened.append(Next.DONE)
            elif attempt.status not in UNANSWERED:
                # Answered already (by a notification, or a run that died after recording).
                opened.append(
                    Next.RETRY if attempt.status is AttemptStatus.NOT_PROCESSED else Next.DONE
                )
            else:
                opened.append((intent, attempt))
        return opened


def answered(attempt: PaymentAttempt, result: ProcessorResult, now: datetime) -> PaymentAttempt:
    """``attempt`` with the processor's answer recorded."""
    status = _ATTEMPT_STATUS[result.outcome]
    final = status is not AttemptStatus.UNKNOWN
    return replace(
        attempt,
        status=status,
        reference=result.reference or attempt.reference,
        decline_code=result.decline_code,
        do_not_retry=result.do_not_retry,
        latency_us=result.latency_us or attempt.latency_us,
        completed_at=now if final else None,
    )
