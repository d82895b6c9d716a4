"""API key material: generation, the stored hash, and a value that cannot print itself.

A key is ``sk_<mode>_<32 base62 characters>`` (about 190 bits of randomness). Only its SHA-256
is stored: the key is high-entropy, so a fast hash is as strong as a slow one here and keeps
the lookup a single indexed equality. The first characters (``sk_test_AbCd1234``) are kept in
the clear so that an operator can tell keys apart without seeing one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from enum import StrEnum

__all__ = [
    "KEY_PATTERN",
    "PREFIX_LENGTH",
    "KeyMode",
    "SecretKey",
    "generate_secret_key",
    "hash_secret_key",
    "same_digest",
]

_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 32
# \Z, not $: "$" also matches before a trailing newline.
KEY_PATTERN = re.compile(r"^sk_(test|live)_[A-Za-z0-9]{32}\Z")
# "sk_test_" plus eight characters of the secret: enough to tell keys apart, far too few to guess.
PREFIX_LENGTH = 16


class KeyMode(StrEnum):
    """Test keys and live keys look different, so a live key is never pasted by mistake."""

    TEST = "test"
    LIVE = "live"


class SecretKey:
    """An API key in the clear. Its repr and str are masked; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def prefix(self) -> str:
        return self._value[:PREFIX_LENGTH]

    def digest(self) -> bytes:
        return hash_secret_key(self._value)

    def __repr__(self) -> str:
        return f"SecretKey('{self.prefix}…')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretKey) and same_digest(self.digest(), other.digest())

    def __hash__(self) -> int:
        return hash(self.digest())


def generate_secret_key(mode: KeyMode = KeyMode.TEST) -> SecretKey:
    """A new random key of the given mode."""
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))
    return SecretKey(f"sk_{KeyMode(mode).value}_{secret}")


def hash_secret_key(value: str) -> bytes:
    """The stored form of a key."""
    return hashlib.sha256(value.encode()).digest()


def same_digest(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(a, b)
