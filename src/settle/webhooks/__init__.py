"""Webhooks: tenants' endpoints, signed deliveries of their events, retries and the URL guard.

Free of storage and HTTP: the store implements :mod:`settle.webhooks.ports`, the worker sends.
"""

from settle.webhooks.address import Destination, Resolver, UrlGuard, address_kind, system_resolver
from settle.webhooks.errors import (
    InvalidDeliveryTransitionError,
    InvalidWebhookEndpointError,
    InvalidWebhookUrlError,
    WebhookAddressNotAllowedError,
    WebhookDeliveryNotFoundError,
    WebhookEndpointDisabledError,
    WebhookEndpointNotFoundError,
    WebhookError,
    WebhookHostUnresolvableError,
)
from settle.webhooks.model import (
    Attempt,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    DisabledReason,
    EndpointChanges,
    NewEndpoint,
    WebhookEndpoint,
    event_id,
    event_matches,
)
from settle.webhooks.schedule import RETRY_DELAYS_SECONDS, next_attempt_at, retry_delay
from settle.webhooks.service import (
    AttemptReport,
    create_endpoint,
    delete_endpoint,
    record_attempt,
    record_attempts,
    retry_delivery,
    rotate_secret,
    update_endpoint,
)
from settle.webhooks.signing import SigningSecret, generate_secret, sign, verify, webhook_headers

__all__ = [
    "RETRY_DELAYS_SECONDS",
    "Attempt",
    "AttemptReport",
    "AttemptResult",
    "Delivery",
    "DeliveryStatus",
    "Destination",
    "DisabledReason",
    "EndpointChanges",
    "InvalidDeliveryTransitionError",
    "InvalidWebhookEndpointError",
    "InvalidWebhookUrlError",
    "NewEndpoint",
    "Resolver",
    "SigningSecret",
    "UrlGuard",
    "WebhookAddressNotAllowedError",
    "WebhookDeliveryNotFoundError",
    "WebhookEndpoint",
    "WebhookEndpointDisabledError",
    "WebhookEndpointNotFoundError",
    "WebhookError",
    "WebhookHostUnresolvableError",
    "address_kind",
    "create_endpoint",
    "delete_endpoint",
    "event_id",
    "event_matches",
    "generate_secret",
    "next_attempt_at",
    "record_attempt",
    "record_attempts",
    "retry_delay",
    "retry_delivery",
    "rotate_secret",
    "sign",
    "system_resolver",
    "update_endpoint",
    "verify",
    "webhook_headers",
]
