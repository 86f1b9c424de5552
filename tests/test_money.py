"""Money arithmetic: minor units, one rounding rule, exact invoice totals, exact storage."""

from __future__ import annotations

import contextlib
import pickle
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

import peewee
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.billing.money import (
    CURRENCIES,
    MAX_MINOR,
    CurrencyError,
    DecimalTextField,
    ExactRatio,
    MinorUnitsField,
    MoneyError,
    check_currency,
    exponent,
    format_money,
    invoice_totals,
    line_amount,
    parse_decimal,
    tax_amount,
    tiered_unit_price,
    to_decimal,
    to_minor,
)

D = Decimal

# Currencies with 0, 2 and 3 minor-unit digits.
CURRENCY_SAMPLE = ["JPY", "KRW", "CLP", "ISK", "EUR", "USD", "GBP", "BHD", "KWD", "TND", "OMR"]

currencies = st.sampled_from(CURRENCY_SAMPLE)
quantities = st.decimals(
    min_value=D("-1000"), max_value=D("1000000"), places=4, allow_nan=False, allow_infinity=False
)
unit_prices = st.decimals(
    min_value=D("-1000"), max_value=D("100000"), places=6, allow_nan=False, allow_infinity=False
)
tax_rates = st.decimals(
    min_value=D("0"), max_value=D("100"), places=3, allow_nan=False, allow_infinity=False
)
minor_amounts = st.integers(min_value=-(10**15), max_value=10**15)


def oracle_round(exact: Decimal, currency: str) -> int:
    """Independent reference: decimal's own ROUND_HALF_UP at the currency's exponent."""
    with localcontext() as ctx:
        ctx.prec = 200
        quantum = D(1).scaleb(-CURRENCIES[currency])
        return int(exact.quantize(quantum, rounding=ROUND_HALF_UP).scaleb(CURRENCIES[currency]))


def exact_product(*factors: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 200
        result = D(1)
        for factor in factors:
            result *= factor
        return result


# --------------------------------------------------------------------------- currencies


def test_currency_list_covers_zero_two_and_three_decimal_currencies():
    assert len(CURRENCIES) >= 150
    for code in ["JPY", "KRW", "CLP", "ISK", "VND", "XOF", "XAF", "PYG", "UGX"]:
        assert CURRENCIES[code] == 0, code
    for code in ["BHD", "KWD", "OMR", "JOD", "TND", "IQD", "LYD"]:
        assert CURRENCIES[code] == 3, code
    for code in ["EUR", "USD", "GBP", "CHF", "CAD", "AUD", "CNY", "INR", "BRL", "ZAR"]:
        assert CURRENCIES[code] == 2, code
    assert CURRENCIES["CLF"] == 4
    assert CURRENCIES["UYW"] == 4


def test_every_currency_code_is_three_upper_case_letters_with_a_sane_exponent():
    for code, exp in CURRENCIES.items():
        assert len(code) == 3 and code.isascii() and code.isalpha() and code.isupper(), code
        assert exp in (0, 2, 3, 4), code


def test_currency_without_minor_unit_like_gold_is_not_billable():
    for code in ["XAU", "XAG", "XDR", "XXX", "XTS"]:
        assert code not in CURRENCIES


def test_lower_case_currency_is_accepted_and_upper_cased():
    assert check_currency("eur") == "EUR"
    assert check_currency(" jpy ") == "JPY"
    assert exponent("bhd") == 3


def test_unknown_currency_is_refused_naming_the_field():
    with pytest.raises(CurrencyError) as caught:
        check_currency("XYZ", field="invoice_currency")
    assert str(caught.value) == "unknown currency 'XYZ'"
    assert caught.value.field == "invoice_currency"
    assert isinstance(caught.value, MoneyError)
    assert isinstance(caught.value, ValueError)


def test_unknown_currency_in_a_conversion_names_the_currency_field():
    with pytest.raises(CurrencyError) as caught:
        to_minor("1.00", "ABC")
    assert caught.value.field == "currency"
    assert "ABC" in str(caught.value)


@pytest.mark.parametrize("bad", [None, 978, b"EUR", "EURO", "EU", "", ["EUR"]])
def test_malformed_currency_is_refused(bad):
    with pytest.raises(CurrencyError) as caught:
        check_currency(bad)
    assert caught.value.field == "currency"
    assert "currency" in str(caught.value)


# --------------------------------------------------------------------------- to_minor / to_decimal


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (D("12.345"), "EUR", 1235),
        (D("12.344"), "EUR", 1234),
        ("12.34", "EUR", 1234),
        (12, "EUR", 1200),
        (D("1234.5"), "JPY", 1235),
        (D("1234.4"), "JPY", 1234),
        (D("1.2345"), "BHD", 1235),
        (D("1.2344"), "BHD", 1234),
        (D("0"), "EUR", 0),
        (D("-0.00"), "EUR", 0),
        ("  7.1  ", "USD", 710),
        (".5", "EUR", 50),
        ("+3", "EUR", 300),
        (D("1.00005"), "CLF", 10001),
    ],
)
def test_major_units_convert_to_minor_units(amount, currency, minor):
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        # ROUND_HALF_UP in Python's decimal means ties go AWAY FROM ZERO, on both sides,
        # so a credit note for -0.005 EUR mirrors an invoice for 0.005 EUR exactly.
        (D("0.005"), "EUR", 1),
        (D("-0.005"), "EUR", -1),
        (D("0.015"), "EUR", 2),
        (D("-0.015"), "EUR", -2),
        (D("2.5"), "JPY", 3),
        (D("-2.5"), "JPY", -3),
        (D("0.0005"), "KWD", 1),
        (D("-0.0005"), "KWD", -1),
        (D("0.0049999"), "EUR", 0),
        (D("-0.0049999"), "EUR", 0),
    ],
)
def test_half_a_minor_unit_rounds_away_from_zero(amount, currency, minor):
    assert to_minor(amount, currency) == minor


