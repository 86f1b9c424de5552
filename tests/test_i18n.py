"""Invoice languages (core.i18n): money, numbers, dates and rates as a buyer reads them, and
the shipped gettext catalogues of the invoice template."""

from __future__ import annotations

import configparser
import fnmatch
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.checkers import checkers
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.numbers import get_currency_symbol, parse_decimal
from hypothesis import given, settings
from hypothesis import strategies as st

from core import i18n
from core.billing.money import CURRENCIES, MAX_MINOR, to_decimal

ROOT = Path(__file__).resolve().parent.parent
NBSP = "\xa0"


def plain(text: str) -> str:
    """What a reader sees: Babel separates amount and symbol with a no-break space."""
    return text.replace(NBSP, " ").replace("\u202f", " ")


# -- money -----------------------------------------------------------------------------------


def test_a_german_invoice_writes_euros_the_german_way_and_an_english_one_the_english_way():
    assert plain(i18n.format_money(123456, "EUR", "de")) == "1.234,56 €"
    assert i18n.format_money(123456, "EUR", "en") == "€1,234.56"
    assert plain(i18n.format_money(-50, "EUR", "de")) == "-0,50 €"
    assert plain(i18n.format_money(0, "EUR", "de")) == "0,00 €"


def test_each_currency_keeps_its_own_iso_decimals_not_cldrs():
    assert plain(i18n.format_money(1234, "JPY", "de")) == "1.234 ¥"  # no minor unit
    assert plain(i18n.format_money(1234500, "BHD", "de")) == "1.234,500 BHD"  # three
    assert i18n.format_money(12345, "CLF", "en").endswith("1.2345")  # four
    # ISO 4217 gives HUF and IQD minor units that CLDR (Babel's default) rounds away: an
    # invoice stored in fillér must not print 150 minor units as "2 HUF"
    assert plain(i18n.format_money(150, "HUF", "de")) == "1,50 HUF"
    assert plain(i18n.format_money(1001, "IQD", "de")) == "1,001 IQD"


def test_the_largest_amounts_are_exact_to_the_last_digit():
    assert plain(i18n.format_money(MAX_MINOR, "EUR", "de")) == "92.233.720.368.547.758,07 €"
    assert i18n.format_money(-MAX_MINOR, "EUR", "en") == "-€92,233,720,368,547,758.07"
    assert plain(i18n.format_money(MAX_MINOR, "JPY", "de")) == "9.223.372.036.854.775.807 ¥"


def test_floats_and_booleans_are_not_money():
    with pytest.raises(TypeError):
        i18n.format_money(12.5, "EUR", "de")
    with pytest.raises(TypeError):
        i18n.format_money(True, "EUR", "de")
    with pytest.raises(TypeError):
        i18n.format_price(0.1, "EUR", "de")
    with pytest.raises(ValueError, match="unknown currency"):
        i18n.format_money(100, "ZZZ", "de")


@settings(max_examples=1000, derandomize=True)  # the same examples in every CI run
@given(
    minor=st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR),
    currency=st.sampled_from(sorted(CURRENCIES)),
    locale=st.sampled_from(i18n.SUPPORTED_LOCALES),
)
def test_the_formatted_amount_reads_back_as_exactly_the_minor_units(minor, currency, locale):
    text = plain(i18n.format_money(minor, currency, locale))
    symbol = get_currency_symbol(currency, locale=locale)  # may hold a dot: "Bs." "S/."
    number = re.sub(r"[^\d.,-]", "", text.replace(symbol, "").replace(currency, ""))
    assert parse_decimal(number, locale=locale, strict=True) == to_decimal(minor, currency)
    places = CURRENCIES[currency]
    decimal_mark = "," if locale == "de" else "."
    assert (number.rpartition(decimal_mark)[2] if places else "") == (
        number[-places:] if places else ""
    )


def test_unit_prices_and_quantities_keep_every_significant_decimal():
    assert plain(i18n.format_price(Decimal("0.0123"), "EUR", "de")) == "0,0123 €"
    assert plain(i18n.format_price("4", "EUR", "de")) == "4,00 €"
    assert i18n.format_price(Decimal("1234.5"), "USD", "en") == "$1,234.50"
    assert i18n.format_number("1234.5", "de") == "1.234,5"
    assert i18n.format_number(Decimal("2"), "en") == "2"
    with pytest.raises(ValueError):
        i18n.format_number("two", "de")


