"""`billhive demo` leaves Contoso Ltd with a subscription and usage that a bill run invoices
correctly, in RAW and PDF."""

from __future__ import annotations

import io
from datetime import date

import pytest
from pypdf import PdfReader

from core.billing.invoicing import raw, storage
from core.billing.models import Invoice, InvoiceFile
from core.billing.runs import engine
from core.models import Account


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"])


def test_demo_customer_gets_one_correct_invoice_in_raw_and_pdf(ctx):
    from hostapp.demo import load_demo

    load_demo(ctx, lambda *a: None)
    load_demo(ctx, lambda *a: None)  # idempotent
    summary = engine.run(date.today())
    contoso = Account.get(Account.name == "Contoso Ltd")
    invoices = [i for i in summary["invoices"] if i["account_id"] == contoso.id]
    assert len(invoices) == 1 and not summary["failures"]
    inv = Invoice.get_by_id(invoices[0]["id"])
    # 3 seats x 25.00 = 75.00; 600 GB above the 500 GB tier: 600 x 0.04 = 24.00; tax 20 %
    assert [line.amount for line in inv.lines] == [7500, 2400]
    assert (inv.subtotal, inv.tax, inv.total) == (9900, 1980, 11880)
    assert {f.format for f in InvoiceFile.select().where(InvoiceFile.invoice == inv.id)} == {
        "RAW",
        "PDF",
    }
    header, lines = raw.parse(storage.file_for(inv, "RAW")[0])
    assert header["total"] == "118.80" and len(lines) == 2
    pdf = PdfReader(io.BytesIO(storage.file_for(inv, "PDF")[0]))
    assert "€118.80" in pdf.pages[0].extract_text()  # Babel, English
    # the demo's parties: addresses, VAT IDs with valid check digits, the provider's IBAN
    assert header["issuer_vat_id"] == "DE136695976" and header["account_vat_id"] == "DE812345673"
    assert header["account_address"] == "Leopoldstraße 200; 80804 München; Germany"
    assert header["payment_iban"] == "DE89 3704 0044 0532 0130 00"
    assert header["payment_reference"] == f"{inv.number}/A-{contoso.id}"
    assert header["reverse_charge"] == ""  # Munich buys from Berlin: German VAT
    northwind = Account.get(Account.name == "Northwind Reseller")
    from core.billing.invoicing import tax

    assert tax.decide(Account.get_by_id(contoso.parent_id), northwind)["reverse_charge"] is True
    assert engine.run(date.today())["invoices_created"] == 0
