"""The PDF a buyer receives carries every item EU VAT Directive article 226 requires (issue 19
item 2), in the buyer's invoice language, and what is owed: issued through the real
pipeline (billing details, a bill run or a draft issued by hand, the stored PDF), read back
with pypdf. Set BILLHIVE_KEEP_PDF=<folder> to keep the PDFs and look at them."""

from __future__ import annotations

import os
from datetime import date
from io import BytesIO
from pathlib import Path

import pytest
from pypdf import PdfReader

from core.billing.invoicing import lifecycle, parties, storage
from core.billing.ledger import payments
from core.billing.models import Invoice
from core.billing.runs import engine
from tests.billing_support import set_tax, setup_catalog, subscribe

DE_VAT, FR_VAT = "DE136695976", "FR40303265045"
IBAN, BIC = "DE89370400440532013000", "COBADEFFXXX"

app = pytest.fixture(lambda make_app: make_app(plugins=["invoice_pdf"]), name="app")


@pytest.fixture
def pdf_enabled(ctx):
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)
    return ctx


def text_of(invoice: Invoice, name: str) -> str:
    data = storage.file_for(invoice, "PDF")[0]
    keep = os.environ.get("BILLHIVE_KEEP_PDF")
    if keep:
        Path(keep, f"{name}.pdf").write_bytes(data)
    pages = PdfReader(BytesIO(data)).pages
    text = " ".join(page.extract_text() for page in pages)
    return " ".join(text.replace("\xa0", " ").replace("\u202f", " ").split())


def seller_in_germany(world, **extra):
    set_tax(world.provider, "19")
    parties.update(None, world.provider, {
        "legal_name": "Billhive Demo GmbH", "street": "Friedrichstr. 1", "postcode": "10117",
        "city": "Berlin", "country": "DE", "vat_id": DE_VAT, "registration_number": "HRB 123456",
        "iban": IBAN, "bic": BIC, "payment_reference": "{number}/{account_ref}", **extra})  # fmt: skip


def buyer(account, language, country="DE", vat_id=""):
    parties.update(None, account, {
        "legal_name": f"{account.name} Handels GmbH", "street": "Marktplatz 5\nHinterhaus",
        "postcode": "80331", "city": "München", "country": country, "vat_id": vat_id,
        "registration_number": "HRB 98765", "invoice_language": language})  # fmt: skip


def test_a_german_buyers_pdf_carries_every_article_226_item_in_german(world, pdf_enabled):
    seller_in_germany(world)
    buyer(world.customer_a, "de")
    _, plan = setup_catalog(world.provider, price="1234.56")
    subscribe(world.customer_a, plan, start="2026-01-16", quantity="2")
    engine.run(date(2026, 2, 1))
    inv = Invoice.get(Invoice.account == world.customer_a.id)
    # 2 x 1234.56 x 16/31 = 1274.38; 19 % = 242.13; total 1516.51
    assert (inv.subtotal, inv.tax, inv.total) == (127438, 24213, 151651)
    payments.record_payment(world.operator, world.customer_a, {"amount": "500.00"})
    text = text_of(inv, "de")  # rendered at issue: nothing was paid then
    number = inv.number
    for item in (
        "Rechnung", f"Nummer {number}",
        f"Rechnungsdatum {inv.issued_at:%d.%m.%Y}",  # date of issue
        "Billhive Demo GmbH", "Friedrichstr. 1", "10117 Berlin", "Deutschland",  # seller
        f"USt-IdNr.: {DE_VAT}", "Handelsregisternummer: HRB 123456",
        "Customer A Handels GmbH", "Marktplatz 5", "Hinterhaus", "80331 München",  # buyer
        "Handelsregisternummer: HRB 98765",
        "Leistungszeitraum 16.01.2026 – 31.01.2026",  # the days supplied, inclusive
        "Hosting — Standard (16 von 31 Tagen)", "seat", "1.234,56 €", "1.274,38 €",  # the line
        "Nettobetrag 1.274,38 €", "USt. 19 % auf 1.274,38 € 242,13 €",  # per rate
        "Gesamtbetrag 1.516,51 €",
        "Bereits bezahlt 0,00 €", "Verrechnetes Guthaben 0,00 €", "Offener Betrag 1.516,51 €",
        f"Fällig am {inv.due_date:%d.%m.%Y}",
        f"Bitte überweisen Sie 1.516,51 € bis zum {inv.due_date:%d.%m.%Y}.",
        "IBAN: DE89 3704 0044 0532 0130 00", f"BIC: {BIC}",
        f"Verwendungszweck: {number}/A-{world.customer_a.id}",
        "Seite 1 von 1",
    ):  # fmt: skip
        assert item in text, f"{item!r} not in {text}"
    for english in ("Invoice", "Due date", "Total", "Amount due", "Reverse charge"):
        assert english not in text
    assert "Payment due by" not in text  # the due date is said once, translated


def test_an_english_reverse_charged_pdf_says_so_and_shows_what_was_settled(world, pdf_enabled):
    seller_in_germany(world)
    buyer(world.customer_a, "en", country="FR", vat_id=FR_VAT)
    payments.record_payment(world.operator, world.customer_a, {"amount": "40.00"})  # credit
    draft = lifecycle.create_draft(None, world.customer_a, world.provider, [
        {"description": "Consulting", "quantity": "1.5", "unit": "h", "unit_price": "80.00"},
        {"description": "Minutes", "quantity": "1234.5", "unit": "min", "unit_price": "0.0123"},
    ])  # fmt: skip
    inv = lifecycle.issue(draft)  # draws the 40.00 paid in advance
    assert (inv.tax, inv.total) == (0, 13518)  # reverse charge: no tax
    text = text_of(inv, "en-reverse")
    for item in (
        "Invoice", f"Number {inv.number}", "Customer A Handels GmbH", "80331 München France",
        "Germany",
        f"VAT ID: {FR_VAT}", f"VAT ID: {DE_VAT}",
        "Consulting", "1.5", "€80.00", "€120.00", "1,234.5", "€0.0123", "€15.18",
        "Subtotal (net) €135.18", "VAT 0% of €135.18 €0.00", "Total €135.18",
        "Amount paid -€40.00", "Credit applied €0.00", "Amount due €95.18",
        "Reverse charge: VAT to be accounted for by the recipient (Article 196, Council "
        "Directive 2006/112/EC)",
        f"Please pay €95.18 by {inv.due_date:%b} {inv.due_date.day}, {inv.due_date.year}.",
        "Page 1 of 1",
    ):  # fmt: skip
        assert item in text, f"{item!r} not in {text}"


def test_a_german_credit_note_says_gutschrift_and_asks_for_no_payment(world, pdf_enabled):
    seller_in_germany(world)
    buyer(world.customer_a, "de")
    inv = lifecycle.issue(lifecycle.create_draft(None, world.customer_a, world.provider,
                                                 [{"description": "Beratung",
                                                   "unit_price": "100.00"}]))  # fmt: skip
    note = lifecycle.credit_note(inv, world.operator)
    text = text_of(note, "de-credit")
    assert (
        "Gutschrift" in text and f"Diese Gutschrift bezieht sich auf Rechnung {inv.number}." in text
    )
    assert "Gutschrift gesamt -119,00 €" in text
    for absent in ("Bitte überweisen", "Offener Betrag", "Fällig am", "IBAN"):
        assert absent not in text