@given(minor=st.integers(min_value=0, max_value=10**15), currency=currencies)
def test_every_exact_tie_rounds_up_in_magnitude_for_positive_and_negative_amounts(minor, currency):
    exp = CURRENCIES[currency]
    tie = (D(minor) + D("0.5")).scaleb(-exp)
    assert to_minor(tie, currency) == minor + 1
    assert to_minor(-tie, currency) == -(minor + 1)


@given(
    amount=st.decimals(min_value=-(10**12), max_value=10**12, places=8, allow_nan=False),
    currency=currencies,
)
def test_rounding_is_symmetric_and_matches_decimal_round_half_up(amount, currency):
    assert to_minor(-amount, currency) == -to_minor(amount, currency)
    assert to_minor(amount, currency) == oracle_round(amount, currency)


@given(minor=st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR), currency=currencies)
@example(minor=MAX_MINOR, currency="EUR")
@example(minor=-MAX_MINOR, currency="BHD")
def test_minor_units_round_trip_through_decimal_exactly(minor, currency):
    value = to_decimal(minor, currency)
    assert isinstance(value, Decimal)
    assert value.as_tuple().exponent == -CURRENCIES[currency]
    assert to_minor(value, currency) == minor
    assert to_minor(str(value), currency) == minor


@given(
    amount=st.decimals(min_value=-(10**15), max_value=10**15, places=3, allow_nan=False),
    currency=st.sampled_from(["EUR", "BHD", "KWD", "USD"]),
)
def test_an_amount_already_at_currency_precision_survives_a_round_trip(amount, currency):
    amount = amount.quantize(D(1).scaleb(-CURRENCIES[currency]), rounding=ROUND_HALF_UP)
    assert to_decimal(to_minor(amount, currency), currency) == amount


