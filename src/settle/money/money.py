"""Money: an integer count of minor units in one ISO 4217 currency. Never a float."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import ClassVar

from settle.errors import SettleError
from settle.money.currency import Currency

__all__ = [
    "AllocationError",
    "CurrencyMismatchError",
    "InvalidAmountError",
    "Money",
    "allocate_minor",
]

# ASCII digits only: \d also matches fullwidth and Arabic-Indic digits, which int() reads.
_DECIMAL = re.compile(r"(?P<sign>-)?(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")


class InvalidAmountError(SettleError):
    """An amount that is not an integer number of minor units (a float, too many decimals...)."""

    code: ClassVar[str] = "invalid_amount"


class CurrencyMismatchError(SettleError):
    """Arithmetic or comparison across two currencies, which has no meaning without FX."""

    code: ClassVar[str] = "currency_mismatch"


class AllocationError(SettleError):
    """Ratios that cannot split an amount (none, negative, or all zero)."""

    code: ClassVar[str] = "invalid_allocation"


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount of one currency, as an integer count of its minor units."""

    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        # bool is an int subclass, and a float amount is always a bug: refuse both.
        if type(self.minor) is not int:
            raise InvalidAmountError(
                f"amount must be an integer count of minor units, got {type(self.minor).__name__}",
                param="amount",
            )
        if not isinstance(self.currency, Currency):
            raise InvalidAmountError("currency must be a Currency", param="currency")

    @classmethod
    def of(cls, minor: int, code: str) -> Money:
        """Money from minor units and a currency code: ``Money.of(1234, "USD")`` is 12.34 USD."""
        return cls(minor, Currency.of(code))

    @classmethod
    def zero(cls, currency: Currency) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: Currency | str) -> Money:
        """Parse a decimal string such as ``"12.34"``; more decimals than the currency has fail.

        Raises:
            InvalidAmountError: not a plain decimal number, or too many decimal places.
        """
        cur = currency if isinstance(currency, Currency) else Currency.of(currency)
        match = _DECIMAL.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise InvalidAmountError(f"{text!r} is not a decimal amount", param="amount")
        frac = match["frac"] or ""
        if len(frac) > cur.exponent:
            raise InvalidAmountError(
                f"{text!r} has more than {cur.exponent} decimal places for {cur.code}",
                param="amount",
            )
        try:
            minor = int(match["int"] + frac.ljust(cur.exponent, "0"))
        except ValueError:  # more digits than int() will read from a string (4300 by default)
            raise InvalidAmountError(
                f"{text[:20]!r}... has too many digits", param="amount"
            ) from None
        return cls(-minor if match["sign"] else minor, cur)

    @classmethod
    def from_decimal(cls, value: Decimal, currency: Currency, *, rounding: str) -> Money:
        """Money from a Decimal in major units, rounded to minor units with the named rounding.

        Raises:
            InvalidAmountError: ``value`` is not a finite Decimal (a float, NaN, infinity...).
        """
        if not isinstance(value, Decimal) or not value.is_finite():
            raise InvalidAmountError(
                f"amount must be a finite Decimal, got {value!r}", param="amount"
            )
        # Precision for every digit, so that the ambient decimal context can neither round a
        # second time nor refuse a large amount: the only rounding is the one named here.
        digits = len(value.as_tuple().digits) + max(value.adjusted(), 0) + currency.exponent + 2
        context = Context(prec=digits, rounding=rounding, traps=[InvalidOperation])
        quantum = Decimal(1).scaleb(-currency.exponent)
        minor = value.quantize(quantum, context=context).scaleb(currency.exponent, context=context)
        return cls(int(minor), currency)

    def to_decimal(self) -> Decimal:
        """The exact amount in major units."""
        # Built from the digits, not with scaleb(), which rounds to the ambient context's precision.
        sign, digits, _ = Decimal(self.minor).as_tuple()
        return Decimal((sign, digits, -self.currency.exponent))

    def format(self) -> str:
        """The decimal string in major units: 1234 USD -> ``"12.34"``, 5 JPY -> ``"5"``."""
        exp = self.currency.exponent
        sign = "-" if self.minor < 0 else ""
        whole, frac = divmod(abs(self.minor), 10**exp)
        return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"

    def __str__(self) -> str:
        return f"{self.format()} {self.currency.code}"

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(
                f"cannot combine {self.currency.code} with {other.currency.code}"
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def allocate(self, ratios: list[int]) -> list[Money]:
        """Split into parts proportional to integer ``ratios``; the parts sum exactly to self."""
        return [Money(part, self.currency) for part in allocate_minor(self.minor, ratios)]


def allocate_minor(total: int, ratios: list[int]) -> list[int]:
    """Split ``total`` minor units by ``ratios`` without losing or creating a unit.

    Each part gets the floor of its exact share; the leftover units go one each to the parts with
    the largest remainders (ties to the earliest), so the result is deterministic and fair.
    """
    if type(total) is not int:
        raise InvalidAmountError(
            f"total must be an integer count of minor units, got {type(total).__name__}",
            param="amount",
        )
    if not ratios or any(type(r) is not int or r < 0 for r in ratios) or sum(ratios) == 0:
        raise AllocationError("ratios must be non-negative integers with a positive sum")
    whole = sum(ratios)
    sign = -1 if total < 0 else 1
    magnitude = abs(total)
    parts = [magnitude * r // whole for r in ratios]
    remainders = [magnitude * r % whole for r in ratios]
    leftover = magnitude - sum(parts)
    order = sorted(range(len(ratios)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        parts[i] += 1
    return [sign * p for p in parts]
