"""The invoice_pdf renderer: document dict in, PDF bytes out."""

from __future__ import annotations

import re
from io import BytesIO

import pytest
from pypdf import PdfReader

from plugins.invoice_pdf.formats import render_invoice_html, render_invoice_pdf


def make_doc(n_lines: int = 3, *, groups: list[str] | None = None, **overrides) -> dict:
    lines = []
    for i in range(n_lines):
        qty = i % 7 + 1
        line = {
            "description": f"Hosting package {i + 1:04d}",
            "quantity": str(qty),
            "unit": "seat",
            "unit_price": "12.50",
            "amount": f"{12.5 * qty:,.2f}",
            "amount_minor": 1250 * qty,
            "group": None,
        }
        if groups:
            line["group"] = groups[i * len(groups) // n_lines]
        lines.append(line)
    doc = {
        "kind": "invoice",
        "number": "INV-000042",
        "status": "issued",
        "currency": "EUR",
        "issue_date": "2026-11-15",
        "due_date": "2026-11-29",
        "period_start": "2026-10-15",
        "period_end": "2026-11-14",
        "supply_period": {"start": "2026-10-15", "end": "2026-11-13"},
        "issuer": {
            "name": "Acme Hosting GmbH",
            "address": ["Hauptstrasse 1", "10115 Berlin", "Germany"],
            "tax_id": "DE123456789",
            "email": "billing@acme.example",
        },
        "recipient": {
            "name": "Globex Reseller Ltd",
            "address": ["221B Baker Street", "London NW1 6XE"],
            "account_ref": "C-12",
        },
        "lines": lines,
        "groups": [],
        "subtotal": "1,234.56",
        "tax_rate": "20%",
        "tax": "246.91",
        "total": "€1,481.47",
        "subtotal_minor": 123456,
        "tax_minor": 24691,
        "total_minor": 148147,
        "credit_note_for": None,
        "notes": "Payment terms: net 14 days",
    }
    doc.update(overrides)
    return doc


def pages_text(pdf: bytes) -> list[str]:
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(BytesIO(pdf))
    return [page.extract_text() for page in reader.pages]


def squash(text: str) -> str:
    """Text with all whitespace runs collapsed, for phrases a layout may wrap."""
    return " ".join(text.split())


def test_three_line_invoice_fits_one_page_with_everything():
    doc = make_doc(3)
    pages = pages_text(render_invoice_pdf(doc))
    assert len(pages) == 1
    text = pages[0]
    assert "Invoice" in text
    assert "INV-000042" in text
    assert "Acme Hosting GmbH" in text
    assert "Globex Reseller Ltd" in text
    for line in doc["lines"]:
        assert line["description"] in text
    assert "€1,481.47" in text
    assert "Page 1 of 1" in squash(text)
    # The lines table header.
    for header in ("Description", "Qty", "Unit", "Unit price (net)", "Amount (net)"):
        assert header in text


@pytest.mark.slow
def test_500_line_invoice_repeats_header_and_counts_pages():
    doc = make_doc(500)
    pages = pages_text(render_invoice_pdf(doc))
    n = len(pages)
    assert n > 3
    for number, text in enumerate(pages, start=1):
        assert "Description" in text, f"no table header on page {number}"
        assert "Amount" in text, f"no table header on page {number}"
        assert f"Page {number} of {n}" in squash(text)
    assert "€1,481.47" in pages[-1]
    assert "€1,481.47" not in "".join(pages[:-1])
    match = re.search(r"Page (\d+) of (\d+)", squash(pages[-1]))
    assert match is not None
    assert (int(match[1]), int(match[2])) == (n, n)
    # Every line made it into the document, in order, exactly once.
    found = re.findall(r"Hosting package (\d{4})", "".join(pages))
    assert found == [f"{i:04d}" for i in range(1, 501)]


def test_grouped_lines_show_group_names_and_subtotals():
    names = ["Sales", "Support", "Engineering"]
    doc = make_doc(9, groups=names)
    doc["groups"] = [
        {"name": "Sales", "subtotal": "111.11", "subtotal_minor": 11111},
        {"name": "Support", "subtotal": "222.22", "subtotal_minor": 22222},
        {"name": "Engineering", "subtotal": "333.33", "subtotal_minor": 33333},
    ]
    text = "".join(pages_text(render_invoice_pdf(doc)))
    flat = squash(text)
    for group in doc["groups"]:
        assert group["name"] in text
        assert f"Subtotal {group['name']} €{group['subtotal']}" in flat
    # Group headers come in document order, each before its own lines.
    positions = [text.index(name) for name in names]
    assert positions == sorted(positions)
    assert text.index("Sales") < text.index("Hosting package 0001")
    assert text.index("Hosting package 0003") < text.index("Support")
    assert text.index("Support") < text.index("Hosting package 0004")


def test_hostile_text_is_escaped_and_rendered_literally():
    hostile = [
        '<script>alert("pwned")</script>',
        "Fish & Chips <b>not bold</b>",
        "O'Brien's \"quoted\" & <i>unclosed",
        "</td></tr></table><h1>broken out</h1>",
    ]
    doc = make_doc(len(hostile))
    for line, description in zip(doc["lines"], hostile, strict=True):
        line["description"] = description
    doc["recipient"]["name"] = "Smith & Sons <Ltd>"
    doc["notes"] = "Pay <u>now</u> & thanks"
    pdf = render_invoice_pdf(doc)
    pages = pages_text(pdf)
    assert len(pages) == 1
    text = pages[0]
    for description in hostile:
        assert description in text
    assert "Smith & Sons <Ltd>" in text
    assert "Pay <u>now</u> & thanks" in text
    # The injected markup did not end the table early: the totals still follow.
    assert text.index("broken out") < text.index("€1,481.47")


def test_credit_note_says_so_and_references_the_invoice():
    doc = make_doc(2, kind="credit_note", number="CN-000007", credit_note_for="INV-000041")
    pages = pages_text(render_invoice_pdf(doc))
    assert len(pages) == 1
    text = pages[0]
    assert "Credit note" in text
    assert "CN-000007" in text
    assert "This credit note refers to invoice INV-000041." in squash(text)
    # The title is the credit note's, not an invoice's.
    assert "Invoice" not in text.replace("invoice INV-000041", "")


def test_optional_fields_may_be_missing():
    doc = make_doc(1, notes=None, groups=[])
    doc["issuer"].update(tax_id=None, email=None)
    text = pages_text(render_invoice_pdf(doc))[0]
    assert "VAT ID" not in text
    assert "NOTES" not in text
    assert "INV-000042" in text


def test_render_failure_raises_runtime_error(monkeypatch):
    from plugins.invoice_pdf import formats as render

    class Failed:
        err = 2

    monkeypatch.setattr(render.pisa, "CreatePDF", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match="2 error"):
        render_invoice_pdf(make_doc(1))


def test_a_buyer_with_german_as_invoice_language_gets_a_german_invoice():
    doc = make_doc(2, language="de")
    doc["lines"][0].update(quantity="1234.5", unit_price="0.0123", amount_minor=1518)
    text = squash(pages_text(render_invoice_pdf(doc))[0].replace("\xa0", " "))
    for phrase in ("Rechnung", "Nummer INV-000042", "Rechnungsdatum 15.11.2026",
                   "Fällig am 29.11.2026", "Leistungszeitraum 15.10.2026 – 13.11.2026",
                   "Beschreibung", "Einzelpreis (netto)", "1.234,5", "0,0123 €", "15,18 €",
                   "Nettobetrag 1.234,56 €", "USt. 20 % auf 1.234,56 € 246,91 €",
                   "Gesamtbetrag 1.481,47 €", "Seite 1 von 1"):  # fmt: skip
        assert phrase in text, phrase
    for english in ("Invoice", "Due date", "Unit price", "Total", "Page 1"):
        assert english not in text


def test_an_unknown_or_missing_invoice_language_renders_in_english():
    for language in ("fr", None, "", "<b>de</b>"):
        text = squash(pages_text(render_invoice_pdf(make_doc(1, language=language)))[0])
        assert "Invoice" in text and "Due date Nov 29, 2026" in text and "€1,481.47" in text


def test_values_inside_translated_sentences_are_escaped_in_every_language():
    for language, sentence in (("en", "refers to invoice"), ("de", "bezieht sich auf Rechnung")):
        doc = make_doc(1, kind="credit_note", credit_note_for="<i>INV</i> & 1", language=language)
        doc["recipient"]["country"], doc["recipient"]["country_name"] = "<b>", "<b>"
        doc["recipient"]["address"] = ["1 Road", "<b>"]
        html = render_invoice_html(doc)
        assert "&lt;i&gt;INV&lt;/i&gt; &amp; 1" in html and "<i>INV" not in html
        text = squash(pages_text(render_invoice_pdf(doc))[0])
        assert f"{sentence} <i>INV</i> & 1" in text and "<b>" in text


@pytest.mark.parametrize("lines, wrap, pages, passes",
                         [(12, 1, 1, 1), (30, 1, 2, 2), (165, 1, 5, 2), (14, 12, 3, 3)])  # fmt: skip
def test_an_invoice_is_laid_out_once_per_pass_it_needs(monkeypatch, lines, wrap, pages, passes):
    """Issue 18: a one-page invoice costs one xhtml2pdf layout pass (its footer's "of 1" was
    a ``<pdf:pagecount>``, which made xhtml2pdf lay out every document twice); a longer one
    the two passes of ``<pdf:pagecount>``; a short one whose descriptions wrap onto a second
    page after all is rendered again that way, and its footer says so. Translation and Babel
    formatting happen in the template, never by laying the document out again."""
    from xhtml2pdf.document import PmlBaseDoc

    calls = []
    real = PmlBaseDoc.build
    monkeypatch.setattr(PmlBaseDoc, "build", lambda *a, **k: calls.append(1) or real(*a, **k))
    doc = make_doc(lines, language="de")
    for line in doc["lines"]:
        line["description"] = " ".join([line["description"]] * wrap)
    found = pages_text(render_invoice_pdf(doc))
    assert len(calls) == passes
    assert len(found) == pages
    for number, text in enumerate(found, start=1):
        assert f"Seite {number} von {pages}" in squash(text)
