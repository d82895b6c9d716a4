"""Webhook endpoints, deliveries and their attempts, as immutable values.

An endpoint is a tenant's URL with the event types it wants and its signing secrets. Every
event committed after the endpoint was created that it wants becomes one delivery; each try to
send it is an attempt. Times are integer microseconds since the epoch.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from settle.webhooks.errors import InvalidDeliveryTransitionError, InvalidWebhookEndpointError

if TYPE_CHECKING:
    from settle.webhooks.signing import SigningSecret

__all__ = [
    "EVENT_FILTER_PATTERN",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_ENABLED_EVENTS",
    "MAX_EVENT_FILTER_LENGTH",
    "Attempt",
    "AttemptResult",
    "Delivery",
    "DeliveryStatus",
    "DisabledReason",
    "EndpointChanges",
    "NewEndpoint",
    "WebhookEndpoint",
    "event_id",
    "event_matches",
    "validate_enabled_events",
]

# "*", an event type ("account.created") or every type under a prefix ("payment_intent.*").
EVENT_FILTER_PATTERN = r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$"
_EVENT_FILTER = re.compile(EVENT_FILTER_PATTERN.replace("$", r"\Z"))
MAX_ENABLED_EVENTS = 100
MAX_EVENT_FILTER_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 1000


def event_id(seq: int) -> str:
    """The id of the tenant's event number ``seq``, as ``/v1/events`` and deliveries name it."""
    return f"evt_{seq}"


def validate_enabled_events(values: Sequence[str]) -> tuple[str, ...]:
    """The event filters, each once, in the order given.

    Raises:
        InvalidWebhookEndpointError: no filter, too many, or one that is no event type,
            ``*`` or ``prefix.*``.
    """
    if isinstance(values, str) or not values or len(values) > MAX_ENABLED_EVENTS:
        raise InvalidWebhookEndpointError(
            f"enabled_events lists 1 to {MAX_ENABLED_EVENTS} event types", param="enabled_events"
        )
    out: list[str] = []
    for i, value in enumerate(values):
        if (
            not isinstance(value, str)
            or len(value) > MAX_EVENT_FILTER_LENGTH
            or not _EVENT_FILTER.match(value)
        ):
            raise InvalidWebhookEndpointError(
                "an event filter is *, an event type such as account.created, or a prefix"
                " such as payment_intent.*",
                param=f"enabled_events[{i}]",
            )
        if value not in out:
            out.append(value)
    return tuple(out)


def event_matches(filters: Sequence[str], event_type: str) -> bool:
    """Whether an event of ``event_type`` is one the filters ask for."""
    for f in filters:
        if f == "*" or f == event_type or (f.endswith(".*") and event_type.startswith(f[:-1])):
            return True
    return False


class DisabledReason(StrEnum):
    """Why an endpoint gets no deliveries."""

    MANUAL = "manual"  # its owner disabled it
    GONE = "gone"  # it answered 410 Gone: it asked for no more
    FAILING = "failing"  # its deliveries kept failing for five days


class DeliveryStatus(StrEnum):
    """Where one event's delivery to one endpoint stands."""

    PENDING = "pending"  # an attempt is due at next_attempt_at (the first, a retry or a replay)
    SUCCEEDED = "succeeded"  # the endpoint answered 2xx: the receiver has the event
    FAILED = "failed"  # every scheduled attempt failed (or the endpoint answered 410 Gone)
    CANCELLED = "cancelled"  # the endpoint was disabled or deleted before it succeeded

    def check_transition(self, target: DeliveryStatus) -> None:
        """Raise unless a delivery may move from this status to ``target``."""
        if target not in _TRANSITIONS[self]:
            raise InvalidDeliveryTransitionError(
                f"a delivery cannot go from {self.value} to {target.value}", param="status"
            )


