"""Money and currencies: integer minor units, refusing floats, mixed currencies and bad strings."""

from __future__ import annotations

import dataclasses
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
    localcontext,
)
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settle.money import (
    AllocationError,
    Currency,
    CurrencyMismatchError,
    InvalidAmountError,
    Money,
    UnknownCurrencyError,
    allocate_minor,
)

JPY = Currency.of("JPY")
USD = Currency.of("USD")
EUR = Currency.of("EUR")
BHD = Currency.of("BHD")

ROUNDINGS = [ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_DOWN, ROUND_UP, ROUND_FLOOR, ROUND_CEILING]

currencies = st.sampled_from([JPY, USD, BHD])
money = st.builds(Money, st.integers(), currencies)
ratio_lists = st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12).filter(
    any
)


# ---- currencies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent", "name"),
    [
        ("JPY", 0, "Yen"),
        ("USD", 2, "US Dollar"),
        ("BHD", 3, "Bahraini Dinar"),
        ("KWD", 3, "Kuwaiti Dinar"),
    ],
)
def test_currency_exponent_comes_from_iso_4217(code: str, exponent: int, name: str) -> None:
    assert Currency.of(code) == Currency(code=code, exponent=exponent, name=name)


def test_currency_prints_as_its_code() -> None:
    assert str(USD) == "USD"
    assert repr(USD) == "Currency('USD')"


@pytest.mark.parametrize(
    "code",
    [
        "usd",  # ISO codes are upper case; we do not guess
        "Usd",
        "US",
        "USDD",
        "",
        " USD",
        "ÜSD",
        "ABC",  # not assigned
        "XAU",  # gold: no minor unit
        "XDR",  # special drawing right: no minor unit
        "XXX",  # "no currency"
        "XTS",  # reserved for testing
        840,  # the numeric code is not accepted
        None,
    ],
)
def test_unknown_or_unit_less_currency_is_refused(code: object) -> None:
    with pytest.raises(UnknownCurrencyError) as excinfo:
        Currency.of(code)  # type: ignore[arg-type]
    assert excinfo.value.code == "unknown_currency"
    assert excinfo.value.param == "currency"


# ---- constructing money -------------------------------------------------------------------


def test_twelve_dollars_thirty_four_is_1234_cents() -> None:
    amount = Money.of(1234, "USD")
    assert amount == Money(1234, USD)
    assert amount.minor == 1234
    assert amount.currency is USD
    assert str(amount) == "12.34 USD"


def test_zero_is_zero_minor_units() -> None:
    assert Money.zero(BHD) == Money(0, BHD)
    assert Money.zero(BHD).format() == "0.000"


@pytest.mark.parametrize(
    "minor",
    [12.34, 1.0, float("nan"), True, False, Decimal("1234"), Decimal("12.34"), "1234", None],
)
def test_money_refuses_anything_but_an_int_of_minor_units(minor: object) -> None:
    with pytest.raises(InvalidAmountError, match="integer count of minor units") as excinfo:
        Money(minor, USD)  # type: ignore[arg-type]
    assert excinfo.value.code == "invalid_amount"
    assert excinfo.value.param == "amount"


def test_money_refuses_a_currency_code_in_place_of_a_currency() -> None:
    with pytest.raises(InvalidAmountError) as excinfo:
        Money(1234, "USD")  # type: ignore[arg-type]
    assert excinfo.value.param == "currency"


