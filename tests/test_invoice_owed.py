"""What is owed on an invoice (issue 19 item 3): the panel's invoice page and the API show
amount paid, credit applied and amount due, from the ledger, after partial payments, credit
notes, prepaid credit, marking paid and voids. The hypothesis check over random sequences is
in tests/test_ledger_properties.py (``check``)."""

from __future__ import annotations

import re

import pytest

from core.billing.invoicing import lifecycle
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments
from core.billing.models import Invoice, LedgerEntry
from tests.conftest import PASSWORD

app = pytest.fixture(lambda make_app: make_app(plugins=["invoice_pdf"]), name="app")


def issue(world, account, *prices):
    lines = [{"description": f"Service {i}", "unit_price": p} for i, p in enumerate(prices, 1)]
    return lifecycle.issue(lifecycle.create_draft(None, account, world.provider, lines))


def fresh(invoice):
    return Invoice.get_by_id(invoice.id)


def owed_in_api(client, invoice):
    body = client.get(f"/api/v1/invoices/{invoice.id}").get_json()
    return {k: body[f"{k}_minor"] for k in ("amount_paid", "credit_applied", "amount_due")}


def owed_on_page(client, invoice):
    html = client.get(f"/billing/invoices/{invoice.id}").get_data(as_text=True)
    out = {}
    for row in ("amount-paid", "credit-applied", "amount-due"):
        match = re.search(rf'<tr id="{row}">.*?<td class="num">(?:<b>)?([^<]+)<', html, re.S)
        out[row] = match[1] if match else None
    return out


def test_partial_payment_credit_note_prepaid_credit_and_marking_paid(world, api, panel):
    a = world.customer_a
    inv = issue(world, a, "60.00", "40.00")
    op_api, customer_api = api(world.operator), api(world.user_a)
    op_panel, customer_panel = panel(world.operator), panel(world.user_a)
    nothing = {"amount_paid": 0, "credit_applied": 0, "amount_due": 10000}
    assert owed_in_api(customer_api, inv) == nothing

    payments.record_payment(world.operator, a, {"amount": "30.00"})  # partial
    assert owed_in_api(customer_api, inv) == {"amount_paid": 3000, "credit_applied": 0,
                                              "amount_due": 7000}  # fmt: skip
    assert owed_on_page(customer_panel, inv) == {
        "amount-paid": "-30.00 EUR", "credit-applied": "0.00 EUR", "amount-due": "70.00 EUR"
    }  # fmt: skip

    lifecycle.credit_note(fresh(inv), world.operator, positions=[2])  # 40.00 credited
    assert owed_in_api(op_api, inv) == {"amount_paid": 3000, "credit_applied": 4000,
                                        "amount_due": 3000}  # fmt: skip

    topup = payments.create_topup(world.operator, a, {"amount": "20.00"})
    payments.record_payment(world.operator, a, {"amount": "20.00", "invoice_ids": [topup.id]})
    # the paid top-up's credit pays what is open at once (ledger.apply_prepaid)
    assert owed_in_api(op_api, inv) == {"amount_paid": 3000, "credit_applied": 6000,
                                        "amount_due": 1000}  # fmt: skip
    assert owed_on_page(op_panel, inv)["credit-applied"] == "-60.00 EUR"
    assert ledger.summary(a)[0]["amount_due"] == 1000  # the My account figure agrees

    lifecycle.mark_paid(fresh(inv), world.operator)  # records a payment of the 10.00 left
    assert owed_in_api(op_api, inv) == {"amount_paid": 4000, "credit_applied": 6000,
                                        "amount_due": 0}  # fmt: skip
    assert owed_on_page(customer_panel, inv)["amount-due"] == "0.00 EUR"
    assert fresh(inv).status == "paid"


def test_an_overpayment_shows_the_invoice_paid_and_the_rest_stays_credit(world, api):
    a = world.customer_a
    inv = issue(world, a, "12.34")
    payments.record_payment(world.operator, a, {"amount": "20.00"})
    assert owed_in_api(api(world.user_a), inv) == {"amount_paid": 1234, "credit_applied": 0,
                                                   "amount_due": 0}  # fmt: skip
    later = issue(world, a, "10.00")  # draws the 7.66 left, oldest money first
    assert owed_in_api(api(world.user_a), later) == {"amount_paid": 766, "credit_applied": 0,
                                                     "amount_due": 234}  # fmt: skip


def test_a_reversed_payment_is_owed_again(world, api):
    a = world.customer_a
    inv = issue(world, a, "50.00")
    payments.record_payment(world.operator, a, {"amount": "20.00"})  # a mistaken one
    assert owed_in_api(api(world.operator), inv)["amount_due"] == 3000
    entry = LedgerEntry.get((LedgerEntry.account == a.id) & (LedgerEntry.kind == "payment"))
    payments.reverse_entry(world.operator, a, entry.id)
    assert owed_in_api(api(world.operator), inv) == {"amount_paid": 0, "credit_applied": 0,
                                                     "amount_due": 5000}  # fmt: skip