_S = DeliveryStatus
_TRANSITIONS: Mapping[DeliveryStatus, frozenset[DeliveryStatus]] = {
    # An attempt's outcome, or the endpoint going away; pending -> pending is a retry scheduled.
    _S.PENDING: frozenset({_S.PENDING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
    # A manual retry: the same event sent again (a replay).
    _S.SUCCEEDED: frozenset({_S.PENDING}),
    _S.FAILED: frozenset({_S.PENDING}),
    _S.CANCELLED: frozenset({_S.PENDING}),
}


class AttemptResult(StrEnum):
    """What one attempt came to."""

    SUCCEEDED = "succeeded"  # a 2xx answer
    HTTP_ERROR = "http_error"  # any other answer (3xx included: redirects are not followed)
    TIMEOUT = "timeout"  # no complete answer within the timeout
    NETWORK_ERROR = "network_error"  # no connection, TLS failure, connection dropped
    REFUSED = "refused"  # the URL guard refused the address: nothing was sent


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A tenant's webhook endpoint and its signing secrets.

    ``start_after_seq`` is the tenant's last event number when the endpoint was created: it
    gets only the events after it. ``failing_since`` is the first failed attempt since its last
    success (None while it succeeds).
    """

    tenant_id: uuid.UUID
    id: uuid.UUID
    url: str
    enabled_events: tuple[str, ...]
    description: str
    enabled: bool
    disabled_reason: DisabledReason | None
    metadata: Mapping[str, str]
    secret: SigningSecret
    previous_secret: SigningSecret | None
    previous_secret_expires_at: int | None
    start_after_seq: int
    failing_since: int | None
    created_at: int
    updated_at: int
    deleted_at: int | None = None

    def wants(self, event_type: str, seq: int) -> bool:
        """Whether the event ``seq`` of ``event_type`` is to be delivered here."""
        return (
            self.enabled
            and self.deleted_at is None
            and seq > self.start_after_seq
            and event_matches(self.enabled_events, event_type)
        )

    def live_secrets(self, now: int) -> tuple[SigningSecret, ...]:
        """The secrets that sign a delivery at ``now``: the current one, then the previous one
        while its overlap lasts."""
        previous = self.previous_secret
        expires = self.previous_secret_expires_at
        if previous is not None and expires is not None and now < expires:
            return (self.secret, previous)
        return (self.secret,)

    @property
    def active(self) -> bool:
        """Whether it gets deliveries: enabled and not deleted."""
        return self.enabled and self.deleted_at is None


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    """What creating an endpoint takes."""

    tenant_id: uuid.UUID
    url: str
    enabled_events: Sequence[str]
    description: str = ""
    enabled: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    """What updating an endpoint may change (None: unchanged)."""

    url: str | None = None
    enabled_events: Sequence[str] | None = None
    description: str | None = None
    enabled: bool | None = None
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one endpoint.

    ``lease_owner`` names the worker that claimed the due attempt; while it holds the lease,
    ``next_attempt_at`` is when the lease runs out (and the attempt is due again).
    """

    tenant_id: uuid.UUID
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_seq: int
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: int | None
    lease_owner: str | None
    created_at: int
    updated_at: int

    @property
    def event_id(self) -> str:
        return event_id(self.event_seq)

    def moved_to(
        self,
        status: DeliveryStatus,
        *,
        now: int,
        next_attempt_at: int | None,
        attempts: int | None = None,
    ) -> Delivery:
        """The delivery in ``status`` (checked against the transition table), with no lease."""
        self.status.check_transition(status)
        return replace(
            self,
            status=status,
            next_attempt_at=next_attempt_at,
            attempts=self.attempts if attempts is None else attempts,
            lease_owner=None,
            updated_at=now,
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try to send a delivery: when, what came back and how long it took.

    ``response_body`` holds at most the first 1 KiB of the answer (decoded as UTF-8, bad bytes
    replaced); ``error`` says what went wrong when no answer (or a refused address) came back.
    """

    tenant_id: uuid.UUID
    delivery_id: uuid.UUID
    number: int
    attempted_at: int
    result: AttemptResult
    status_code: int | None
    error: str | None
    duration_us: int
    response_body: str | None
