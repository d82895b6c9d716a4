"""What the webhooks context needs from storage, as protocols: the store implements them."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

from settle.ports import UnitOfWork

if TYPE_CHECKING:
    from settle.webhooks.model import Attempt, Delivery, WebhookEndpoint

__all__ = ["WebhookRepository", "WebhookUnitOfWork"]


class WebhookRepository(Protocol):
    """Endpoints, deliveries and attempts inside one unit of work (one transaction).

    Lock order, shared by every writer: the tenant's event cursor, then an endpoint, then its
    deliveries.
    """

    def lock_event_cursor(self, tenant_id: uuid.UUID) -> int:
        """Lock the tenant's fan-out cursor (creating it at the tenant's last event) and return
        the number of the tenant's last committed event: an endpoint created under this lock
        gets exactly the events after it."""
        ...

    def insert_endpoint(self, endpoint: WebhookEndpoint) -> None: ...

    def get_endpoint(
        self,
        tenant_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        lock: bool = False,
        deleted: bool = False,
    ) -> WebhookEndpoint | None:
        """The endpoint, or None if it does not exist for the tenant (or, unless ``deleted``,
        was deleted)."""
        ...

    def save_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Write every mutable field of an endpoint read under lock."""
        ...

    def cancel_pending_deliveries(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, now: int
    ) -> int:
        """Move the endpoint's pending deliveries to ``cancelled``; how many there were."""
        ...

    def get_delivery(
        self, tenant_id: uuid.UUID, delivery_id: uuid.UUID, *, lock: bool = False
    ) -> Delivery | None: ...

    def save_delivery(self, delivery: Delivery) -> None:
        """Write a delivery's status, attempt count, next attempt time and lease."""
        ...

    def insert_attempt(self, attempt: Attempt) -> None: ...


class WebhookUnitOfWork(UnitOfWork, Protocol):
    @property
    def webhooks(self) -> WebhookRepository: ...
