"""The marshmallow field types every input schema declares its fields with (core, billing and
plugins alike), so each bound lives in one place and the OpenAPI document states it.

Limits, chosen from the storage (DESIGN.md, "Money and billing"):

* Amounts are stored as integer minor units in a signed 64-bit column: at most
  ``MAX_MINOR`` = 2**63 - 1 (about 9.22e18). The currency with the most decimals has 4 (CLF,
  UYW), and tax is at most 100 %, so an invoice subtotal of at most ``MAX_AMOUNT`` = 10**14
  major units (10**18 minor units at 4 decimals, 2 * 10**18 with tax) always fits.
* ``Quantity``: 0 to ``MAX_QUANTITY`` = 1,000,000 (lines of a draft invoice may go down to
  minus that, for credits). ``Price``: 0 to ``MAX_PRICE`` = 100,000,000 per unit (draft lines:
  down to minus that). So any one line, quantity x price, is at most 10**14 = ``MAX_AMOUNT``;
  a draft's lines must also sum to at most that (``check_lines_total``). Both carry at most
  ``MAX_PLACES`` = 10 decimals. What a bill run sums (many usage records of one period, many
  subscriptions of one account) can still go past this; the engine refuses that account's
  invoice on its own.
* ``Amount`` (payments, refunds, top-ups): greater than 0, at most ``MAX_AMOUNT``.
* ``Percent`` (tax rates): 0 to 100.
* ``Id``: 1 to 2**63 - 1, what a 64-bit id column holds; an id beyond names no object.
* ``Text``: a length limit, no NUL or other control characters (tab, line feed and carriage
  return only where a field is ``multiline``), no unpaired surrogates (PostgreSQL refuses
  a NUL with an error, and a surrogate cannot be encoded). Free text a person types (names,
  addresses, descriptions, memos, references) also refuses anything that looks like a payment
  card number: 13-19 digits in a run, single spaces or dashes allowed between them, passing
  the Luhn check (``python-stdnum``). Identifiers (codes, external ids, e-mail addresses,
  phone numbers, keys) are not checked for card numbers (``card_numbers=False``).

Decimal fields are documented as strings (``"12.34"``) and also take JSON integers; floats
are refused (``core.billing.money.parse_decimal``): they have already lost precision.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from marshmallow import ValidationError, fields, validate
from stdnum import luhn

from core.billing.money import MAX_MINOR, MoneyError, parse_decimal

__all__ = [
    "MAX_AMOUNT",
    "MAX_ID",
    "MAX_INT32",
    "MAX_MINOR",
    "MAX_PLACES",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "PAN_MESSAGE",
    "Amount",
    "DecimalString",
    "Email",
    "Id",
    "Percent",
    "Price",
    "Quantity",
    "Secret",
    "Text",
    "check_lines_total",
    "looks_like_pan",
]

MAX_ID = 2**63 - 1
MAX_INT32 = 2**31 - 1  # a PostgreSQL integer column
MAX_QUANTITY = Decimal(10**6)
MAX_PRICE = Decimal(10**8)
MAX_AMOUNT = Decimal(10**14)
MAX_PLACES = 10
MAX_EXPONENT = 4  # CLF, UYW: the most decimals an ISO 4217 currency has
assert MAX_AMOUNT * 10**MAX_EXPONENT * 2 <= MAX_MINOR  # with 100 % tax
assert MAX_QUANTITY * MAX_PRICE <= MAX_AMOUNT

# -- card numbers ------------------------------------------------------------------------------

# a run of digits, single spaces or dashes between them, not glued to a letter before it: an
# IBAN ("DE44 5001 0517 5407 3249 31") or a code ("INV4111...") is not a card number
_DIGIT_RUN = re.compile(r"(?<![^\W\d_])\d(?:[ -]?\d)*")

PAN_MESSAGE = (
    "looks like a card number; card numbers are never stored here (that would put Billhive "
    "in PCI DSS scope). Describe the method instead, e.g. 'Visa ending 4242, expires 12/28'"
)


def looks_like_pan(text: str) -> bool:
    """True when ``text`` holds a run of 13-19 digits (single spaces or dashes allowed between
    them, no letter right before it) that passes the Luhn check: what a payment card number
    looks like."""
    for match in _DIGIT_RUN.finditer(text or ""):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            return True
    return False


# -- text --------------------------------------------------------------------------------------

_LINE_BREAKS = {"\t", "\n", "\r"}


def _bad_character(text: str, multiline: bool) -> str | None:
    for char in text:
        category = unicodedata.category(char)
        if category == "Cs":
            return "must not contain unpaired surrogate characters"
        if category == "Cc" and not (multiline and char in _LINE_BREAKS):
            if char == "\x00":
                return "must not contain NUL characters"
            allowed = " (tab, line feed and carriage return are allowed)" if multiline else ""
            return f"must not contain control characters such as U+{ord(char):04X}{allowed}"
    return None


class Text(fields.String):
    """A string of at most ``max_length`` characters (at least ``min_length``), without NUL
    or control characters (``multiline`` allows tab, LF and CR), and, unless
    ``card_numbers=False``, refusing anything that looks like a payment card number."""

    def __init__(
        self,
        max_length: int = 200,
        *,
        min_length: int = 0,
        multiline: bool = False,
        card_numbers: bool = True,
        **kwargs,
    ):
        self.max_length, self.min_length = max_length, min_length
        self.multiline, self.card_numbers = multiline, card_numbers
        extra = kwargs.pop("validate", None)
        validators = [validate.Length(min=min_length or None, max=max_length)]
        if extra is not None:
            validators += list(extra) if isinstance(extra, (list, tuple)) else [extra]
        notes = [f"at most {max_length} characters"]
        notes.append(
            "no control characters except tab and line breaks"
            if multiline
            else "no control characters"
        )
        if card_numbers:
            notes.append("card numbers refused")
        metadata = dict(kwargs.pop("metadata", None) or {})
        description = metadata.get("description")
        metadata["description"] = (f"{description} " if description else "") + (
            "(" + "; ".join(notes) + ")"
        )
        metadata.setdefault(
            "pattern",
            r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
            if multiline
            else r"^[^\u0000-\u001f\u007f-\u009f]*$",
        )
        super().__init__(validate=validators, metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = _bad_character(text, self.multiline)
        if problem:
            raise ValidationError(problem)
        if self.card_numbers and looks_like_pan(text):
            raise ValidationError(PAN_MESSAGE)
        return text


class Email(Text):
    """An e-mail address (at most 254 characters); ``allow_empty`` takes "" for "none"."""

    def __init__(self, *, allow_empty: bool = False, **kwargs):
        self.allow_empty = allow_empty
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"format": "email", **kwargs["metadata"]}
        super().__init__(254, card_numbers=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if text == "" and self.allow_empty:
            return text
        return validate.Email(error="must be an e-mail address like name@example.com")(text)


class Secret(fields.String):
    """A password or key as typed: any characters but NUL, at most ``max_length``."""

    def __init__(self, max_length: int = 1000, **kwargs):
        kwargs["validate"] = [validate.Length(max=max_length)] + list(
            kwargs.pop("validate", None) or []
        )
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text or any(unicodedata.category(c) == "Cs" for c in text):
            raise ValidationError("must not contain NUL or unpaired surrogate characters")
        return text


# -- ids -----------------------------------------------------------------------------------------


class Id(fields.Integer):
    """An object id: a whole number from 1 to 2**63 - 1 (a 64-bit id column); ``maximum``
    for an id kept in a narrower column (another system's id in a 32-bit one: MAX_INT32)."""

    def __init__(self, *, maximum: int = MAX_ID, **kwargs):
        kwargs["validate"] = [
            validate.Range(1, maximum, error="must be an id from {min} to {max}")
        ] + list(kwargs.pop("validate", None) or [])
        super().__init__(**kwargs)


# -- decimals ------------------------------------------------------------------------------------


class DecimalString(fields.String):
    """An exact decimal number from ``minimum`` to ``maximum`` with at most ``places``
    decimals, loaded as a ``Decimal``. Takes a string ("12.34") or a JSON integer; a float is
    refused. ``exclusive_minimum`` refuses the minimum itself (amounts must be > 0)."""

    def __init__(
        self,
        minimum: Decimal | int,
        maximum: Decimal | int,
        *,
        places: int = MAX_PLACES,
        exclusive_minimum: bool = False,
        **kwargs,
    ):
        self.minimum, self.maximum = Decimal(minimum), Decimal(maximum)
        self.places, self.exclusive_minimum = places, exclusive_minimum
        metadata = dict(kwargs.pop("metadata", None) or {})
        low = f"greater than {self.minimum}" if exclusive_minimum else f"from {self.minimum}"
        note = f"a decimal number as a string, {low} to {self.maximum}, at most {places} decimals"
        description = metadata.get("description")
        metadata["description"] = f"{description} ({note})" if description else note
        metadata.setdefault("pattern", _decimal_pattern(self.minimum, self.maximum, places,
                                                        exclusive_minimum))  # fmt: skip
        metadata.setdefault("example", "12.5")
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (str, int, Decimal)) and not isinstance(value, bool):
            try:
                number = parse_decimal(value, self.data_key or attr or "value")
            except MoneyError as exc:
                raise ValidationError(_without_field(exc.message, self.data_key or attr)) from None
        else:
            kind = "a float" if isinstance(value, float) else type(value).__name__
            raise ValidationError(
                f'must be a decimal number given as a string like "12.34", not {kind}'
            )
        too_low = number <= self.minimum if self.exclusive_minimum else number < self.minimum
        if too_low or number > self.maximum:
            low = f"greater than {self.minimum}" if self.exclusive_minimum else f"{self.minimum}"
            raise ValidationError(
                f"must be {'' if self.exclusive_minimum else 'from '}{low} to {self.maximum}"
            )
        if number.as_tuple().exponent < -self.places:
            raise ValidationError(f"must have at most {self.places} decimals")
        return number

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        from core.billing.money import canonical_decimal_text

        return canonical_decimal_text(Decimal(value))


