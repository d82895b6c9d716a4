"""What payments need from storage, as protocols (the store implements them)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from settle.ledger.ports import LedgerUnitOfWork

if TYPE_CHECKING:
    from settle.jobs.model import JobQueue
    from settle.payments.model import PaymentAttempt, PaymentIntent, Refund

__all__ = ["PaymentsRepository", "PaymentsUnitOfWork"]


class PaymentsRepository(Protocol):
    """Intents, attempts and refunds inside one unit of work. ``update_*`` writes the object
    whose ``version`` is one more than the stored row's (it fails loudly otherwise)."""

    def insert_intent(self, intent: PaymentIntent) -> None: ...

    def get_intent(
        self, tenant_id: uuid.UUID, intent_id: uuid.UUID, *, lock: bool = False
    ) -> PaymentIntent | None: ...

    def update_intent(self, intent: PaymentIntent) -> None: ...

    def get_intents(
        self, tenant_id: uuid.UUID, intent_ids: Collection[uuid.UUID], *, lock: bool = False
    ) -> dict[uuid.UUID, PaymentIntent]: ...

    def update_intents(self, intents: Sequence[PaymentIntent]) -> None: ...

    def insert_attempt(self, attempt: PaymentAttempt) -> None: ...

    def update_attempt(self, attempt: PaymentAttempt) -> None: ...

    def get_attempt(self, tenant_id: uuid.UUID, attempt_id: uuid.UUID) -> PaymentAttempt | None: ...

    def attempts_for(self, tenant_id: uuid.UUID, intent_id: uuid.UUID) -> list[PaymentAttempt]: ...

    def insert_attempts(self, attempts: Sequence[PaymentAttempt]) -> None: ...

    def update_attempts(self, attempts: Sequence[PaymentAttempt]) -> None: ...

    def get_attempts(
        self, tenant_id: uuid.UUID, attempt_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, PaymentAttempt]: ...

    def attempts_for_intents(
        self, tenant_id: uuid.UUID, intent_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, list[PaymentAttempt]]: ...

    def insert_refund(self, refund: Refund) -> None: ...

    def get_refund(
        self, tenant_id: uuid.UUID, refund_id: uuid.UUID, *, lock: bool = False
    ) -> Refund | None: ...

    def update_refund(self, refund: Refund) -> None: ...

    def refunds_for(self, tenant_id: uuid.UUID, intent_id: uuid.UUID) -> list[Refund]: ...


class PaymentsUnitOfWork(LedgerUnitOfWork, Protocol):
    @property
    def payments(self) -> PaymentsRepository: ...

    @property
    def jobs(self) -> JobQueue: ...