def test_money_is_frozen_and_slotted() -> None:
    amount = Money(1234, USD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        amount.minor = 1  # type: ignore[misc]
    assert not hasattr(amount, "__dict__")
    assert amount == Money(1234, USD)


# ---- arithmetic and comparisons -----------------------------------------------------------


def test_adding_and_subtracting_dollars() -> None:
    assert Money(1234, USD) + Money(66, USD) == Money(1300, USD)
    assert Money(1234, USD) - Money(2000, USD) == Money(-766, USD)
    assert -Money(1234, USD) == Money(-1234, USD)


def test_comparing_dollars() -> None:
    small, large = Money(999, USD), Money(1000, USD)
    assert small < large
    assert small <= large
    assert large > small
    assert large >= small
    assert small <= Money(999, USD)
    assert small >= Money(999, USD)


@pytest.mark.parametrize(
    "operation",
    [
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a < b,
        lambda a, b: a <= b,
        lambda a, b: a > b,
        lambda a, b: a >= b,
    ],
    ids=["add", "sub", "lt", "le", "gt", "ge"],
)
def test_dollars_and_euros_do_not_mix(operation: object) -> None:
    with pytest.raises(CurrencyMismatchError, match="cannot combine USD with EUR") as excinfo:
        operation(Money(100, USD), Money(100, EUR))  # type: ignore[operator]
    assert excinfo.value.code == "currency_mismatch"


def test_dollars_never_equal_euros() -> None:
    assert Money(100, USD) != Money(100, EUR)
    assert Money(0, USD) != Money(0, EUR)


def test_money_does_not_combine_with_a_bare_number() -> None:
    with pytest.raises(TypeError, match="cannot combine Money with int"):
        Money(100, USD) + 1  # type: ignore[operator]
    with pytest.raises(TypeError, match="cannot combine Money with int"):
        Money(100, USD) < 1  # type: ignore[operator]  # noqa: B015


@given(st.integers(), st.integers(), currencies)
def test_arithmetic_and_order_follow_the_minor_units(a: int, b: int, currency: Currency) -> None:
    x, y = Money(a, currency), Money(b, currency)
    assert (x + y).minor == a + b
    assert (x - y).minor == a - b
    assert (x + y) - y == x
    assert (x < y, x <= y, x > y, x >= y, x == y) == (a < b, a <= b, a > b, a >= b, a == b)


@given(money, money)
def test_mixed_currencies_always_refuse(x: Money, y: Money) -> None:
    if x.currency == y.currency:
        assert (x + y).minor == x.minor + y.minor
        return
    for operation in (Money.__add__, Money.__sub__, Money.__lt__, Money.__ge__):
        with pytest.raises(CurrencyMismatchError):
            operation(x, y)


# ---- parsing and formatting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", USD, 1234),
        ("12.3", USD, 1230),
        ("12", USD, 1200),
        ("0.01", USD, 1),
        ("0", USD, 0),
        ("-0", USD, 0),
        ("-12.34", USD, -1234),
        ("-0.05", USD, -5),
        ("007.50", USD, 750),
        (" 12.34\n", USD, 1234),  # surrounding whitespace is tolerated
        ("5", JPY, 5),
        ("-5", JPY, -5),
        ("1.234", BHD, 1234),
        ("0.005", BHD, 5),
        ("1.2", BHD, 1200),
        ("92233720368547758.07", USD, 2**63 - 1),
    ],
)
def test_parse_reads_major_units(text: str, currency: Currency, minor: int) -> None:
    assert Money.parse(text, currency) == Money(minor, currency)


def test_parse_accepts_a_currency_code() -> None:
    assert Money.parse("12.34", "USD") == Money(1234, USD)