def test_to_decimal_is_exact_and_keeps_the_currency_scale():
    assert str(to_decimal(1234, "EUR")) == "12.34"
    assert str(to_decimal(0, "EUR")) == "0.00"
    assert str(to_decimal(-5, "BHD")) == "-0.005"
    assert str(to_decimal(7, "JPY")) == "7"
    assert str(to_decimal(123456789012345678, "EUR")) == "1234567890123456.78"


@pytest.mark.parametrize("bad", [1.0, True, D("12.5"), "12"])
def test_to_decimal_needs_an_int_of_minor_units(bad):
    with pytest.raises(MoneyError):
        to_decimal(bad, "EUR")


def test_float_amounts_are_refused_because_they_lose_precision():
    with pytest.raises(MoneyError) as caught:
        to_minor(0.1, "EUR")
    assert "float" in str(caught.value)
    assert caught.value.field == "amount"


def test_amounts_too_large_for_a_64_bit_column_are_refused():
    with pytest.raises(MoneyError, match="out of range"):
        to_minor(D(2**63), "JPY")
    assert to_minor(D(MAX_MINOR), "JPY") == MAX_MINOR


def test_absurd_exponents_are_refused_quickly_instead_of_building_huge_numbers():
    with pytest.raises(MoneyError, match="too large"):
        to_minor(D("1E+999999999"), "EUR")
    with pytest.raises(MoneyError, match="too many digits"):
        to_minor(D("1E-999999999"), "EUR")


# --------------------------------------------------------------------------- format_money


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (123456, "EUR", "1,234.56 EUR"),
        (-50, "EUR", "-0.50 EUR"),
        (0, "EUR", "0.00 EUR"),
        (5, "usd", "0.05 USD"),
        (1235, "JPY", "1,235 JPY"),
        (-1234567, "JPY", "-1,234,567 JPY"),
        (1234, "BHD", "1.234 BHD"),
        (1234567, "KWD", "1,234.567 KWD"),
        (123456789012345678, "EUR", "1,234,567,890,123,456.78 EUR"),
        (10001, "CLF", "1.0001 CLF"),
    ],
)
def test_amounts_format_with_thousands_separators_and_currency_code(minor, currency, text):
    assert format_money(minor, currency) == text


def test_format_money_refuses_non_integer_amounts():
    with pytest.raises(MoneyError):
        format_money(12.5, "EUR")


# --------------------------------------------------------------------------- parse_decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.34", D("12.34")),
        (" 3 ", D("3")),
        ("-0.0123", D("-0.0123")),
        (".5", D("0.5")),
        ("5.", D("5")),
        (7, D("7")),
        (D("1.000001"), D("1.000001")),
        ("12345678901234.567891", D("12345678901234.567891")),
    ],
)
def test_quantities_and_rates_parse_exactly(value, expected):
    result = parse_decimal(value, "quantity")
    assert isinstance(result, Decimal)
    assert result == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("abc", "must be a number"),
        ("", "empty"),
        ("   ", "empty"),
        ("1,234.56", "must be a number"),
        ("1e3", "must be a number"),
        ("1_000", "must be a number"),
        ("NaN", "must be a number"),
        ("Infinity", "must be a number"),
        ("--1", "must be a number"),
        ("1.2.3", "must be a number"),
        (D("NaN"), "finite"),
        (D("sNaN"), "finite"),
        (D("Infinity"), "finite"),
        (D("-Infinity"), "finite"),
        (None, "required"),
        (True, "boolean"),
        (1.5, "float"),
        ([1], "must be a number"),
    ],
)
def test_bad_numbers_are_refused_with_a_message_naming_the_field(value, fragment):
    with pytest.raises(MoneyError) as caught:
        parse_decimal(value, "quantity")
    assert caught.value.field == "quantity"
    assert str(caught.value).startswith("quantity ")
    assert fragment in str(caught.value)


def test_a_very_long_bad_string_is_shortened_in_the_message():
    with pytest.raises(MoneyError) as caught:
        parse_decimal("x" * 10_000, "rate")
    assert len(str(caught.value)) < 200


