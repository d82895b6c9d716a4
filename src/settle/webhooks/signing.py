"""Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
``"<webhook-id>.<webhook-timestamp>.<body>"`` with the endpoint's secret, base64-encoded.

A secret is ``whsec_`` followed by the base64 of 24 random bytes; the HMAC key is those bytes.
During a rotation both the new and the previous secret sign every delivery, so a receiver that
still knows only one of them keeps verifying: ``webhook-signature: v1,<new> v1,<previous>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE_SECONDS",
    "SigningSecret",
    "generate_secret",
    "sign",
    "signature_header",
    "verify",
    "webhook_headers",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret
TOLERANCE_SECONDS = 300  # how far a timestamp may be from the receiver's clock
_SECRET_BYTES = 24


class SigningSecret:
    """An endpoint's signing secret. Its repr and str are masked; ``reveal()`` gives it."""

    __slots__ = ("_key", "_value")

    def __init__(self, value: str) -> None:
        if not value.startswith(SECRET_PREFIX):
            raise ValueError("a signing secret starts with whsec_")
        try:
            key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
        except binascii.Error:
            raise ValueError("a signing secret is whsec_ and base64") from None
        if not key:
            raise ValueError("a signing secret may not be empty")
        self._value = value
        self._key = key

    def reveal(self) -> str:
        return self._value

    def key(self) -> bytes:
        """The HMAC key: the secret's decoded bytes."""
        return self._key

    def __repr__(self) -> str:
        return "SigningSecret('whsec_…')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningSecret) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._key).digest())


def generate_secret(token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> SigningSecret:
    """A new random secret (``token_bytes`` is injectable for deterministic tests)."""
    key = token_bytes(_SECRET_BYTES)
    return SigningSecret(SECRET_PREFIX + base64.b64encode(key).decode("ascii"))


def _mac(secret: SigningSecret, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return hmac.new(secret.key(), signed, hashlib.sha256).digest()


def sign(secret: SigningSecret, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature, ``v1,<base64>``, of ``body`` (exact bytes) sent at ``timestamp`` (seconds
    since the epoch) as message ``msg_id``."""
    return "v1," + base64.b64encode(_mac(secret, msg_id, timestamp, body)).decode("ascii")


def signature_header(
    keys: Sequence[SigningSecret], msg_id: str, timestamp: int, body: bytes
) -> str:
    """The ``webhook-signature`` value: one signature per live secret, space-separated."""
    return " ".join(sign(k, msg_id, timestamp, body) for k in keys)


def webhook_headers(
    keys: Sequence[SigningSecret], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, msg_id, timestamp, body),
    }


def verify(
    secret: SigningSecret,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: int,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """Whether ``headers`` carry a valid signature of ``body`` by ``secret``, sent within
    ``tolerance`` seconds of ``now`` (seconds since the epoch). Compares in constant time."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not msg_id or not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = _mac(secret, msg_id, int(stamp), body)
    found = False
    for item in signatures.split():
        version, _, encoded = item.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        # Every candidate is compared: the time taken does not depend on which one matched.
        found = hmac.compare_digest(expected, candidate) or found
    return found
