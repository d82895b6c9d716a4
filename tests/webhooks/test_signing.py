"""Signatures are Standard Webhooks: the reference library verifies ours, over exact bytes,
with every live secret; our own verifier agrees and compares in constant time."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from settle.webhooks.signing import (
    SigningSecret,
    generate_secret,
    sign,
    signature_header,
    verify,
    webhook_headers,
)

BODY = b'{"id":"evt_7","object":"event","type":"account.created","data":{"object":{"n":1}}}'


def test_a_secret_is_whsec_and_24_random_bytes_and_never_prints_itself() -> None:
    secret = generate_secret(lambda n: bytes(range(n)))
    assert secret.reveal() == "whsec_" + base64.b64encode(bytes(range(24))).decode()
    assert secret.key() == bytes(range(24))
    assert repr(secret) == str(secret) == "SigningSecret('whsec_…')"
    assert f"{secret}" == "SigningSecret('whsec_…')"
    assert len(base64.b64decode(generate_secret().reveal().removeprefix("whsec_"))) == 24
    assert generate_secret() != generate_secret()
    assert SigningSecret(secret.reveal()) == secret
    for bad in ("sk_test_abc", "whsec_", "whsec_not base64!"):
        with pytest.raises(ValueError, match="secret"):
            SigningSecret(bad)


def test_the_reference_library_verifies_a_signature_over_the_exact_bytes() -> None:
    secret = generate_secret()
    now = int(time.time())
    headers = webhook_headers([secret], "evt_7", now, BODY)
    assert Webhook(secret.reveal()).verify(BODY, headers)["type"] == "account.created"
    assert verify(secret, BODY, headers, now=now) is True

    tampered = BODY.replace(b'"n":1', b'"n":2')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret.reveal()).verify(tampered, headers)
    assert verify(secret, tampered, headers, now=now) is False
    assert verify(secret, BODY, {**headers, "webhook-id": "evt_8"}, now=now) is False
    assert verify(generate_secret(), BODY, headers, now=now) is False


def test_our_signature_is_the_reference_librarys() -> None:
    secret = generate_secret(lambda n: b"\x01" * n)
    moment = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    expected = Webhook(secret.reveal()).sign("evt_7", moment, BODY.decode())
    assert sign(secret, "evt_7", int(moment.timestamp()), BODY) == expected


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    new, old = generate_secret(), generate_secret()
    now = int(time.time())
    headers = webhook_headers([new, old], "evt_9", now, BODY)
    first, second = headers["webhook-signature"].split(" ")
    assert (first, second) == (sign(new, "evt_9", now, BODY), sign(old, "evt_9", now, BODY))
    for secret in (new, old):
        assert Webhook(secret.reveal()).verify(BODY, headers)["id"] == "evt_7"
        assert verify(secret, BODY, headers, now=now) is True
    assert signature_header([new], "evt_9", now, BODY) == first


def test_a_stale_or_future_timestamp_does_not_verify() -> None:
    secret = generate_secret()
    now = 1_796_000_000
    headers = webhook_headers([secret], "evt_1", now, BODY)
    assert verify(secret, BODY, headers, now=now + 300) is True
    assert verify(secret, BODY, headers, now=now + 301) is False
    assert verify(secret, BODY, headers, now=now - 301) is False
    assert verify(secret, BODY, {**headers, "webhook-timestamp": "soon"}, now=now) is False
    garbled = {**headers, "webhook-signature": "v1,@@@ v2,abc " + headers["webhook-signature"]}
    assert verify(secret, BODY, garbled, now=now) is True  # unknown versions are skipped
    assert verify(secret, BODY, {k: v for k, v in headers.items() if k != "webhook-id"},
                  now=now) is False  # fmt: skip
