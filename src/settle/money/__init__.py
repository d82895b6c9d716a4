"""Money and currencies: integer minor units, ISO 4217, no floats."""

from settle.money.currency import Currency, UnknownCurrencyError
from settle.money.money import (
    AllocationError,
    CurrencyMismatchError,
    InvalidAmountError,
    Money,
    allocate_minor,
)

__all__ = [
    "AllocationError",
    "Currency",
    "CurrencyMismatchError",
    "InvalidAmountError",
    "Money",
    "UnknownCurrencyError",
    "allocate_minor",
]
