"""Resellers in a real browser: the operator creates a reseller with its profile through the
generic account form (the profile appears only for Reseller), gives it an admin, and that
admin logs in and creates a customer of its own, which bills on the profile's cycle day."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts"], csrf=True)


def log_in(page, base, email):
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))


def submit(page, selector="button[type=submit]:text-is('Save')"):
    with page.expect_navigation():
        page.click(selector)


def test_operator_creates_a_reseller_whose_admin_creates_a_customer(
    world, ctx, live_server, page, install_license
):
    from core.models import Account

    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    base = live_server

    # the operator: Resellers -> Add reseller
    log_in(page, base, world.operator.email)
    page.click("header nav a:text-is('Resellers')")
    page.wait_for_url(f"{base}/resellers")
    page.click("text=Add reseller")
    page.wait_for_url(re.compile(r".*/accounts/\d+/new\?type=reseller$"))
    profile = page.locator("fieldset.profile[data-type=reseller]")
    assert page.locator("#f-type option").all_inner_texts() == ["Standard", "Reseller"]
    # "Add reseller" opens the form with Reseller chosen and its profile shown
    assert page.locator("#f-type").input_value() == "reseller" and profile.is_visible()
    page.select_option("#f-type", "customer")
    assert profile.is_hidden()  # Standard: no profile
    page.select_option("#f-type", "reseller")
    assert profile.is_visible()
    page.fill("#f-name", "Acme Reseller")
    page.fill("#f-invoice_prefix", "ACME-")
    page.check("input[name='profile.customer_invoice_creation']")
    page.select_option("select[name='profile.customer_invoice_type']", label="Both (RAW & PDF)")
    page.fill("input[name='profile.customer_billing_cycle_day']", "29")
    page.fill("#f-bill_cycle_day", "40")
    submit(page)
    # both problems at once, named as the form names them, each beside its field
    summary = page.locator(".flash.error").inner_text()
    assert "Billing Cycle:" in summary and "Bill cycle day:" in summary, summary
    assert "profile." not in summary and "bill_cycle_day" not in summary, summary
    assert "from 1 to 28" in page.locator("#e-profile\\.customer_billing_cycle_day").inner_text()
    assert "1 to 28" in page.locator("#e-bill_cycle_day").inner_text()
    # nothing typed is lost: the type, the name, the prefix, the profile's choices
    assert page.locator("#f-type").input_value() == "reseller" and profile.is_visible()
    assert page.input_value("#f-name") == "Acme Reseller"
    assert page.input_value("#f-invoice_prefix") == "ACME-"
    assert page.is_checked("input[name='profile.customer_invoice_creation']")
    assert page.input_value("select[name='profile.customer_invoice_type']") == "BOTH"
    page.fill("input[name='profile.customer_billing_cycle_day']", "15")
    page.fill("#f-bill_cycle_day", "1")
    submit(page)
    reseller = Account.get(Account.name == "Acme Reseller")
    assert reseller.profile == {
        "customer_invoice_creation": True,
        "customer_invoice_type": "BOTH",
        "customer_billing_cycle_day": 15,
    }
    page.wait_for_url(f"{base}/accounts/{reseller.id}")

    # its Reseller tab shows the profile; the Users tab gives it an admin
    page.click(".tabs a:text-is('Reseller')")
    page.wait_for_url(f"{base}/resellers/{reseller.id}")
    assert page.locator("td[data-field=customer_invoice_type]").inner_text() == "Both (RAW & PDF)"
    page.click(".tabs a:text-is('Users')")
    page.fill("#f-email", "admin@acme.example")
    page.fill("#f-password", PASSWORD)
    # "Customer Full Access": the operator cannot hand out the reseller's "Full Access" role
    # (it holds servicedesk.submit, which does not exist at provider level: no escalation)
    page.get_by_label("Customer Full Access", exact=True).check()
    submit(page, "button:text-is('Add user')")
    assert page.locator(".flash.error").count() == 0, page.locator(".flash.error").inner_text()
    assert page.locator("td:text-is('admin@acme.example')").count() == 1
    with page.expect_navigation():
        page.click("button:text-is('Log out')")

    # the reseller's admin creates its own customer
    log_in(page, base, "admin@acme.example")
    assert page.url == f"{base}/accounts/{reseller.id}"
    # sub-resellers are off: Standard only, and the form says why Reseller is missing
    page.click("a:text-is('Add account')")
    assert page.locator("#f-type option").all_inner_texts() == ["Standard"]
    assert "sub-resellers are switched off" in page.locator("#type-unavailable").inner_text()
    # the cycle day shown is the one saved: the profile's Billing Cycle, not editable here
    day = page.locator("#f-bill_cycle_day-customer")
    assert day.input_value() == "15" and day.get_attribute("readonly") is not None
    assert "Billing Cycle of Acme Reseller" in page.locator(".help.fixed").inner_text()
    page.fill("#f-name", "Acme Customer")
    submit(page)
    customer = Account.get(Account.name == "Acme Customer")
    assert customer.parent_id == reseller.id and customer.bill_cycle_day == 15
    assert "Acme Customer" in page.content()
    # and cannot reach the provider or the other customers
    assert page.goto(f"{base}/accounts/{world.customer_a.id}").status == 404
    assert page.goto(f"{base}/resellers").status == 403  # no resellers.view in this role
