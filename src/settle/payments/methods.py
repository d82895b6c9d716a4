"""Payment methods Settle accepts before the card vault exists: test tokens and test cards.

A real card number never enters Settle here; the card vault will issue tokens for those. The
test tokens name the processor simulator's documented test cards (docs/processor-simulator.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from settle.payments.errors import InvalidPaymentMethodError

__all__ = ["TEST_CARDS", "card_number_for", "last4", "payment_method_token"]

TEST_CARDS: Mapping[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_insufficientFunds": "4000000000009995",
    "pm_card_expired": "4000000000000069",
    "pm_card_stolen": "4100000000000019",
    "pm_card_processingError": "4000000000000119",
    "pm_card_timeout": "4000000000003001",
    "pm_card_lateSuccess": "4000000000003019",
}
_BY_NUMBER = {number: token for token, number in TEST_CARDS.items()}


def payment_method_token(value: str, *, live: bool) -> str:
    """The token to store for what a client sent: a test token, or a test card's number (the
    number only with a test key; it is stored as its token, never as a number)."""
    if value in TEST_CARDS:
        token = value
    elif value in _BY_NUMBER:
        token = _BY_NUMBER[value]
    else:
        raise InvalidPaymentMethodError(
            "payment_method must be a test token (pm_card_visa, …) or a test card number",
            param="payment_method",
        )
    if live:
        raise InvalidPaymentMethodError(
            "test payment methods are refused with a live key", param="payment_method"
        )
    return token


def card_number_for(token: str) -> str:
    """What the processor is sent for a stored token."""
    return TEST_CARDS[token]


def last4(token: str) -> str:
    return TEST_CARDS[token][-4:]