def _decimal_pattern(minimum: Decimal, maximum: Decimal, places: int, positive: bool) -> str:
    """The OpenAPI pattern of a DecimalString: a sign only where negatives are allowed, at most
    as many whole digits as the maximum has and ``places`` decimals, and (``positive``) a digit
    other than 0 somewhere, so a body the document calls valid is not refused for its form."""
    sign = "[+-]?" if minimum < 0 else "\\+?"
    whole = len(str(int(max(abs(minimum), maximum))))
    if not positive:
        number = rf"(\d{{1,{whole}}}(\.\d{{0,{places}}})?|\.\d{{1,{places}}})"
    else:
        number = (rf"(0*[1-9]\d{{0,{whole - 1}}}(\.\d{{0,{places}}})?"
                  rf"|0*\.0{{0,{places - 1}}}[1-9]\d{{0,{places - 1}}})")  # fmt: skip
    return rf"^\s*{sign}{number}\s*$"


def _without_field(message: str, name: str | None) -> str:
    """parse_decimal's messages start with the field name; the error is keyed by it already."""
    if name and message.startswith(name + " "):
        return message[len(name) + 1 :]
    return message


def Quantity(*, signed: bool = False, **kwargs) -> DecimalString:  # noqa: N802 - a field type
    """A quantity: 0 to MAX_QUANTITY (``signed``: from -MAX_QUANTITY, a draft's credit line)."""
    return DecimalString(-MAX_QUANTITY if signed else 0, MAX_QUANTITY, **kwargs)