def test_rates_and_dates_for_each_language_including_the_oldest_and_newest_days():
    assert plain(i18n.format_rate("19.5", "de")) == "19,5 %"
    assert i18n.format_rate(Decimal("20"), "en") == "20%"
    assert plain(i18n.format_rate("0", "de")) == "0 %"
    assert i18n.format_date(date(2026, 12, 3), "de") == "03.12.2026"
    assert i18n.format_date("2026-12-03", "en") == "Dec 3, 2026"
    assert i18n.format_date(datetime(2026, 12, 3, 23, 59), "de") == "03.12.2026"
    assert i18n.format_date(date(1, 1, 1), "de") == "01.01.0001"
    assert i18n.format_date(date(9999, 12, 31), "en") == "Dec 31, 9999"
    assert i18n.format_date(date(1, 1, 1), "en") == "Jan 1, 0001"


@pytest.mark.parametrize(
    ("asked", "used"),
    [("de", "de"), ("de-AT", "de"), ("DE_ch", "de"), (" en ", "en"), ("fr", "en"),
     ("", "en"), (None, "en"), ("x" * 500, "en"), ("-", "en"), (42, "en")],
)  # fmt: skip
def test_an_invoice_language_always_resolves_to_a_shipped_one(asked, used):
    assert i18n.negotiate(asked) == used


# -- catalogues ------------------------------------------------------------------------------


def _template_messages() -> set[str]:
    """What pybabel extracts with core/translations/babel.cfg: the invoice template's texts
    and the proration note of core.i18n."""
    with (i18n.TRANSLATIONS_DIR / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = extract_from_dir(str(ROOT), method_map, options_map)
    return {m[2] if isinstance(m[2], str) else m[2][0] for m in found}


def _catalog(path: Path):
    with path.open("rb") as f:
        return read_po(f)


def test_the_shipped_template_catalogue_is_the_invoice_templates_text():
    in_template = _template_messages()
    assert {
        "Invoice",
        "Due date",
        "Unit price (net)",
        "(%(days)s of %(total)s days)",
    } <= in_template
    pot = {m.id for m in _catalog(i18n.TRANSLATIONS_DIR / "messages.pot") if m.id}
    assert pot == in_template, "run the pybabel extract/update of docs/translations.md"


@pytest.mark.parametrize("locale", i18n.SUPPORTED_LOCALES)
def test_every_language_translates_every_text_of_the_template(locale):
    catalog = _catalog(i18n.TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.po")
    ids = {m.id for m in catalog if m.id}
    assert ids == _template_messages()
    for message in catalog:
        if not message.id:
            continue
        assert "fuzzy" not in message.flags, f"{locale}: fuzzy {message.id!r}"
        if locale != "en":
            assert message.string, f"{locale}: {message.id!r} is not translated"
        for check in checkers:  # placeholders kept: %(number)s stays %(number)s
            check(catalog, message)
        tags = re.findall(r"<[^>]+>", message.id)
        assert re.findall(r"<[^>]+>", message.string or message.id) == tags


def test_german_texts_come_from_the_catalogue_and_english_is_the_source():
    assert i18n.gettext("Invoice", "de") == "Rechnung"
    assert i18n.gettext("Due date", "de") == "Fällig am"
    assert i18n.gettext("Due date", "en") == "Due date"
    assert i18n.gettext("Due date", "fr") == "Due date"
    assert i18n.gettext("not in any catalogue", "de") == "not in any catalogue"


def test_countries_and_proration_notes_read_in_the_invoice_language():
    assert i18n.country_name("DE", "de") == "Deutschland"
    assert i18n.country_name("de", "en") == "Germany"
    assert i18n.country_name("QQ", "de") == "QQ" and i18n.country_name("", "de") == ""
    assert i18n.line_text("Seat — Pro (16 of 31 days)", "de") == "Seat — Pro (16 von 31 Tagen)"
    assert i18n.line_text("Seat — Pro (16 of 31 days)", "en") == "Seat — Pro (16 of 31 days)"
    assert i18n.line_text("Minutes (of 3 days)", "de") == "Minutes (of 3 days)"  # not a note
    assert i18n.line_text("", "de") == ""
    assert i18n.language_name("de") == "German" and i18n.language_name("de", "de") == "Deutsch"
    assert i18n.language_name("EN") == "English" and i18n.language_name("") == ""


def test_the_catalogues_are_installed_with_the_package():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    globs = [g.strip() for g in config["options.package_data"]["core"].split(",")]
    shipped = [p.relative_to(ROOT / "core").as_posix()
               for p in i18n.TRANSLATIONS_DIR.rglob("*") if p.suffix in (".po", ".pot")]  # fmt: skip
    assert len(shipped) == len(i18n.SUPPORTED_LOCALES) + 1
    for path in shipped:
        assert any(fnmatch.fnmatch(path, g) for g in globs), f"{path} not in package_data"