# --------------------------------------------------------------------------- line_amount


def test_usage_rate_with_more_decimals_than_the_currency_is_rounded_once_per_line():
    # 7 minutes at 0.0123 EUR/min = 0.0861 EUR -> 9 cents; rounding the rate first would give 7.
    assert line_amount(D("7"), D("0.0123"), "EUR") == 9
    assert line_amount(D("1000"), D("0.0123"), "EUR") == 1230
    assert line_amount(D("3"), D("19.99"), "EUR") == 5997


def test_line_amount_rounds_half_up_once_on_the_exact_product():
    assert line_amount(D("1"), D("0.005"), "EUR") == 1
    assert line_amount(D("-1"), D("0.005"), "EUR") == -1
    assert line_amount(D("3"), D("0.5"), "JPY") == 2
    assert line_amount(D("0.5"), D("0.001"), "BHD") == 1


def test_proration_fraction_is_applied_before_the_single_rounding():
    assert line_amount(D("1"), D("31.00"), "EUR", ExactRatio(10, 31)) == 1000
    assert line_amount(D("1"), D("10.00"), "EUR", D("0.5")) == 500
    assert line_amount(D("1"), D("10.00"), "EUR", D(0)) == 0


def test_an_exact_day_ratio_keeps_a_tie_that_a_28_digit_decimal_would_lose():
    # 0.045 EUR for a third of a period is exactly 0.015 EUR -> ROUND_HALF_UP gives 0.02.
    third = ExactRatio(10, 30)
    assert line_amount(D("1"), D("0.045"), "EUR", third) == 2
    assert line_amount(D("1"), D("0.045"), "EUR", Fraction(1, 3)) == 2
    # A 28-digit Decimal third is slightly less than 1/3, so the product lands just below the
    # tie and rounds down: this is why overlap_fraction returns an ExactRatio.
    rounded_third = D(1) / D(3)
    assert rounded_third < Fraction(1, 3)
    assert line_amount(D("1"), D("0.045"), "EUR", rounded_third) == 1


@pytest.mark.parametrize("fraction", [D("-0.1"), D("1.0001"), 2])
def test_a_proration_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(MoneyError) as caught:
        line_amount(D("1"), D("1"), "EUR", fraction)
    assert caught.value.field == "fraction"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"quantity": 1.5, "unit_price": D("1")}, "quantity"),
        ({"quantity": D("1"), "unit_price": 0.1}, "unit_price"),
        ({"quantity": "lots", "unit_price": D("1")}, "quantity"),
        ({"quantity": D("1"), "unit_price": D("NaN")}, "unit_price"),
    ],
)
def test_line_amount_names_the_bad_input(kwargs, field):
    with pytest.raises(MoneyError) as caught:
        line_amount(currency="EUR", **kwargs)
    assert caught.value.field == field


@given(quantity=quantities, price=unit_prices, currency=currencies)
def test_each_line_is_the_exact_product_rounded_half_up(quantity, price, currency):
    amount = line_amount(quantity, price, currency)
    exact = exact_product(quantity, price)
    assert amount == oracle_round(exact, currency)
    # Never more than half a minor unit away from the exact value.
    assert abs(D(amount).scaleb(-CURRENCIES[currency]) - exact) <= D("0.5").scaleb(
        -CURRENCIES[currency]
    )


@given(
    quantity=quantities,
    price=unit_prices,
    currency=currencies,
    days=st.integers(min_value=0, max_value=31),
    period_days=st.integers(min_value=28, max_value=31),
)
def test_prorated_line_matches_exact_rational_arithmetic(
    quantity, price, currency, days, period_days
):
    days = min(days, period_days)
    amount = line_amount(quantity, price, currency, ExactRatio(days, period_days))
    exact = Fraction(quantity) * Fraction(price) * Fraction(days, period_days)
    scaled = exact * 10 ** CURRENCIES[currency]
    # Half-up means: |amount - scaled| <= 1/2, and on an exact tie the larger magnitude wins.
    assert abs(amount - scaled) <= Fraction(1, 2)
    if abs(amount - scaled) == Fraction(1, 2):
        assert abs(amount) > abs(scaled)


