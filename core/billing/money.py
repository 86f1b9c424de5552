"""Money arithmetic: integer minor units, Decimal maths, one rounding rule.

Rules (DESIGN.md, "Money and billing"):

* An amount is stored as an ``int`` of minor units (cents, fils, yen) plus an ISO 4217 code.
  Floats are refused everywhere: ``0.1 + 0.2`` is not money.
* Quantities, unit prices, rates and proration fractions are ``Decimal`` and may carry more
  decimals than the currency (a usage rate of 0.0123 EUR/min).
* Rounding is ``ROUND_HALF_UP`` as the ``decimal`` module defines it: a tie goes *away from
  zero*, so 0.005 EUR -> 0.01 EUR and -0.005 EUR -> -0.01 EUR. A credit note therefore mirrors
  the invoice it corrects to the cent.
* Each invoice line is rounded once (quantity x unit price x fraction, computed exactly, then
  rounded); tax is computed once per invoice on the subtotal; total == subtotal + tax and
  subtotal == sum(lines), exactly.

Intermediate products are computed with exact rational arithmetic (``fractions.Fraction``), so
no context precision or intermediate rounding can move a result across a .5 boundary.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction

import peewee

__all__ = [
    "CURRENCIES",
    "MAX_MINOR",
    "CurrencyError",
    "DecimalTextField",
    "ExactRatio",
    "MinorUnitsField",
    "MoneyError",
    "check_currency",
    "exponent",
    "format_money",
    "invoice_totals",
    "line_amount",
    "parse_decimal",
    "tax_amount",
    "tiered_unit_price",
    "to_decimal",
    "to_minor",
]

# ISO 4217 "List One" (current funds), code -> minor-unit exponent. Codes whose minor unit the
# standard gives as "N.A." (precious metals XAU/XAG/XPD/XPT, XDR, XSU, XUA, the bond-market units
# XBA-XBD, the test code XTS and XXX "no currency") are left out: they cannot be invoiced in
# minor units. Fund codes that do have a minor unit (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW)
# are included. ANG stays alongside its successor XCG for the 2025 transition; ZWG replaced ZWL.
CURRENCIES: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "ANG": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2,
    "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2,
    "BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2, "CAD": 2,
    "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0, "CNY": 2, "COP": 2, "COU": 2,
    "CRC": 2, "CUC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2,
    "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2,
    "GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2,
    "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0,
    "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2,
    "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2, "MDL": 2, "MGA": 2,
    "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2, "MXN": 2,
    "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2,
    "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2,
    "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2,
    "SGD": 2, "SHP": 2, "SLE": 2, "SLL": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2,
    "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2,
    "TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4,
    "UZS": 2, "VED": 2, "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XCG": 2,
    "XOF": 0, "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip

# Minor-unit amounts must fit a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT).
# Symmetric bounds, so negating any valid amount (a credit note) stays valid.
MAX_MINOR = 2**63 - 1

# Bounds on Decimal inputs, so that a hostile "1E+999999999" cannot make exact arithmetic
# build a gigantic integer. Far beyond anything a bill needs.
_MAX_ADJUSTED = 30  # |value| < 10**31
_MAX_DIGITS = 60  # significant digits
_MAX_PLACES = 60  # digits after the decimal point

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


class MoneyError(ValueError):
    """Bad money input. ``field`` names the input at fault (or is None); str() is the message."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class CurrencyError(MoneyError):
    """An unknown or malformed currency code."""


# --------------------------------------------------------------------------- currencies


def check_currency(code: str, field: str = "currency") -> str:
    """Return ``code`` as an upper-case ISO 4217 code, or raise CurrencyError naming ``field``."""
    if not isinstance(code, str):
        raise CurrencyError(f"{field} must be a three-letter ISO 4217 code", field=field)
    normalized = code.strip().upper()
    if len(normalized) != 3:
        raise CurrencyError(
            f"{field} must be a three-letter ISO 4217 code, got {code!r}", field=field
        )
    if normalized not in CURRENCIES:
        raise CurrencyError(f"unknown currency {code!r}", field=field)
    return normalized


def exponent(currency: str) -> int:
    """Number of minor-unit digits of ``currency`` (2 for EUR, 0 for JPY, 3 for BHD)."""
    return CURRENCIES[check_currency(currency)]