def test_void_owes_nothing_and_drafts_and_credit_notes_have_no_amount_owed(world, api, panel):
    a = world.customer_a
    inv = issue(world, a, "50.00")
    payments.record_payment(world.operator, a, {"amount": "10.00"})
    lifecycle.void(fresh(inv), world.operator)
    client = api(world.user_a)
    assert owed_in_api(client, inv) == {"amount_paid": 0, "credit_applied": 0, "amount_due": 0}
    html = panel(world.user_a).get(f"/billing/invoices/{inv.id}").get_data(as_text=True)
    assert "void: nothing is owed" in html
    assert ledger.balance(a, "EUR") == -1000  # the 10.00 is the account's credit again

    draft = lifecycle.create_draft(None, a, world.provider, [{"description": "x",
                                                              "unit_price": "5.00"}])  # fmt: skip
    other = issue(world, a, "8.00")
    note = lifecycle.credit_note(fresh(other), world.operator)
    for doc in (draft, note):
        assert owed_in_api(api(world.operator), doc) == {
            "amount_paid": None, "credit_applied": None, "amount_due": None
        }  # fmt: skip
        page = panel(world.operator).get(f"/billing/invoices/{doc.id}").get_data(as_text=True)
        assert 'id="amount-due"' not in page


def test_the_openapi_document_describes_the_owed_fields(ctx):
    spec = ctx.test_client().get("/api/v1/openapi.json").get_json()
    detail = spec["components"]["schemas"]["InvoiceDetail"]["properties"]
    for name in ("amount_paid_minor", "credit_applied_minor", "amount_due_minor"):
        assert detail[name]["type"] == "integer" and detail[name]["nullable"] is True
        assert "minor units" in detail[name]["description"]


@pytest.mark.browser
def test_in_chromium_the_invoice_page_shows_what_is_owed_then_nothing_after_a_void(
    world, live_server, page
):
    a = world.customer_a
    inv = issue(world, a, "120.00")
    payments.record_payment(world.operator, a, {"amount": "45.50"})
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.operator.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server}/billing/invoices/{inv.id}")
    assert page.locator("#amount-paid td.num").last.inner_text() == "-45.50 EUR"
    assert page.locator("#credit-applied td.num").last.inner_text() == "0.00 EUR"
    assert page.locator("#amount-due td.num").last.inner_text() == "74.50 EUR"
    assert page.locator("#amount-due-summary").inner_text() == "74.50 EUR"
    page.click("form[action$='/void'] button")
    page.click("dialog#confirm-dialog button[data-ok]")  # the panel asks first
    assert "void" in page.locator("h1 .badge").inner_text()
    assert page.locator("#amount-due td.num").last.inner_text() == "0.00 EUR"
    assert page.locator("#amount-paid td.num").last.inner_text() == "0.00 EUR"
    assert "void: nothing is owed" in page.locator("#amount-due-summary").inner_text()


def test_the_invoice_page_names_the_parties_supply_tax_and_payment_as_issued(world, panel):
    from core.billing.invoicing import parties

    parties.update(None, world.provider, {
        "legal_name": "Billhive Demo GmbH", "street": "Friedrichstr. 1", "postcode": "10117",
        "city": "Berlin", "country": "DE", "vat_id": "DE136695976",
        "iban": "DE89370400440532013000", "payment_reference": "{number}"})  # fmt: skip
    parties.update(None, world.customer_a, {
        "legal_name": "Customer A SARL", "street": "1 rue de Rivoli", "postcode": "75001",
        "city": "Paris", "country": "FR", "vat_id": "FR40303265045",
        "invoice_language": "de"})  # fmt: skip
    inv = issue(world, world.customer_a, "100.00")
    parties.update(None, world.customer_a, {"city": "Lyon"})  # after the issue
    html = panel(world.user_a).get(f"/billing/invoices/{inv.id}").get_data(as_text=True)
    seller = html.split('id="seller"', 1)[1].split("</section>", 1)[0]
    buyer = html.split('id="buyer"', 1)[1].split("</section>", 1)[0]
    assert "Billhive Demo GmbH" in seller and "VAT ID: DE136695976" in seller
    assert "Customer A SARL" in buyer and "75001 Paris" in buyer and "Lyon" not in buyer
    assert "VAT ID: FR40303265045" in buyer and "Invoice language: German" in buyer
    assert "reverse charge" in html and 'id="reverse-charge"' in html
    payment = html.split('id="payment"', 1)[1].split("</section>", 1)[0]
    assert "IBAN DE89 3704 0044 0532 0130 00" in payment and f"<b>{inv.number}</b>" in payment