def test_parse_refuses_an_unknown_currency_code() -> None:
    with pytest.raises(UnknownCurrencyError):
        Money.parse("12.34", "usd")


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("12.345", USD),  # a tenth of a cent
        ("12.340", USD),  # even a trailing zero is a third decimal place
        ("5.0", JPY),  # yen have no decimal places at all
        ("5.00", JPY),
        ("1.2345", BHD),
    ],
)
def test_parse_refuses_more_decimals_than_the_currency_has(text: str, currency: Currency) -> None:
    with pytest.raises(InvalidAmountError, match="decimal places") as excinfo:
        Money.parse(text, currency)
    assert excinfo.value.code == "invalid_amount"
    assert excinfo.value.param == "amount"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "12,34",
        "1,234.56",
        "12.34 USD",
        "$12.34",
        "1e3",
        "+5",
        ".5",
        "5.",
        "--5",
        "- 5",
        "12.34.5",
        "0x10",
        "1_000",
        "NaN",
        "Infinity",
        "\uff11\uff12.\uff13\uff14",  # fullwidth digits
        "\u0661\u0662.\u0663\u0664",  # Arabic-Indic digits
        "1" * 5000,  # beyond what int() reads from a string
        12,
        12.34,
        Decimal("12.34"),
        None,
    ],
)
def test_parse_refuses_garbage(text: object) -> None:
    with pytest.raises(InvalidAmountError) as excinfo:
        Money.parse(text, USD)  # type: ignore[arg-type]
    assert excinfo.value.code == "invalid_amount"
    assert excinfo.value.param == "amount"


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Money(1234, USD), "12.34"),
        (Money(5, USD), "0.05"),
        (Money(-5, USD), "-0.05"),
        (Money(0, USD), "0.00"),
        (Money(-1234, USD), "-12.34"),
        (Money(5, JPY), "5"),
        (Money(-5, JPY), "-5"),
        (Money(1234, BHD), "1.234"),
        (Money(-5, BHD), "-0.005"),
    ],
)
def test_format_writes_every_decimal_place(amount: Money, text: str) -> None:
    assert amount.format() == text


@given(money)
def test_format_then_parse_is_the_identity(amount: Money) -> None:
    text = amount.format()
    assert Money.parse(text, amount.currency) == amount
    assert Money.parse(text, amount.currency.code) == amount
    decimals = text.partition(".")[2]
    assert len(decimals) == amount.currency.exponent


@given(money)
def test_one_decimal_place_too_many_is_refused(amount: Money) -> None:
    text = amount.format()
    too_precise = f"{text}0" if amount.currency.exponent else f"{text}.0"
    with pytest.raises(InvalidAmountError):
        Money.parse(too_precise, amount.currency)


# ---- decimals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "rounding", "minor"),
    [
        ("0.125", USD, ROUND_HALF_EVEN, 12),  # half to the even cent
        ("0.125", USD, ROUND_HALF_UP, 13),  # half away from zero
        ("0.135", USD, ROUND_HALF_EVEN, 14),
        ("0.135", USD, ROUND_HALF_UP, 14),
        ("-0.125", USD, ROUND_HALF_EVEN, -12),
        ("-0.125", USD, ROUND_HALF_UP, -13),
        ("0.129", USD, ROUND_DOWN, 12),
        ("0.121", USD, ROUND_UP, 13),
        ("-0.121", USD, ROUND_FLOOR, -13),
        ("-0.129", USD, ROUND_CEILING, -12),
        ("2.5", JPY, ROUND_HALF_EVEN, 2),
        ("2.5", JPY, ROUND_HALF_UP, 3),
        ("3.5", JPY, ROUND_HALF_EVEN, 4),
        ("1.2345", BHD, ROUND_HALF_EVEN, 1234),
        ("1.2345", BHD, ROUND_HALF_UP, 1235),
        ("12.34", USD, ROUND_UP, 1234),  # exact amounts are never rounded
        ("1E+30", USD, ROUND_HALF_EVEN, 10**32),
    ],
)
def test_from_decimal_rounds_as_named(
    value: str, currency: Currency, rounding: str, minor: int
) -> None:
    assert Money.from_decimal(Decimal(value), currency, rounding=rounding) == Money(minor, currency)


def test_from_decimal_has_no_default_rounding() -> None:
    # Every rounding is named by the caller: there is no silent default.
    with pytest.raises(TypeError):
        Money.from_decimal(Decimal("0.125"), USD)  # type: ignore[call-arg]


def test_decimal_conversions_ignore_the_ambient_context() -> None:
    with localcontext() as context:
        context.prec = 3
        context.rounding = ROUND_DOWN
        assert Money.from_decimal(Decimal("123456.785"), USD, rounding=ROUND_HALF_UP) == Money(
            12345679, USD
        )
        assert Money.from_decimal(
            Decimal("0.00499999999999999999999999999999999"), USD, rounding=ROUND_HALF_UP
        ) == Money(0, USD)
        assert str(Money(10**30 + 1, USD).to_decimal()) == "10000000000000000000000000000.01"


