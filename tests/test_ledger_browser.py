"""In a real Chromium: the operator opens a customer's Billing page, records a payment on the
Transactions tab and sees the invoice turn paid and the balance change on My account."""

from __future__ import annotations

import pytest

from core.billing.invoicing import lifecycle
from core.billing.models import Invoice
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

app = pytest.fixture(lambda make_app: make_app(plugins=["invoice_pdf"], csrf=True), name="app")


def test_recording_a_payment_turns_the_invoice_paid_and_changes_the_balance(
    world, live_server, page
):
    a = world.customer_a
    draft = lifecycle.create_draft(None, a, world.provider,
                                   [{"description": "Consulting", "unit_price": "120.00"}])  # fmt: skip
    invoice = lifecycle.issue(draft)
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.operator.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server}/accounts/{a.id}")
    page.click(".tabs >> text=Billing")
    balance = page.locator("#balances tr[data-currency=EUR] .balance")
    assert balance.inner_text().startswith("120.00 EUR")
    assert page.locator(f"#open-invoices tr[data-number='{invoice.number}']").count() == 1

    page.click(".billing-subtabs >> text=Transactions")
    form = page.locator("#payment-form")
    form.locator("input[name=amount]").fill("120.00")
    form.locator("input[name=reference]").fill("Wire 0042")
    form.locator(f"input[name=invoice_ids][value='{invoice.id}']").check()
    form.locator("#record-payment").click()
    assert "allocated to " + invoice.number in page.locator(".flash").first.inner_text()
    assert page.locator("tr[data-kind=payment]").count() == 1
    assert "Wire 0042" in page.locator("tr[data-kind=payment]").inner_text()

    page.click(".billing-subtabs >> text=My account")
    assert (
        page.locator("#balances tr[data-currency=EUR] .balance").inner_text().startswith("0.00 EUR")
    )
    assert "Nothing is due" in page.locator("#open-invoices").inner_text()
    assert Invoice.get_by_id(invoice.id).status == "paid"
    page.click(f"text={invoice.number}")
    assert "paid" in page.locator("h1 .badge").inner_text()