# --------------------------------------------------------------------------- numbers


def _check_bounds(value: Decimal, field: str) -> Decimal:
    if not value.is_finite():
        raise MoneyError(f"{field} must be a finite number", field=field)
    if value.is_zero():
        return value
    sign, digits, exp = value.as_tuple()
    if value.adjusted() > _MAX_ADJUSTED:
        raise MoneyError(f"{field} is too large", field=field)
    if len(digits) > _MAX_DIGITS or exp < -_MAX_PLACES:
        raise MoneyError(f"{field} has too many digits", field=field)
    return value


def parse_decimal(value, field: str) -> Decimal:
    """A quantity, price or rate from user input as an exact Decimal.

    Accepts ``Decimal``, ``int`` and strings like ``"12.34"``, ``"-3"``, ``".5"`` (surrounding
    whitespace ignored). Refuses floats (they have already lost precision), bools, NaN, Infinity,
    exponent notation, thousands separators and absurdly large or long numbers, raising
    MoneyError with ``field`` set.
    """
    if isinstance(value, bool):
        raise MoneyError(f"{field} must be a number, not a boolean", field=field)
    if isinstance(value, float):
        raise MoneyError(
            f"{field} must be given as a string or Decimal, not a float (floats lose precision)",
            field=field,
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise MoneyError(f"{field} must be a number, got an empty value", field=field)
        if len(text) > 200 or not _NUMBER_RE.fullmatch(text):
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise MoneyError(f"{field} must be a number like 12.34, got {shown!r}", field=field)
        result = Decimal(text)
    elif value is None:
        raise MoneyError(f"{field} is required", field=field)
    else:
        raise MoneyError(f"{field} must be a number, got {type(value).__name__}", field=field)
    return _check_bounds(result, field)


def _as_fraction(value, field: str) -> Fraction:
    """Exact rational value of a Decimal/int/str/Fraction input (floats refused)."""
    if isinstance(value, Fraction):
        return value
    # Fraction(Decimal) uses as_integer_ratio(), which ExactRatio overrides with its exact ratio.
    return Fraction(parse_decimal(value, field))


def _round_half_up(value: Fraction) -> int:
    """Round to the nearest integer, ties away from zero (decimal.ROUND_HALF_UP)."""
    magnitude = abs(value)
    rounded = (2 * magnitude.numerator + magnitude.denominator) // (2 * magnitude.denominator)
    return -rounded if value < 0 else rounded


def _check_minor(amount: int, field: str) -> int:
    if not -MAX_MINOR <= amount <= MAX_MINOR:
        raise MoneyError(f"{field} is out of range for a stored amount", field=field)
    return amount


def _require_minor(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(
            f"{field} must be an integer number of minor units, got {type(value).__name__}",
            field=field,
        )
    return _check_minor(value, field)


class ExactRatio(Decimal):
    """A Decimal that remembers the exact ratio it approximates (e.g. 10 days / 30 days).

    Its Decimal value is the ratio to 40 significant digits, so it prints, compares and
    multiplies like any Decimal; ``as_integer_ratio()`` (and therefore ``Fraction(x)`` and
    :func:`line_amount`) uses the exact ratio, so a prorated line is still rounded only once.
    Arithmetic on it returns a plain Decimal (the approximation): pass it to ``line_amount``
    as the ``fraction`` unchanged.
    """

    def __new__(cls, numerator: int, denominator: int = 1):
        if isinstance(numerator, bool) or isinstance(denominator, bool):
            raise TypeError("ExactRatio takes two ints")
        if not isinstance(numerator, int) or not isinstance(denominator, int):
            raise TypeError("ExactRatio takes two ints")
        ratio = Fraction(numerator, denominator)  # raises ZeroDivisionError on a zero denominator
        with localcontext() as ctx:
            ctx.prec = 40
            approx = Decimal(ratio.numerator) / Decimal(ratio.denominator)
        self = super().__new__(cls, approx)
        self._ratio = ratio
        return self

    def as_integer_ratio(self) -> tuple[int, int]:
        return self._ratio.numerator, self._ratio.denominator

    def __reduce__(self):
        return (type(self), self.as_integer_ratio())

    def __repr__(self) -> str:
        return f"ExactRatio({self._ratio.numerator}, {self._ratio.denominator})"


# --------------------------------------------------------------------------- conversions


def to_minor(amount: Decimal | str | int, currency: str) -> int:
    """Major units to integer minor units: ``to_minor(Decimal("12.345"), "EUR") == 1235``.

    Rounds ROUND_HALF_UP (ties away from zero) at the currency's exponent. Floats are refused.
    """
    exp = exponent(currency)
    return _check_minor(_round_half_up(_as_fraction(amount, "amount") * 10**exp), "amount")


def to_decimal(minor: int, currency: str) -> Decimal:
    """Integer minor units to an exact Decimal in major units: 1234 EUR -> Decimal("12.34")."""
    exp = exponent(currency)
    minor = _require_minor(minor, "amount")
    sign = 1 if minor < 0 else 0
    return Decimal((sign, tuple(int(c) for c in str(abs(minor))), -exp))


def format_money(minor: int, currency: str) -> str:
    """Human-readable amount: "1,234.56 EUR", "-0.50 EUR", "1,235 JPY", "1.234 BHD"."""
    code = check_currency(currency)
    value = to_decimal(minor, code)
    sign = "-" if minor < 0 else ""
    return f"{sign}{format(abs(value), ',f')} {code}"


# --------------------------------------------------------------------------- invoice maths


def line_amount(
    quantity: Decimal,
    unit_price: Decimal,
    currency: str,
    fraction: Decimal = Decimal(1),
) -> int:
    """One invoice line in minor units: quantity x unit_price x fraction, rounded once.

    ``unit_price`` is in major units and may carry more decimals than the currency
    (0.0123 EUR/min). ``fraction`` is the proration share of the period, 0..1 (use the
    value :func:`core.billing.periods.overlap_fraction` returns; an ``ExactRatio`` or a
    ``fractions.Fraction`` is used exactly). The product is exact; the single rounding is
    ROUND_HALF_UP (ties away from zero) to the currency's minor unit. Quantity and price may be
    negative (credits).
    """
    exp = exponent(currency)
    q = _as_fraction(quantity, "quantity")
    p = _as_fraction(unit_price, "unit_price")
    f = _as_fraction(fraction, "fraction")
    if not 0 <= f <= 1:
        raise MoneyError("fraction must be between 0 and 1", field="fraction")
    return _check_minor(_round_half_up(q * p * f * 10**exp), "amount")


def tiered_unit_price(quantity: Decimal, tiers: list[tuple[Decimal | None, Decimal]]) -> Decimal:
    """Unit price for ``quantity`` under VOLUME tiers.

    ``tiers`` is ``[(up_to, unit_price), ...]``: ``up_to`` is inclusive and strictly
    ascending, the last one is ``None`` (no upper bound). The whole quantity is charged at the
    price of the tier it falls in: with ``[(100, 0.10), (None, 0.08)]`` 100 units cost 0.10
    each and 101 units cost 0.08 each. Prices must not be negative. Raises MoneyError with
    ``field="tiers"`` for a malformed tier list, ``field="quantity"`` for a bad quantity.
    """
    q = parse_decimal(quantity, "quantity")
    if q < 0:
        raise MoneyError("quantity must not be negative", field="quantity")
    if isinstance(tiers, (str, bytes)) or not hasattr(tiers, "__iter__"):
        raise MoneyError("tiers must be a list of (up_to, unit_price) pairs", field="tiers")
    parsed: list[tuple[Decimal | None, Decimal]] = []
    for index, tier in enumerate(tiers, start=1):
        try:
            up_to, price = tier
        except (TypeError, ValueError):
            raise MoneyError(
                f"tier {index} must be an (up_to, unit_price) pair", field="tiers"
            ) from None
        try:
            bound = None if up_to is None else parse_decimal(up_to, "up_to")
            unit_price = parse_decimal(price, "unit_price")
        except MoneyError as exc:
            raise MoneyError(f"tier {index}: {exc.message}", field="tiers") from None
        if unit_price < 0:
            raise MoneyError(f"tier {index}: unit_price must not be negative", field="tiers")
        if parsed:
            previous = parsed[-1][0]
            if previous is None:
                raise MoneyError(
                    "only the last tier may be open-ended (up_to = None)", field="tiers"
                )
            if bound is not None and bound <= previous:
                raise MoneyError(
                    f"tier {index}: up_to {bound} must be greater than {previous}",
                    field="tiers",
                )
        elif bound is not None and bound < 0:
            raise MoneyError(f"tier {index}: up_to must not be negative", field="tiers")
        parsed.append((bound, unit_price))
    if not parsed:
        raise MoneyError("tiers must not be empty", field="tiers")
    if parsed[-1][0] is not None:
        raise MoneyError("the last tier must be open-ended (up_to = None)", field="tiers")
    for bound, unit_price in parsed:
        if bound is None or q <= bound:
            return unit_price
    raise AssertionError("unreachable: the last tier is open-ended")  # pragma: no cover


def tax_amount(subtotal_minor: int, rate_percent: Decimal, currency: str) -> int:
    """Tax on an invoice subtotal, in minor units: subtotal x rate / 100, ROUND_HALF_UP.

    ``rate_percent`` is 0..100 (e.g. Decimal("19") or "7.7"); field name in errors: "tax_rate".
    """
    check_currency(currency)
    subtotal = _require_minor(subtotal_minor, "subtotal")
    rate = parse_decimal(rate_percent, "tax_rate")
    if not 0 <= rate <= 100:
        raise MoneyError("tax_rate must be between 0 and 100 (percent)", field="tax_rate")
    return _check_minor(_round_half_up(subtotal * Fraction(rate) / 100), "tax")


def invoice_totals(
    line_amounts: list[int], rate_percent: Decimal, currency
) -> tuple[int, int, int]:
    """(subtotal, tax, total) in minor units for an invoice's already-rounded lines.

    subtotal == sum(line_amounts); tax is computed once on the subtotal; total == subtotal +
    tax. All exact integers.
    """
    lines = [_require_minor(amount, "line_amounts") for amount in line_amounts]
    subtotal = _check_minor(sum(lines), "subtotal")
    tax = tax_amount(subtotal, rate_percent, currency)
    total = _check_minor(subtotal + tax, "total")
    return subtotal, tax, total


# --------------------------------------------------------------------------- peewee fields


def canonical_decimal_text(value: Decimal) -> str:
    """Exact plain-notation text of a finite Decimal, trailing fractional zeros removed.

    ``Decimal("1.50") -> "1.5"``, ``Decimal("1E+3") -> "1000"``, ``Decimal("-0.00") -> "0"``.
    Equal values give equal text; no context rounding is involved.
    """
    sign, digits, exp = value.as_tuple()
    if not isinstance(exp, int):
        raise MoneyError("value must be a finite number")
    digits = list(digits)
    while exp < 0 and len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exp += 1
    if all(d == 0 for d in digits):
        return "0"
    return format(Decimal((sign, tuple(digits), exp)), "f")


class DecimalTextField(peewee.TextField):
    """A Decimal stored exactly, as canonical text (see :func:`canonical_decimal_text`).

    Use it for quantities, unit prices and rates. peewee's DecimalField stores a REAL on
    SQLite and loses digits (12345678901234.567891 came back as 12345678901234.568). Values
    are validated like :func:`parse_decimal` (floats refused). Text does not sort numerically
    in SQL: order by these columns in Python.
    """

    def db_value(self, value):
        if value is None or isinstance(value, peewee.Node):
            return value
        return canonical_decimal_text(parse_decimal(value, self.name or "value"))

    def python_value(self, value):
        if value is None or isinstance(value, Decimal):
            return value
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise MoneyError(
                f"{self.name or 'value'}: stored value {value!r} is not a number",
                field=self.name,
            ) from None


class MinorUnitsField(peewee.BigIntegerField):
    """An amount in integer minor units. Refuses anything but an int (bool, float, Decimal and
    str included) and values outside the signed 64-bit range, with MoneyError."""

    def db_value(self, value):
        if value is None or isinstance(value, peewee.Node):
            return value
        return _require_minor(value, self.name or "amount")

    def python_value(self, value):
        return value if value is None else int(value)
