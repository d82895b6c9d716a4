"""Where a webhook may go: the URL guard against server-side request forgery.

A webhook URL is absolute ``http`` or ``https`` with a host and no user information, and every
address its host resolves to must be a public one: never private, loopback, link-local
(cloud metadata services live there), unspecified, multicast or reserved. A server may allow
private and loopback addresses (``SETTLE_WEBHOOK_ALLOW_PRIVATE=1``: a self-hosted network, the
tests). The guard runs when an endpoint is created or changed and again before every attempt,
and the attempt connects to the address that was checked, so a host that resolves elsewhere
between the check and the connection (DNS rebinding) gains nothing.

The resolver is injected: the guard itself does no I/O.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from settle.webhooks.errors import (
    InvalidWebhookUrlError,
    WebhookAddressNotAllowedError,
    WebhookHostUnresolvableError,
)

__all__ = [
    "MAX_URL_LENGTH",
    "Destination",
    "Resolver",
    "UrlGuard",
    "address_kind",
    "parse_webhook_url",
    "system_resolver",
]

MAX_URL_LENGTH = 2048

Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses`` (IPv4 or IPv6 text); raises OSError or returns nothing when
the host does not resolve."""

_SCHEMES = {"http": 80, "https": 443}
# Private by definition (RFC 1918, RFC 6598 shared space, RFC 4193 unique local); Python's own
# ``is_private`` also counts documentation and benchmarking networks, which are no one's LAN.
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_ALLOWED = frozenset({"global"})
_ALLOWED_PRIVATE = frozenset({"global", "private", "loopback"})


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the operating system's resolver, in its order, once each."""
    found: list[str] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(info[4][0])
        if address not in found:
            found.append(address)
    return found


def address_kind(address: str) -> str:
    """``global``, ``private``, ``loopback``, ``link-local``, ``unspecified``, ``multicast`` or
    ``reserved`` (anything else that is not globally reachable, and text that is no address)."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            address.partition("%")[0]  # an IPv6 zone (fe80::1%eth0) is no part of the address
        )
    except ValueError:
        return "reserved"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if any(ip.version == n.version and ip in n for n in _PRIVATE):
        return "private"
    return "global" if ip.is_global else "reserved"


def parse_webhook_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a webhook URL (host lower-case, IPv6 without brackets).

    Raises:
        InvalidWebhookUrlError: not an absolute http(s) URL with a host, or with user
            information, blanks or control characters, or longer than 2048 characters.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrlError(
            f"a webhook URL has at most {MAX_URL_LENGTH} characters", param="url"
        )
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidWebhookUrlError(
            "a webhook URL has no blanks or control characters", param="url"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidWebhookUrlError("not a URL", param="url") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidWebhookUrlError("webhook URLs are http:// or https://", param="url")
    if "@" in parts.netloc:
        raise InvalidWebhookUrlError(
            "a webhook URL may not carry a user name or password", param="url"
        )
    host = parts.hostname
    if not host:
        raise InvalidWebhookUrlError("a webhook URL needs a host", param="url")
    return scheme, host, port or _SCHEMES[scheme]


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked webhook URL and the addresses it may be delivered to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


class UrlGuard:
    """Checks webhook URLs against the address rules, resolving hosts with ``resolver``."""

    def __init__(self, resolver: Resolver = system_resolver, *, allow_private: bool = False):
        self.resolver = resolver
        self.allow_private = allow_private
        self._allowed = _ALLOWED_PRIVATE if allow_private else _ALLOWED

    def check(self, url: str) -> Destination:
        """The destination of ``url`` if every address of its host may be delivered to.

        Raises:
            InvalidWebhookUrlError: see :func:`parse_webhook_url`.
            WebhookHostUnresolvableError: the host resolves to no address.
            WebhookAddressNotAllowedError: the host resolves to an address of a refused kind.
        """
        scheme, host, port = parse_webhook_url(url)
        try:
            addresses = tuple(self.resolver(host, port))
        except (OSError, UnicodeError):
            addresses = ()
        if not addresses:
            raise WebhookHostUnresolvableError(f"{host} does not resolve", param="url")
        for address in addresses:
            kind = address_kind(address)
            if kind not in self._allowed:
                raise WebhookAddressNotAllowedError(
                    f"{host} resolves to a {kind} address; webhooks go to public addresses",
                    param="url",
                )
        return Destination(url, scheme, host, port, addresses)
