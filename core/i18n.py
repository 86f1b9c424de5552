"""Invoice languages: Babel formatting of money, numbers, dates and rates, and the gettext
catalogues of the invoice template.

Why here and not in each format: an invoice must read the same in every format a buyer gets
(the PDF, an e-mail, a reminder), so the rules of "how does 123456 EUR minor units read in
German" live in one place:

* **Money** is formatted from integer minor units with the currency's own number of decimals
  from ISO 4217 (:data:`core.billing.money.CURRENCIES`: 2 for EUR, 0 for JPY, 3 for BHD), not
  CLDR's (which differs for some currencies), and never through a float: the minor units
  become an exact ``Decimal`` and Babel only lays it out (``1.234,56 €`` in German,
  ``€1,234.56`` in English). A unit price may carry more decimals than its currency (a usage
  rate of 0.0123 EUR/min); :func:`format_price` shows every one of them, at least the
  currency's.
* **Languages**: :data:`SUPPORTED_LOCALES`. :func:`negotiate` maps what a buyer's billing
  details say (``"de"``, ``"de-AT"``, ``"DE"``, ``None``) to one of them; anything else is
  English, so an invoice is always rendered.
* **Countries** are named in the language (``DE`` -> "Deutschland") from Babel's CLDR data,
  and the proration note every prorated line ends with (core.billing.periods.prorated_label,
  "(16 of 31 days)") is translated; the rest of a line's text is the seller's own words.
* **Translations** are gettext ``.po`` files under ``core/translations/<locale>/LC_MESSAGES/``
  (``messages.pot`` beside them is extracted from the invoice template, see
  docs/translations.md). They are read with Babel's ``read_po`` and compiled in memory on first
  use, so nothing has to be compiled at install time and a ``pip install -e .`` works as is.
"""

from __future__ import annotations

import copy
import re
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.dates import format_date as _babel_date
from babel.dates import get_date_format
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import Translations

from core.billing.money import exponent, parse_decimal, to_decimal
from core.billing.periods import PRORATED_NOTE

__all__ = [
    "DEFAULT_LOCALE",
    "SUPPORTED_LOCALES",
    "TRANSLATIONS_DIR",
    "country_name",
    "format_date",
    "line_text",
    "format_money",
    "format_number",
    "format_price",
    "format_rate",
    "gettext",
    "language_name",
    "negotiate",
    "translations",
]

SUPPORTED_LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"


def negotiate(language: str | None) -> str:
    """The supported locale for a buyer's invoice language (``"de-AT"`` -> ``"de"``); English
    for nothing, an unknown language or a malformed value."""
    if not isinstance(language, str) or not language.strip():
        return DEFAULT_LOCALE
    primary = language.strip().replace("-", "_").split("_", 1)[0].lower()
    return primary if primary in SUPPORTED_LOCALES else DEFAULT_LOCALE


@cache
def _locale(locale: str) -> Locale:
    return Locale.parse(negotiate(locale))


def _exact(value, what: str) -> Decimal:
    if isinstance(value, float):  # 0.1 + 0.2 is not money (core.billing.money)
        raise TypeError(f"{what} must be a Decimal, an int or a decimal text, not a float")
    return value if isinstance(value, Decimal) else parse_decimal(value, what)


def _money_pattern(locale: str, digits: tuple[int, int]):
    pattern = copy.copy(_locale(locale).currency_formats["standard"])
    pattern.frac_prec = digits
    return pattern


def format_money(minor: int, currency: str, locale: str) -> str:
    """``123456, "EUR", "de"`` -> ``"1.234,56 €"``: integer minor units with exactly the
    currency's decimals."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError("money is formatted from integer minor units")
    places = exponent(currency)
    value = to_decimal(minor, currency)
    return _money_pattern(locale, (places, places)).apply(
        value, _locale(locale), currency=currency.upper(), currency_digits=False
    )


def format_price(value, currency: str, locale: str) -> str:
    """A unit price (a Decimal that may carry more decimals than the currency): at least the
    currency's decimals and every significant one beyond (``0.0123`` EUR -> ``0,0123 €``)."""
    places = exponent(currency)
    return _money_pattern(locale, (places, places)).apply(
        _exact(value, "unit price"),
        _locale(locale),
        currency=currency.upper(),
        currency_digits=False,
        decimal_quantization=False,
    )


def format_number(value, locale: str) -> str:
    """A quantity, every decimal kept: ``Decimal("1234.5")`` -> ``"1.234,5"`` in German."""
    return format_decimal(_exact(value, "quantity"), locale=_locale(locale),
                          decimal_quantization=False)  # fmt: skip


def format_rate(percent, locale: str) -> str:
    """A tax rate given in percent (``"19.5"`` or ``Decimal("20")``): ``"19,5 %"``, ``"20%"``."""
    share = _exact(percent, "tax rate").scaleb(-2)
    return format_percent(share, locale=_locale(locale), decimal_quantization=False)


@cache
def _date_pattern(locale: str, form: str) -> str:
    """The locale's date pattern with a four-digit year: CLDR's ``y`` prints year 1 as "1",
    which no one reads as a date on an invoice (dates run from year 1 to 9999 here)."""
    pattern = get_date_format(form, locale=_locale(locale)).pattern
    return re.sub(r"(?<!y)y(?!y)", "yyyy", pattern)


def format_date(value, locale: str, form: str = "medium") -> str:
    """A date (or its ISO text): ``"03.12.2026"`` in German, ``"Dec 3, 2026"`` in English."""
    if isinstance(value, datetime):
        value = value.date()
    elif isinstance(value, str):
        value = date.fromisoformat(value)
    return _babel_date(value, format=_date_pattern(negotiate(locale), form),
                       locale=_locale(locale))  # fmt: skip


def _po_path(locale: str) -> Path:
    return TRANSLATIONS_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(locale: str) -> Translations:
    """The catalogue of ``locale`` (negotiated), compiled in memory from its ``.po`` file.
    Fuzzy entries are left out, as ``msgfmt`` would: they fall back to the English text."""
    code = negotiate(locale)
    with _po_path(code).open("rb") as po:
        catalog = read_po(po, locale=code, domain=DOMAIN)
    mo = BytesIO()
    write_mo(mo, catalog, use_fuzzy=False)
    mo.seek(0)
    return Translations(fp=mo, domain=DOMAIN)


def gettext(message: str, locale: str) -> str:
    """``message`` in ``locale`` (the English text where the catalogue has none)."""
    return translations(locale).gettext(message)


def country_name(code: str, locale: str) -> str:
    """The country of an ISO 3166 alpha-2 code in ``locale`` ("DE" -> "Deutschland"); the code
    itself when CLDR does not know it."""
    return _locale(locale).territories.get((code or "").upper(), code or "")


def line_text(description: str, locale: str) -> str:
    """A line's description with its proration note in ``locale``: "Seat (16 of 31 days)" ->
    "Seat (16 von 31 Tagen)" in German."""
    note = PRORATED_NOTE.search(description or "")
    if note is None:
        return description
    days = gettext("(%(days)s of %(total)s days)", locale) % {"days": note[1], "total": note[2]}
    return f"{description[: note.start()]} {days}"


def language_name(code: str, locale: str = DEFAULT_LOCALE) -> str:
    """An invoice language as people name it ("de" -> "German", in German "Deutsch")."""
    return _locale(locale).languages.get((code or "").lower(), code or "")