def Price(*, signed: bool = False, **kwargs) -> DecimalString:  # noqa: N802 - a field type
    """A price per unit in major units: 0 to MAX_PRICE (``signed``: from -MAX_PRICE)."""
    return DecimalString(-MAX_PRICE if signed else 0, MAX_PRICE, **kwargs)


def Amount(**kwargs) -> DecimalString:  # noqa: N802 - a field type
    """Money in major units ("12.34"): greater than 0, at most MAX_AMOUNT."""
    return DecimalString(0, MAX_AMOUNT, exclusive_minimum=True, **kwargs)


def Percent(**kwargs) -> DecimalString:  # noqa: N802 - a field type
    """A percentage from 0 to 100 (a tax rate)."""
    kwargs.setdefault("metadata", {"example": "19"})
    return DecimalString(0, 100, places=6, **kwargs)


def check_lines_total(lines: list[dict], field: str = "lines") -> None:
    """Raise a ValidationError naming ``field`` when quantity x unit_price summed over
    ``lines`` (already loaded: Decimals) is beyond MAX_AMOUNT in either direction."""
    total = sum(
        (Decimal(line.get("quantity", 1)) * Decimal(line["unit_price"]) for line in lines),
        Decimal(0),
    )
    largest = max(
        (abs(Decimal(line.get("quantity", 1)) * Decimal(line["unit_price"])) for line in lines),
        default=Decimal(0),
    )
    if abs(total) > MAX_AMOUNT or largest > MAX_AMOUNT:
        raise ValidationError(
            f"the lines sum to {total}; an invoice's lines may sum to at most {MAX_AMOUNT} "
            "(quantity x unit price, before tax)",
            field_name=field,
        )
