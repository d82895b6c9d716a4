"""ISO 4217 currencies, from the maintained ``iso4217`` data package (not a hand-typed table)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import iso4217

from settle.errors import SettleError

__all__ = ["Currency", "UnknownCurrencyError"]


class UnknownCurrencyError(SettleError):
    """A currency code that is not an active ISO 4217 code in upper case."""

    code: ClassVar[str] = "unknown_currency"


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency: its alphabetic code and exponent (minor-unit digits)."""

    code: str
    exponent: int
    name: str

    @staticmethod
    def of(code: str) -> Currency:
        """The currency for an upper-case ISO 4217 code such as ``"USD"``.

        Raises:
            UnknownCurrencyError: the code is not a current ISO 4217 code with minor units.
        """
        return _currency(code)

    @staticmethod
    def codes() -> tuple[str, ...]:
        """Every code :meth:`of` accepts, sorted."""
        return _codes()

    def __str__(self) -> str:
        return self.code

    def __repr__(self) -> str:
        return f"Currency({self.code!r})"


@cache
def _currency(code: str) -> Currency:
    if not isinstance(code, str) or len(code) != 3 or not code.isascii() or not code.isupper():
        raise UnknownCurrencyError(f"{code!r} is not an ISO 4217 currency code", param="currency")
    try:
        data = iso4217.Currency(code)
    except ValueError:
        raise UnknownCurrencyError(
            f"{code!r} is not an ISO 4217 currency code", param="currency"
        ) from None
    exponent = data.exponent
    if exponent is None:
        # Funds and metals (XAU, XDR...) have no minor unit: they cannot be held in minor units.
        raise UnknownCurrencyError(f"{code} has no minor unit in ISO 4217", param="currency")
    return Currency(code=data.code, exponent=int(exponent), name=str(data.currency_name))


@cache
def _codes() -> tuple[str, ...]:
    return tuple(sorted(c.code for c in iso4217.Currency if c.exponent is not None))