@pytest.mark.parametrize(
    "value",
    [0.125, 1, True, "0.125", Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), None],
    ids=["float", "int", "bool", "str", "nan", "snan", "infinity", "none"],
)
def test_from_decimal_refuses_floats_and_non_finite_values(value: object) -> None:
    with pytest.raises(InvalidAmountError, match="finite Decimal") as excinfo:
        Money.from_decimal(value, USD, rounding=ROUND_HALF_EVEN)  # type: ignore[arg-type]
    assert excinfo.value.code == "invalid_amount"


@pytest.mark.parametrize(
    ("amount", "value"),
    [
        (Money(1234, USD), "12.34"),
        (Money(-5, USD), "-0.05"),
        (Money(0, USD), "0.00"),
        (Money(5, JPY), "5"),
        (Money(1234, BHD), "1.234"),
    ],
)
def test_to_decimal_is_exact(amount: Money, value: str) -> None:
    assert amount.to_decimal() == Decimal(value)
    assert str(amount.to_decimal()) == value


@given(money, st.sampled_from(ROUNDINGS))
def test_a_whole_number_of_minor_units_survives_any_rounding(amount: Money, rounding: str) -> None:
    assert Money.from_decimal(amount.to_decimal(), amount.currency, rounding=rounding) == amount


# ---- allocation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "ratios", "parts"),
    [
        (100, [1, 1, 1], [34, 33, 33]),  # the odd cent goes to the first
        (-100, [1, 1, 1], [-34, -33, -33]),  # a refund splits the same way
        (5, [1, 1, 1], [2, 2, 1]),
        (1, [1, 1], [1, 0]),
        (100, [1, 2], [33, 67]),  # the largest remainder wins, not the first
        (1000, [70, 20, 10], [700, 200, 100]),
        (5, [0, 1], [0, 5]),
        (0, [1, 1], [0, 0]),
        (7, [3], [7]),
    ],
)
def test_allocation_splits_without_losing_a_cent(
    total: int, ratios: list[int], parts: list[int]
) -> None:
    assert allocate_minor(total, ratios) == parts
    assert Money(total, USD).allocate(ratios) == [Money(p, USD) for p in parts]


@pytest.mark.parametrize(
    "ratios",
    [[], [-1, 2], [0], [0, 0], [1.5, 1], [True, 1], ["1", "1"]],
)
def test_allocation_refuses_ratios_that_cannot_split(ratios: list[int]) -> None:
    with pytest.raises(AllocationError) as excinfo:
        Money(100, USD).allocate(ratios)
    assert excinfo.value.code == "invalid_allocation"


@pytest.mark.parametrize("total", [100.0, Decimal("100"), True])
def test_allocation_refuses_a_total_that_is_not_minor_units(total: object) -> None:
    with pytest.raises(InvalidAmountError) as excinfo:
        allocate_minor(total, [1, 1])  # type: ignore[arg-type]
    assert excinfo.value.code == "invalid_amount"


@given(st.integers(min_value=-(10**15), max_value=10**15), ratio_lists)
def test_allocation_sums_exactly_and_is_fair(total: int, ratios: list[int]) -> None:
    parts = allocate_minor(total, ratios)
    assert sum(parts) == total
    assert len(parts) == len(ratios)
    whole = sum(ratios)
    for part, ratio in zip(parts, ratios, strict=True):
        assert abs(part - Fraction(total * ratio, whole)) < 1
        if ratio == 0:
            assert part == 0
    assert allocate_minor(total, ratios) == parts
    assert allocate_minor(-total, ratios) == [-p for p in parts]


@given(money, ratio_lists)
def test_allocated_money_keeps_its_currency(amount: Money, ratios: list[int]) -> None:
    parts = amount.allocate(ratios)
    assert {p.currency for p in parts} == {amount.currency}
    assert sum(p.minor for p in parts) == amount.minor