# --------------------------------------------------------------------------- tax and totals


def test_tax_is_rounded_half_up_on_the_subtotal():
    assert tax_amount(1000, D("19"), "EUR") == 190
    assert tax_amount(50, D("7.7"), "EUR") == 4  # 3.85 cents
    assert tax_amount(-50, D("7.7"), "EUR") == -4  # credit note mirrors the invoice
    assert tax_amount(10, D("5"), "EUR") == 1  # 0.5 cent tie
    assert tax_amount(1234, D("0"), "EUR") == 0
    assert tax_amount(1234, "20", "JPY") == 247  # 246.8 yen


def test_tax_is_computed_once_per_invoice_not_per_line():
    # Three 1-cent lines at 50%: per line 0.5 -> 1 each (3 total); on the subtotal 1.5 -> 2.
    assert invoice_totals([1, 1, 1], D("50"), "EUR") == (3, 2, 5)


@pytest.mark.parametrize("rate", [D("-1"), D("100.01"), "abc", 19.0, None])
def test_bad_tax_rates_are_refused_naming_the_tax_rate(rate):
    with pytest.raises(MoneyError) as caught:
        tax_amount(100, rate, "EUR")
    assert caught.value.field == "tax_rate"


def test_totals_refuse_non_integer_lines():
    with pytest.raises(MoneyError):
        invoice_totals([100, 1.5], D("19"), "EUR")
    with pytest.raises(MoneyError):
        invoice_totals([100, True], D("19"), "EUR")
    with pytest.raises(MoneyError):
        invoice_totals([100, D("1")], D("19"), "EUR")


def test_totals_refuse_a_sum_that_overflows_a_64_bit_column():
    with pytest.raises(MoneyError, match="out of range"):
        invoice_totals([MAX_MINOR, 1], D("0"), "EUR")


def test_an_empty_invoice_totals_zero():
    assert invoice_totals([], D("19"), "EUR") == (0, 0, 0)


@given(
    lines=st.lists(st.tuples(quantities, unit_prices), max_size=40),
    rate=tax_rates,
    currency=currencies,
)
def test_invoice_total_equals_sum_of_lines_plus_tax_exactly(lines, rate, currency):
    amounts = [line_amount(q, p, currency) for q, p in lines]
    subtotal, tax, total = invoice_totals(amounts, rate, currency)
    assert all(type(x) is int for x in (subtotal, tax, total))
    assert subtotal == sum(amounts)
    assert total == subtotal + tax
    assert tax == oracle_round(exact_product(D(subtotal), rate, D("0.01")), "JPY")
    # The displayed figures add up too: no cent appears or vanishes between lines and total.
    assert sum(to_decimal(a, currency) for a in amounts) + to_decimal(tax, currency) == (
        to_decimal(total, currency)
    )


# --------------------------------------------------------------------------- tiers

TIERS = [(D("100"), D("0.10")), (D("1000"), D("0.08")), (None, D("0.05"))]


@pytest.mark.parametrize(
    ("quantity", "price"),
    [
        (D("0"), D("0.10")),
        (D("1"), D("0.10")),
        (D("100"), D("0.10")),  # up_to is inclusive
        (D("100.0001"), D("0.08")),
        (D("101"), D("0.08")),
        (D("1000"), D("0.08")),
        (D("1001"), D("0.05")),
        (D("10000000"), D("0.05")),
    ],
)
def test_volume_tiers_charge_the_whole_quantity_at_its_tier_price(quantity, price):
    assert tiered_unit_price(quantity, TIERS) == price


def test_volume_tier_price_feeds_a_single_rounded_line():
    quantity = D("150")
    assert line_amount(quantity, tiered_unit_price(quantity, TIERS), "EUR") == 1200


