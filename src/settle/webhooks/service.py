"""Webhook use cases: endpoints, secret rotation, retries, and recording an attempt.

Each function is one use case and one transaction (``with uow: ... uow.commit()``). URLs are
checked by :class:`~settle.webhooks.address.UrlGuard` before the transaction starts (a DNS
lookup never runs under a lock): the functions that take a URL take its checked
:class:`~settle.webhooks.address.Destination`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from settle.webhooks.errors import (
    InvalidWebhookEndpointError,
    WebhookDeliveryNotFoundError,
    WebhookEndpointDisabledError,
    WebhookEndpointNotFoundError,
)
from settle.webhooks.model import (
    MAX_DESCRIPTION_LENGTH,
    Attempt,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    DisabledReason,
    EndpointChanges,
    NewEndpoint,
    WebhookEndpoint,
    validate_enabled_events,
)
from settle.webhooks.schedule import Rng, failing_too_long, next_attempt_at
from settle.webhooks.signing import SigningSecret, generate_secret

if TYPE_CHECKING:
    from settle.webhooks.address import Destination
    from settle.webhooks.ports import WebhookRepository, WebhookUnitOfWork

__all__ = [
    "DEFAULT_OVERLAP_SECONDS",
    "MAX_OVERLAP_SECONDS",
    "AttemptReport",
    "create_endpoint",
    "delete_endpoint",
    "record_attempt",
    "record_attempts",
    "retry_delivery",
    "rotate_secret",
    "update_endpoint",
]

DEFAULT_OVERLAP_SECONDS = 86_400
MAX_OVERLAP_SECONDS = 7 * 86_400
_MICROS = 1_000_000
_GONE = 410


def _description(value: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_LENGTH or "\x00" in value:
        raise InvalidWebhookEndpointError(
            f"a description is text of at most {MAX_DESCRIPTION_LENGTH} characters",
            param="description",
        )
    return value


def _metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise InvalidWebhookEndpointError(
            "metadata keys and values must be strings", param="metadata"
        )
    return dict(metadata)


def _checked(url: str, destination: Destination | None) -> str:
    if destination is None or destination.url != url:
        raise ValueError("a webhook URL must be checked by the UrlGuard first")
    return url


def _found(endpoint: WebhookEndpoint | None, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    if endpoint is None:
        raise WebhookEndpointNotFoundError(
            f"webhook endpoint {endpoint_id} not found", param="endpoint_id"
        )
    return endpoint


def create_endpoint(
    uow: WebhookUnitOfWork,
    cmd: NewEndpoint,
    destination: Destination,
    *,
    new_secret: Callable[[], SigningSecret] = generate_secret,
) -> WebhookEndpoint:
    """Create an endpoint with a new signing secret; it gets the events committed after it.

    Raises:
        InvalidWebhookEndpointError: malformed event filters, description or metadata.
    """
    enabled_events = validate_enabled_events(cmd.enabled_events)
    description = _description(cmd.description)
    metadata = _metadata(cmd.metadata)
    url = _checked(cmd.url, destination)
    with uow:
        now = uow.now()
        last_seq = uow.webhooks.lock_event_cursor(cmd.tenant_id)
        endpoint = WebhookEndpoint(
            tenant_id=cmd.tenant_id,
            id=uuid.uuid4(),
            url=url,
            enabled_events=enabled_events,
            description=description,
            enabled=bool(cmd.enabled),
            disabled_reason=None if cmd.enabled else DisabledReason.MANUAL,
            metadata=metadata,
            secret=new_secret(),
            previous_secret=None,
            previous_secret_expires_at=None,
            start_after_seq=last_seq,
            failing_since=None,
            created_at=now,
            updated_at=now,
        )
        uow.webhooks.insert_endpoint(endpoint)
        uow.commit()
    return endpoint


def update_endpoint(
    uow: WebhookUnitOfWork,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    changes: EndpointChanges,
    destination: Destination | None = None,
) -> WebhookEndpoint:
    """Change an endpoint. Disabling it cancels its pending deliveries; enabling it again
    clears why it was disabled and its failure clock.

    Raises:
        WebhookEndpointNotFoundError: no such endpoint for the tenant.
        InvalidWebhookEndpointError: malformed event filters, description or metadata.
    """
    url = None if changes.url is None else _checked(changes.url, destination)
    events = None
    if changes.enabled_events is not None:
        events = validate_enabled_events(changes.enabled_events)
    description = None if changes.description is None else _description(changes.description)
    metadata = None if changes.metadata is None else _metadata(changes.metadata)
    with uow:
        now = uow.now()
        e = _found(uow.webhooks.get_endpoint(tenant_id, endpoint_id, lock=True), endpoint_id)
        updated = replace(
            e,
            url=e.url if url is None else url,
            enabled_events=e.enabled_events if events is None else events,
            description=e.description if description is None else description,
            metadata=e.metadata if metadata is None else metadata,
            updated_at=now,
        )
        if changes.enabled is True and not e.enabled:
            updated = replace(updated, enabled=True, disabled_reason=None, failing_since=None)
        elif changes.enabled is False and e.enabled:
            updated = replace(updated, enabled=False, disabled_reason=DisabledReason.MANUAL)
            uow.webhooks.cancel_pending_deliveries(tenant_id, endpoint_id, now)
        uow.webhooks.save_endpoint(updated)
        uow.commit()
    return updated


def delete_endpoint(
    uow: WebhookUnitOfWork, tenant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """Delete an endpoint: it gets no more deliveries, and its pending ones are cancelled.

    Raises:
        WebhookEndpointNotFoundError: no such endpoint for the tenant (or deleted already).
    """
    with uow:
        now = uow.now()
        e = _found(uow.webhooks.get_endpoint(tenant_id, endpoint_id, lock=True), endpoint_id)
        deleted = replace(e, deleted_at=now, updated_at=now)
        uow.webhooks.cancel_pending_deliveries(tenant_id, endpoint_id, now)
        uow.webhooks.save_endpoint(deleted)
        uow.commit()
    return deleted


def rotate_secret(
    uow: WebhookUnitOfWork,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    expire_previous_in_seconds: int = DEFAULT_OVERLAP_SECONDS,
    new_secret: Callable[[], SigningSecret] = generate_secret,
) -> WebhookEndpoint:
    """Give an endpoint a new secret. The current one keeps signing too (as a second
    signature) for ``expire_previous_in_seconds``; a secret older than that is dropped.

    Raises:
        InvalidWebhookEndpointError: an overlap outside 0 to 7 days.
        WebhookEndpointNotFoundError: no such endpoint for the tenant.
    """
    overlap = expire_previous_in_seconds
    if type(overlap) is not int or not 0 <= overlap <= MAX_OVERLAP_SECONDS:
        raise InvalidWebhookEndpointError(
            f"expire_previous_in_seconds is 0 to {MAX_OVERLAP_SECONDS}",
            param="expire_previous_in_seconds",
        )
    with uow:
        now = uow.now()
        e = _found(uow.webhooks.get_endpoint(tenant_id, endpoint_id, lock=True), endpoint_id)
        rotated = replace(
            e,
            secret=new_secret(),
            previous_secret=e.secret if overlap else None,
            previous_secret_expires_at=now + overlap * _MICROS if overlap else None,
            updated_at=now,
        )
        uow.webhooks.save_endpoint(rotated)
        uow.commit()
    return rotated


def retry_delivery(
    uow: WebhookUnitOfWork,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> Delivery:
    """Schedule an attempt of a delivery now, whatever its status: a succeeded one is sent
    again (a replay), a failed or cancelled one gets one more attempt.

    Raises:
        WebhookEndpointNotFoundError: no such endpoint for the tenant.
        WebhookDeliveryNotFoundError: no such delivery for the endpoint.
        WebhookEndpointDisabledError: the endpoint is disabled.
    """
    with uow:
        now = uow.now()
        e = _found(uow.webhooks.get_endpoint(tenant_id, endpoint_id, lock=True), endpoint_id)
        d = uow.webhooks.get_delivery(tenant_id, delivery_id, lock=True)
        if d is None or d.endpoint_id != endpoint_id:
            raise WebhookDeliveryNotFoundError(
                f"delivery {delivery_id} not found for endpoint {endpoint_id}",
                param="delivery_id",
            )
        if not e.enabled:
            raise WebhookEndpointDisabledError(
                f"webhook endpoint {endpoint_id} is disabled: enable it to retry deliveries",
                param="endpoint_id",
            )
        retried = d.moved_to(DeliveryStatus.PENDING, now=now, next_attempt_at=now)
        uow.webhooks.save_delivery(retried)
        uow.commit()
    return retried


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """What a deliverer saw when it tried to send a delivery it had claimed."""

    tenant_id: uuid.UUID
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    lease_owner: str
    attempted_at: int
    result: AttemptResult
    status_code: int | None = None
    error: str | None = None
    duration_us: int = 0
    response_body: str | None = None


def _after_attempt(
    repo: WebhookRepository, endpoint: WebhookEndpoint | None, report: AttemptReport, now: int
) -> tuple[bool, bool]:
    """Move the endpoint's failure clock (disabling it on 410 or five days of failures);
    whether the endpoint still takes deliveries, and whether this attempt disabled it."""
    if endpoint is None or endpoint.deleted_at is not None:
        return False, False
    if report.result is AttemptResult.SUCCEEDED:
        if endpoint.failing_since is not None:
            repo.save_endpoint(replace(endpoint, failing_since=None))
        return endpoint.enabled, False
    failing = replace(endpoint, failing_since=endpoint.failing_since or report.attempted_at)
    reason = None
    if endpoint.enabled and report.status_code == _GONE:
        reason = DisabledReason.GONE
    elif endpoint.enabled and failing_too_long(failing.failing_since, now):
        reason = DisabledReason.FAILING
    if reason is not None:
        failing = replace(failing, enabled=False, disabled_reason=reason, updated_at=now)
        repo.cancel_pending_deliveries(endpoint.tenant_id, endpoint.id, now)
    if failing != endpoint:
        repo.save_endpoint(failing)
    return failing.enabled, reason is not None


def record_attempt(uow: WebhookUnitOfWork, report: AttemptReport, *, rng: Rng) -> Delivery:
    """Record an attempt and what follows from it, in one transaction.

    A 2xx answer succeeds the delivery and stops the endpoint's failure clock. Any other
    outcome schedules the next attempt (see :mod:`settle.webhooks.schedule`) or, after the
    last one, fails the delivery; a 410 Gone, or five days of failures, disables the endpoint
    and cancels its pending deliveries. A deliverer that lost its lease meanwhile (a manual
    retry, or the lease ran out and another worker claimed the delivery) only adds its
    attempt: the delivery's state belongs to whoever holds it now.

    Raises:
        WebhookDeliveryNotFoundError: no such delivery.
    """
    return record_attempts(uow, [report], rng=rng)[0]


def record_attempts(
    uow: WebhookUnitOfWork, reports: Sequence[AttemptReport], *, rng: Rng
) -> list[Delivery]:
    """:func:`record_attempt` for each of ``reports``, all in one transaction; the deliveries
    after, in the order of ``reports``. Endpoints are locked in key order, so two recorders
    never deadlock; one endpoint's attempts are recorded in the order reported.

    Raises:
        WebhookDeliveryNotFoundError: some delivery does not exist (nothing is recorded).
    """
    order = sorted(
        range(len(reports)),
        key=lambda i: (reports[i].tenant_id, reports[i].endpoint_id),
    )
    after: list[Delivery | None] = [None] * len(reports)
    with uow:
        now = uow.now()
        for i in order:
            after[i] = _record_one(uow.webhooks, reports[i], now, rng)
        uow.commit()
    return [d for d in after if d is not None]


def _record_one(repo: WebhookRepository, report: AttemptReport, now: int, rng: Rng) -> Delivery:
    endpoint = repo.get_endpoint(report.tenant_id, report.endpoint_id, lock=True, deleted=True)
    d = repo.get_delivery(report.tenant_id, report.delivery_id, lock=True)
    if d is None:
        raise WebhookDeliveryNotFoundError(
            f"delivery {report.delivery_id} not found", param="delivery_id"
        )
    number = d.attempts + 1
    repo.insert_attempt(
        Attempt(
            tenant_id=d.tenant_id,
            delivery_id=d.id,
            number=number,
            attempted_at=report.attempted_at,
            result=report.result,
            status_code=report.status_code,
            error=report.error,
            duration_us=report.duration_us,
            response_body=report.response_body,
        )
    )
    active, disabled_now = _after_attempt(repo, endpoint, report, now)
    S = DeliveryStatus  # noqa: N806 - the enum, briefly
    owner = d.status is S.PENDING and d.lease_owner == report.lease_owner
    if owner and report.result is AttemptResult.SUCCEEDED:
        after = d.moved_to(S.SUCCEEDED, now=now, next_attempt_at=None, attempts=number)
    elif owner and disabled_now:
        after = d.moved_to(S.FAILED, now=now, next_attempt_at=None, attempts=number)
    elif d.status is S.PENDING and not active:
        after = d.moved_to(S.CANCELLED, now=now, next_attempt_at=None, attempts=number)
    elif not owner:
        after = replace(d, attempts=number, updated_at=now)
    else:
        due = next_attempt_at(number, now, rng)
        status = S.FAILED if due is None else S.PENDING
        after = d.moved_to(status, now=now, next_attempt_at=due, attempts=number)
    repo.save_delivery(after)
    return after
