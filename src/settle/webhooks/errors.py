"""Errors of the webhooks context: endpoints, their addresses and deliveries."""

from __future__ import annotations

from typing import ClassVar

from settle.errors import SettleError

__all__ = [
    "InvalidDeliveryTransitionError",
    "InvalidWebhookEndpointError",
    "InvalidWebhookUrlError",
    "WebhookAddressNotAllowedError",
    "WebhookDeliveryNotFoundError",
    "WebhookEndpointDisabledError",
    "WebhookEndpointNotFoundError",
    "WebhookError",
    "WebhookHostUnresolvableError",
]


class WebhookError(SettleError):
    """Base of the webhooks context's errors."""

    code: ClassVar[str] = "webhook_error"


class InvalidWebhookEndpointError(WebhookError):
    """An endpoint's fields can never be valid: an empty or malformed list of event types,
    an over-long description, metadata that is not strings."""

    code: ClassVar[str] = "invalid_webhook_endpoint"


class InvalidWebhookUrlError(WebhookError):
    """Webhooks go to absolute ``http``/``https`` URLs with a host and no user information."""

    code: ClassVar[str] = "invalid_webhook_url"


class WebhookAddressNotAllowedError(WebhookError):
    """Webhooks never go to private, loopback, link-local, unspecified, multicast or reserved
    addresses (unless the server allows private ones): a URL cannot reach the server's own
    network."""

    code: ClassVar[str] = "webhook_address_not_allowed"


class WebhookHostUnresolvableError(WebhookError):
    """The URL's host must resolve to at least one address."""

    code: ClassVar[str] = "webhook_host_unresolvable"


class WebhookEndpointNotFoundError(WebhookError):
    """No webhook endpoint with that id exists for the tenant (or it was deleted)."""

    code: ClassVar[str] = "webhook_endpoint_not_found"


class WebhookDeliveryNotFoundError(WebhookError):
    """No delivery with that id exists for the endpoint."""

    code: ClassVar[str] = "webhook_delivery_not_found"


class WebhookEndpointDisabledError(WebhookError):
    """A disabled endpoint gets no deliveries, retried ones included: enable it first."""

    code: ClassVar[str] = "webhook_endpoint_disabled"


class InvalidDeliveryTransitionError(WebhookError):
    """Delivery statuses follow a transition table: only a pending delivery is attempted."""

    code: ClassVar[str] = "invalid_delivery_transition"