def test_a_single_open_tier_is_a_flat_price():
    assert tiered_unit_price(D("5"), [(None, D("2.50"))]) == D("2.50")


def test_tiers_accept_strings_and_ints():
    assert tiered_unit_price("150", [("100", "0.1"), (None, "0.08")]) == D("0.08")
    assert tiered_unit_price(50, [(100, 1), (None, 0)]) == D("1")


@pytest.mark.parametrize(
    ("tiers", "fragment"),
    [
        ([], "empty"),
        ([(D("100"), D("0.1"))], "last tier must be open-ended"),
        ([(None, D("0.1")), (D("100"), D("0.2"))], "only the last tier"),
        ([(None, D("0.1")), (None, D("0.2"))], "only the last tier"),
        ([(D("100"), D("0.1")), (D("50"), D("0.2")), (None, D("0.3"))], "greater than"),
        ([(D("100"), D("0.1")), (D("100"), D("0.2")), (None, D("0.3"))], "greater than"),
        ([(D("100"), D("-0.1")), (None, D("0.3"))], "negative"),
        ([(D("-5"), D("0.1")), (None, D("0.3"))], "negative"),
        ([(D("100"), 0.1), (None, D("0.3"))], "float"),
        ([(D("100"),), (None, D("0.3"))], "pair"),
        ([D("100")], "pair"),
        ("100:0.1", "list"),
        (None, "list"),
    ],
)
def test_malformed_tiers_are_refused_on_the_tiers_field(tiers, fragment):
    with pytest.raises(MoneyError) as caught:
        tiered_unit_price(D("10"), tiers)
    assert caught.value.field == "tiers"
    assert fragment in str(caught.value)


def test_negative_tier_quantity_is_refused():
    with pytest.raises(MoneyError) as caught:
        tiered_unit_price(D("-1"), TIERS)
    assert caught.value.field == "quantity"


@given(
    bounds=st.lists(
        st.integers(min_value=0, max_value=10**6), min_size=0, max_size=6, unique=True
    ).map(sorted),
    quantity=st.integers(min_value=0, max_value=2 * 10**6),
)
def test_the_tier_chosen_is_the_first_whose_bound_covers_the_quantity(bounds, quantity):
    tiers = [(D(b), D(i)) for i, b in enumerate(bounds)] + [(None, D(len(bounds)))]
    expected = next((i for i, b in enumerate(bounds) if quantity <= b), len(bounds))
    assert tiered_unit_price(D(quantity), tiers) == D(expected)


# --------------------------------------------------------------------------- ExactRatio


def test_exact_ratio_is_a_decimal_that_remembers_its_exact_value():
    third = ExactRatio(10, 30)
    assert isinstance(third, Decimal)
    assert third.as_integer_ratio() == (1, 3)
    assert Fraction(third) == Fraction(1, 3)
    assert str(third).startswith("0.3333333333")
    assert ExactRatio(1, 2) == D("0.5")
    assert ExactRatio(31, 31) == 1
    assert repr(third) == "ExactRatio(1, 3)"
    assert pickle.loads(pickle.dumps(third)).as_integer_ratio() == (1, 3)


# --------------------------------------------------------------------------- storage

_MODEL_DB = peewee.DatabaseProxy()


class Ledger(peewee.Model):
    amount = MinorUnitsField(null=True)
    rate = DecimalTextField(null=True)

    class Meta:
        database = _MODEL_DB


class FloatyLedger(peewee.Model):
    """peewee's own DecimalField, to show what goes wrong on SQLite."""

    rate = peewee.DecimalField(max_digits=30, decimal_places=6)

    class Meta:
        database = _MODEL_DB


@contextlib.contextmanager
def sqlite_database():
    """A fresh in-memory SQLite database with the test models' tables."""
    db = peewee.SqliteDatabase(":memory:")
    _MODEL_DB.initialize(db)
    db.connect()
    try:
        db.create_tables([Ledger, FloatyLedger])
        yield db
    finally:
        db.close()
        _MODEL_DB.initialize(None)


