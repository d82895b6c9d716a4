"""The worker's side of payments: job handlers and processors' notifications.

See :mod:`settle.payments.settling` for how every step records the processor's answer once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from settle.payments.authorizations import Authorizations, Outcome
from settle.payments.follow_ups import FollowUps
from settle.payments.model import (
    UNANSWERED,
    AttemptOperation,
    parse_processor_key,
)
from settle.payments.processors import (
    ProcessorOutcome,
    ProcessorResult,
)
from settle.payments.refund_processing import Refunds
from settle.payments.service import (
    JOB_AUTHORIZE,
    JOB_CAPTURE,
    JOB_REFUND,
    JOB_VOID,
)
from settle.payments.settling import ProcessorUnavailableError

if TYPE_CHECKING:
    from settle.jobs.model import Job
    from settle.payments.fees import FeeSchedule
    from settle.payments.ports import PaymentsUnitOfWork
    from settle.payments.processors import ProcessorDirectory

_O = ProcessorOutcome

__all__ = ["PaymentProcessing", "ProcessorUnavailableError"]


class PaymentProcessing:
    """Job handlers and notification intake for payments.

    Args:
        uow: makes a unit of work (one per transaction).
        processors: the configured processors, in order of preference.
        fees: the platform fee taken at capture.
        max_authorization_attempts: processor calls that did nothing, per confirmation,
            before the intent fails with ``processor_unavailable``.
        resolve_after_seconds: how soon an unknown outcome is asked about.
        give_up_after_seconds: how long an intent waits for any processor to be available.
    """

    def __init__(
        self,
        uow: Callable[[], PaymentsUnitOfWork],
        processors: ProcessorDirectory,
        fees: FeeSchedule,
        *,
        max_authorization_attempts: int = 3,
        resolve_after_seconds: float = 1.0,
        give_up_after_seconds: float = 900.0,
    ) -> None:
        shared = {"resolve_after_seconds": resolve_after_seconds}
        self.authorizations = Authorizations(
            uow,
            processors,
            fees,
            max_attempts=max_authorization_attempts,
            give_up_after_seconds=give_up_after_seconds,
            resolve_after_seconds=resolve_after_seconds,
        )
        self.follow_ups = FollowUps(uow, processors, fees, **shared)
        self.refunds = Refunds(uow, processors, fees, **shared)
        self.uow = uow

    def handlers(self) -> dict[str, Callable[[Job], None]]:
        return {
            JOB_AUTHORIZE: self.authorizations.authorize,
            JOB_CAPTURE: self.follow_ups.capture,
            JOB_VOID: self.follow_ups.void,
            JOB_REFUND: self.refunds.refund,
        }

    def batch_handlers(self) -> dict[str, Callable[[Sequence[Job]], Mapping[uuid.UUID, Outcome]]]:
        """Handlers of kinds whose jobs run best together (see :class:`Authorizations`)."""
        return {JOB_AUTHORIZE: self.authorizations.authorize_jobs}

    def close(self) -> None:
        self.authorizations.close()

    def apply_notification(
        self, processor: str, idempotency_key: str, result: ProcessorResult
    ) -> bool:
        """Settle what a processor's (verified) notification reports; False if it names
        nothing of ours that still awaits an answer."""
        named = parse_processor_key(idempotency_key)
        if named is None or result.outcome not in (_O.APPROVED, _O.DECLINED):
            return False
        kind, tenant_id, object_id = named
        if kind == "refund":
            with self.uow() as uow:
                refund = uow.payments.get_refund(tenant_id, object_id)
            if refund is None or refund.processor != processor:
                return False
            return self.refunds.record_refund(tenant_id, object_id, result)
        with self.uow() as uow:
            attempt = uow.payments.get_attempt(tenant_id, object_id)
        if attempt is None or attempt.processor != processor or attempt.status not in UNANSWERED:
            return False
        if attempt.operation is AttemptOperation.AUTHORIZE:
            self.authorizations.record_authorization(tenant_id, object_id, result)
        else:
            self.follow_ups.record_follow_up(tenant_id, object_id, result)
        return True
