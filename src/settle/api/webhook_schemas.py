"""Webhook bodies: the endpoint and delivery schemas, their renderers, and the event body.

The event body is what every delivery of an event sends and signs, rendered once (by the
fan-out) and stored as bytes: ``{"id": "evt_<seq>", "object": "event", "type", "created_at",
"sequence", "data": {"object": ...}}``. ``data.object`` is the event's payload, or for a
transfer event the transfer as ``/v1/events`` renders it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from settle.api.render import dump, transfer_json
from settle.api.schemas import Metadata, Text
from settle.clock import from_micros
from settle.ledger.model import Transfer
from settle.webhooks.address import MAX_URL_LENGTH
from settle.webhooks.model import (
    EVENT_FILTER_PATTERN,
    MAX_ENABLED_EVENTS,
    MAX_EVENT_FILTER_LENGTH,
    Attempt,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    DisabledReason,
    WebhookEndpoint,
    event_id,
)
from settle.webhooks.service import DEFAULT_OVERLAP_SECONDS, MAX_OVERLAP_SECONDS

__all__ = [
    "RotateSecretCreate",
    "WebhookAttemptPublic",
    "WebhookDeliveriesPublic",
    "WebhookDeliveryPublic",
    "WebhookEndpointCreate",
    "WebhookEndpointDeletedPublic",
    "WebhookEndpointPublic",
    "WebhookEndpointUpdate",
    "WebhookEndpointWithSecretPublic",
    "WebhookEndpointsPublic",
    "delivery_json",
    "endpoint_json",
    "event_body",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        pattern=r"^[hH][tT][tT][pP][sS]?://[^\x00-\x20\x7f]+$",
        description="Where deliveries go: http or https, no user information, a public host.",
        examples=["https://example.com/webhooks/settle"],
    ),
]
EventFilters = Annotated[
    list[Annotated[str, Field(max_length=MAX_EVENT_FILTER_LENGTH, pattern=EVENT_FILTER_PATTERN)]],
    Field(
        min_length=1,
        max_length=MAX_ENABLED_EVENTS,
        description='Event types to deliver: "*" for all, a type ("account.created") or a'
        ' prefix ("payment_intent.*").',
        examples=[["*"]],
    ),
]
StrictBool = Annotated[bool, Field(strict=True)]


class WebhookEndpointCreate(_In):
    url: Url
    enabled_events: EventFilters
    description: Text = ""
    enabled: StrictBool = True
    metadata: Metadata = Field(default_factory=dict)


class WebhookEndpointUpdate(_In):
    url: Url | None = None
    enabled_events: EventFilters | None = None
    description: Text | None = None
    enabled: StrictBool | None = Field(
        None, description="Enabling a disabled endpoint clears its disabled_reason."
    )
    metadata: Metadata | None = None


class RotateSecretCreate(_In):
    expire_previous_in_seconds: Annotated[int, Field(strict=True, ge=0, le=MAX_OVERLAP_SECONDS)] = (
        Field(
            DEFAULT_OVERLAP_SECONDS,
            description="How long the current secret keeps signing too (0: stop at once).",
        )
    )


class WebhookEndpointPublic(_Out):
    id: uuid.UUID
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    enabled_events: list[str]
    description: str
    enabled: bool
    disabled_reason: DisabledReason | None = Field(
        description="manual, gone (it answered 410) or failing (five days of failures)."
    )
    metadata: dict[str, str]
    previous_secret_expires_at: datetime | None = Field(
        description="When the secret before the last rotation stops signing."
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecretPublic(WebhookEndpointPublic):
    secret: str = Field(description="The signing secret (whsec_…): shown only in this answer.")


class WebhookEndpointsPublic(_Out):
    data: list[WebhookEndpointPublic]
    has_more: bool


class WebhookEndpointDeletedPublic(_Out):
    id: uuid.UUID
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    deleted: Literal[True] = True


class WebhookAttemptPublic(_Out):
    number: int
    attempted_at: datetime
    result: AttemptResult
    status_code: int | None
    error: str | None
    duration_ms: int
    response_body: str | None = Field(description="The first 1 KiB of the answer.")


class WebhookDeliveryPublic(_Out):
    id: uuid.UUID
    object: Literal["webhook_delivery"] = "webhook_delivery"
    endpoint_id: uuid.UUID
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    attempts: list[WebhookAttemptPublic]


class WebhookDeliveriesPublic(_Out):
    data: list[WebhookDeliveryPublic]
    has_more: bool


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def endpoint_json(e: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": e.id,
        "object": "webhook_endpoint",
        "url": e.url,
        "enabled_events": list(e.enabled_events),
        "description": e.description,
        "enabled": e.enabled,
        "disabled_reason": None if e.disabled_reason is None else e.disabled_reason.value,
        "metadata": dict(e.metadata),
        "previous_secret_expires_at": _moment(e.previous_secret_expires_at),
        "created_at": from_micros(e.created_at),
        "updated_at": from_micros(e.updated_at),
    }
    if with_secret:
        body["secret"] = e.secret.reveal()
    return body


def _attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "number": a.number,
        "attempted_at": from_micros(a.attempted_at),
        "result": a.result.value,
        "status_code": a.status_code,
        "error": a.error,
        "duration_ms": a.duration_us // 1000,
        "response_body": a.response_body,
    }


def delivery_json(d: Delivery, attempts: Sequence[Attempt]) -> dict[str, Any]:
    return {
        "id": d.id,
        "object": "webhook_delivery",
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status.value,
        "attempt_count": d.attempts,
        "next_attempt_at": _moment(d.next_attempt_at),
        "created_at": from_micros(d.created_at),
        "updated_at": from_micros(d.updated_at),
        "attempts": [_attempt_json(a) for a in attempts],
    }


def event_body(
    seq: int,
    event_type: str,
    created_at: int,
    payload: Mapping[str, Any] | None,
    transfer: Transfer | None,
) -> bytes:
    """The exact bytes every delivery of the event sends. ``sequence`` orders one object's
    events: the payload's own ``sequence`` (a per-object version) if it has one, else the
    tenant's event number."""
    sequence = payload.get("sequence") if payload is not None else None
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        sequence = seq
    data = transfer_json(transfer) if transfer is not None else payload
    return dump(
        {
            "id": event_id(seq),
            "object": "event",
            "type": event_type,
            "created_at": from_micros(created_at),
            "sequence": sequence,
            "data": {"object": data},
        }
    )