def test_peewee_decimal_field_loses_digits_on_sqlite_which_is_why_we_store_text():
    with sqlite_database() as db:
        FloatyLedger.create(rate=D("12345678901234.567891"))
        stored = FloatyLedger.get().rate
        assert stored != D("12345678901234.567891")
        assert db.execute_sql("SELECT typeof(rate) FROM floatyledger").fetchone()[0] == "real"


big_decimals = st.decimals(
    min_value=D("-1E+20"), max_value=D("1E+20"), places=10, allow_nan=False, allow_infinity=False
)


@given(value=big_decimals)
@example(value=D("12345678901234.567891"))
@example(value=D("0.000000000000000000000000000001"))
@example(value=D("-99999999999999999999.9999999999"))
@example(value=D("0.1"))
def test_decimal_text_field_round_trips_exactly_through_sqlite(value):
    with sqlite_database() as db:
        Ledger.create(rate=value)
        loaded = Ledger.get().rate
        assert isinstance(loaded, Decimal)
        assert loaded == value
        assert Fraction(loaded) == Fraction(value)
        raw_type = db.execute_sql("SELECT typeof(rate) FROM ledger").fetchone()[0]
        assert raw_type == "text"


@given(amount=st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR))
@example(amount=2**62)
@example(amount=2**62 + 1)
@example(amount=-(2**62) - 1)
@example(amount=MAX_MINOR)
@example(amount=-MAX_MINOR)
def test_minor_units_field_round_trips_exactly_through_sqlite(amount):
    with sqlite_database():
        Ledger.create(amount=amount)
        loaded = Ledger.get().amount
        assert type(loaded) is int
        assert loaded == amount


def test_decimal_text_is_stored_in_canonical_form():
    with sqlite_database() as db:
        for value in [D("1.50"), D("1E+3"), D("-0.00"), D("0.0100"), "7.000", 42]:
            Ledger.create(rate=value)
        raw = [r[0] for r in db.execute_sql("SELECT rate FROM ledger ORDER BY id").fetchall()]
        assert raw == ["1.5", "1000", "0", "0.01", "7", "42"]
        # Equal values compare equal in SQL because they are stored the same way.
        assert Ledger.select().where(Ledger.rate == D("1.500000")).count() == 1


def test_null_stays_null_in_both_fields():
    with sqlite_database():
        Ledger.create(amount=None, rate=None)
        row = Ledger.get()
        assert row.amount is None and row.rate is None


@pytest.mark.parametrize("bad", [1.5, 2.0, True, False, D("5"), "5"])
def test_minor_units_field_refuses_anything_but_an_int(bad):
    with sqlite_database():
        with pytest.raises(MoneyError) as caught:
            Ledger.create(amount=bad)
        assert caught.value.field == "amount"
        assert Ledger.select().count() == 0


def test_minor_units_field_refuses_values_beyond_64_bits():
    with sqlite_database():
        with pytest.raises(MoneyError, match="out of range"):
            Ledger.create(amount=2**63)


@pytest.mark.parametrize("bad", [0.1, D("NaN"), D("Infinity"), "abc", True])
def test_decimal_text_field_refuses_floats_and_non_numbers(bad):
    with sqlite_database():
        with pytest.raises(MoneyError) as caught:
            Ledger.create(rate=bad)
        assert caught.value.field == "rate"


def test_minor_units_field_works_in_queries_and_updates():
    with sqlite_database():
        Ledger.create(amount=500)
        Ledger.create(amount=250)
        Ledger.update(amount=Ledger.amount + 1).execute()
        assert sorted(r.amount for r in Ledger.select()) == [251, 501]
        assert Ledger.select().where(Ledger.amount.in_([251, 7])).count() == 1
        assert Ledger.select(peewee.fn.SUM(Ledger.amount)).scalar() == 752
        with pytest.raises(MoneyError):
            Ledger.select().where(Ledger.amount == 251.0).count()
