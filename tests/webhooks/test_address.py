"""The URL guard, with an injected resolver: public addresses only (private and loopback when
allowed), http(s) only, no user information."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from settle.webhooks.address import UrlGuard, address_kind, parse_webhook_url
from settle.webhooks.errors import (
    InvalidWebhookUrlError,
    WebhookAddressNotAllowedError,
    WebhookHostUnresolvableError,
)

PUBLIC = "93.184.215.14"
USERINFO = "a webhook URL may not carry a user name or password"


def resolving_to(*addresses: str) -> UrlGuard:
    return UrlGuard(lambda _host, _port: list(addresses))


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        (PUBLIC, "global"),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", "global"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not to bind
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "reserved"),
        ("198.18.0.1", "reserved"),
        ("not-an-address", "reserved"),
    ],
)
def test_every_address_has_a_kind(address: str, kind: str) -> None:
    assert address_kind(address) == kind


def test_a_public_host_passes_with_the_addresses_it_resolves_to() -> None:
    asked: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> Sequence[str]:
        asked.append((host, port))
        return [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]

    guard = UrlGuard(resolver)
    checked = guard.check("https://Hooks.Example.com/settle?x=1")
    assert (checked.scheme, checked.host, checked.port) == ("https", "hooks.example.com", 443)
    assert checked.addresses == (PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    assert checked.url == "https://Hooks.Example.com/settle?x=1"
    guard.check("http://hooks.example.com:8080/")
    guard.check("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/")
    assert asked == [
        ("hooks.example.com", 443),
        ("hooks.example.com", 8080),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", 80),
    ]


@pytest.mark.parametrize(
    "address",
    ["10.0.0.7", "127.0.0.1", "::1", "169.254.169.254", "0.0.0.0", "224.0.0.1",  # noqa: S104
     "240.0.0.1", "::ffff:127.0.0.1"],
)  # fmt: skip
def test_a_host_resolving_to_a_refused_address_is_refused(address: str) -> None:
    with pytest.raises(WebhookAddressNotAllowedError) as refused:
        resolving_to(address).check("https://hooks.example.com/")
    assert refused.value.param == "url"
    assert refused.value.detail.startswith(
        f"hooks.example.com resolves to a {address_kind(address)}"
    )


def test_one_refused_address_among_public_ones_refuses_the_host() -> None:
    with pytest.raises(WebhookAddressNotAllowedError, match="link-local"):
        resolving_to(PUBLIC, "169.254.169.254").check("https://hooks.example.com/")


def test_allowing_private_addresses_allows_private_and_loopback_only() -> None:
    for address in ("10.0.0.7", "192.168.0.2", "127.0.0.1", "::1", PUBLIC):
        UrlGuard(lambda _h, _p, a=address: [a], allow_private=True).check("http://svc.local/")
    for address in ("169.254.169.254", "0.0.0.0", "224.0.0.1", "240.0.0.1"):  # noqa: S104
        guard = UrlGuard(lambda _h, _p, a=address: [a], allow_private=True)
        with pytest.raises(WebhookAddressNotAllowedError):
            guard.check("http://svc.local/")


def test_a_host_that_does_not_resolve_is_refused() -> None:
    def fails(host: str, port: int) -> Sequence[str]:
        raise OSError("Name or service not known")

    for guard in (UrlGuard(fails), resolving_to()):
        with pytest.raises(WebhookHostUnresolvableError) as refused:
            guard.check("https://nowhere.example/")
        assert refused.value.detail == "nowhere.example does not resolve"


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("ftp://hooks.example.com/", "webhook URLs are http:// or https://"),
        ("hooks.example.com/path", "webhook URLs are http:// or https://"),
        ("https://user:secret@hooks.example.com/", USERINFO),
        ("https://@hooks.example.com/", USERINFO),
        ("https:///path", "a webhook URL needs a host"),
        ("https://hooks.example.com:99999/", "not a URL"),
        ("https://hooks.example.com/a b", "a webhook URL has no blanks or control characters"),
        ("https://hooks.example.com/\n", "a webhook URL has no blanks or control characters"),
        ("https://hooks.example.com/" + "a" * 2030, "a webhook URL has at most 2048 characters"),
    ],
)  # fmt: skip
def test_malformed_urls_are_refused_before_any_lookup(url: str, detail: str) -> None:
    def never(host: str, port: int) -> Sequence[str]:
        raise AssertionError("no lookup for a malformed URL")

    with pytest.raises(InvalidWebhookUrlError) as refused:
        UrlGuard(never).check(url)
    assert (refused.value.detail, refused.value.param) == (detail, "url")


def test_parsing_keeps_the_default_ports() -> None:
    assert parse_webhook_url("HTTP://Example.COM") == ("http", "example.com", 80)
    assert parse_webhook_url("https://example.com:8443/x") == ("https", "example.com", 8443)
