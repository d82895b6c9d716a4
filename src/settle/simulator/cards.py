"""Test card numbers and what the simulator does with each (``docs/processor-simulator.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CARD_RULES", "CardBehaviour", "CardRule", "card_rule", "luhn_valid"]


class CardBehaviour(StrEnum):
    APPROVE = "approve"  # authorized (and captured if asked)
    DECLINE = "decline"  # 402 with a decline code; recorded as a declined authorization
    PROCESSING_ERROR = "processing_error"  # 500, nothing recorded
    TIMEOUT = "timeout"  # held for --hang-seconds, then 504; nothing recorded
    LATE_SUCCESS = "late_success"  # approved and recorded at once, answered after --late-seconds


@dataclass(frozen=True, slots=True)
class CardRule:
    behaviour: CardBehaviour
    decline_code: str | None = None
    do_not_retry: bool = False


_APPROVE = CardRule(CardBehaviour.APPROVE)

CARD_RULES: dict[str, CardRule] = {
    "4242424242424242": _APPROVE,
    "4000000000000002": CardRule(CardBehaviour.DECLINE, "card_declined", do_not_retry=False),
    "4000000000009995": CardRule(CardBehaviour.DECLINE, "insufficient_funds", do_not_retry=False),
    "4000000000000069": CardRule(CardBehaviour.DECLINE, "expired_card", do_not_retry=True),
    "4100000000000019": CardRule(CardBehaviour.DECLINE, "stolen_card", do_not_retry=True),
    "4000000000000119": CardRule(CardBehaviour.PROCESSING_ERROR),
    "4000000000003001": CardRule(CardBehaviour.TIMEOUT),
    "4000000000003019": CardRule(CardBehaviour.LATE_SUCCESS),
}


def luhn_valid(number: str) -> bool:
    """Whether a string of digits passes the Luhn check."""
    if not number.isascii() or not number.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_rule(number: str) -> CardRule | None:
    """The rule for a card number; None if it is not 16 digits passing Luhn."""
    rule = CARD_RULES.get(number)
    if rule is not None:
        return rule
    if len(number) == 16 and luhn_valid(number):
        return _APPROVE
    return None
