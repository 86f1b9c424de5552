"""In a real Chromium: the operator sees an invoice's e-mail on its page, sends it again,
finds both in the Outbox and opens one; the provider's admin edits a template on the Billing
page's "E-mail templates" sub-tab, previews it, fixes a mistake the form names, and saves.
No page logs a console error."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.test_mail import billed_customer, issue_invoice

pytestmark = pytest.mark.browser

app = pytest.fixture(
    lambda make_app: make_app(plugins=["invoice_pdf"], csrf=True, MAIL_RETRY_SECONDS=60),
    name="app",
)


def console_errors(page) -> list:
    """Console errors, but the browser's own favicon request (the panel has none yet: issue
    20 item 6, not this change)."""
    errors: list = []

    def seen(m):
        if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico"):
            errors.append((m.text, m.location.get("url", "")))

    page.on("console", seen)
    return errors


def login(page, live_server, email):
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_the_operator_sends_an_invoice_again_and_finds_it_in_the_outbox(world, live_server, page):
    errors = console_errors(page)
    invoice = issue_invoice(world, billed_customer(world))
    login(page, live_server, world.operator.email)
    page.goto(f"{live_server}/billing/invoices/{invoice.id}")
    history = page.locator("table.mail-history tbody tr")
    assert history.count() == 1
    assert "ap@contoso.example" in history.first.inner_text()
    assert history.first.get_attribute("data-status") == "sent"
    page.select_option("#send-again select[name=event]", "reminder_1")
    page.click("#send-again button[type=submit]")
    assert "sent to ap@contoso.example" in page.locator(".flash").first.inner_text()
    assert history.count() == 2
    assert "First reminder (sent again)" in history.nth(1).inner_text()

    page.click("nav >> text=Outbox")
    rows = page.locator("table.outbox tbody tr")
    assert rows.count() == 2
    assert f"Reminder: invoice {invoice.number} is overdue" in rows.first.inner_text()
    rows.nth(1).locator("text=Open").click()
    assert page.locator("h1").inner_text().startswith(f"Invoice: Invoice {invoice.number}")
    assert "Dear Contoso Ltd," in page.locator("pre.mail-body").inner_text()
    with page.expect_download() as download:
        page.click("text=Download .eml")
    assert download.value.suggested_filename.endswith(".eml")
    assert errors == []


def test_an_issuer_admin_previews_fixes_and_saves_a_template(world, live_server, page):
    errors = console_errors(page)
    invoice = issue_invoice(world, billed_customer(world))
    login(page, live_server, world.operator.email)
    page.goto(f"{live_server}/accounts/{world.provider.id}")
    page.click(".tabs >> text=Billing")
    page.click(".billing-subtabs >> text=E-mail templates")
    page.click("text=Payment receipt")
    assert "Payment received" in page.input_value("#f-subject")
    page.fill("#f-subject", "Danke: {{ payment.amount")
    page.click("button[value=preview]")
    assert page.locator(".flash.error").inner_text().startswith("Please correct: Subject:")
    assert "unexpected end of template" in page.locator(".field-error").first.inner_text()
    assert page.input_value("#f-subject") == "Danke: {{ payment.amount"  # kept
    page.fill("#f-subject", "Danke: {{ payment.amount }}")
    page.click("button[value=preview]")
    assert page.locator("#preview-subject").inner_text() == f"Danke: {invoice.total / 100:.2f} EUR"
    page.click("button[value=save]")
    assert "is saved" in page.locator(".flash").first.inner_text()
    assert page.input_value("#f-subject") == "Danke: {{ payment.amount }}"
    # the one refused form answered 422 (as the panel's other forms do), which Chromium logs
    assert [text for text, _ in errors] == [
        "Failed to load resource: the server responded with a status of 422 (UNPROCESSABLE ENTITY)"
    ]
