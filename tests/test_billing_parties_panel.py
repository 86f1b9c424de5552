"""The Billing details page of an account in the panel: reached from the Overview, every bad
field named at once with every typed value kept, payment instructions only on one's own
issuing account, and (in a real Chromium) a customer admin giving its address and VAT ID that
the next invoice carries."""

from __future__ import annotations

import pytest

from core.billing.invoicing import documents, lifecycle, parties
from tests.conftest import PASSWORD, Fresh

FR_VAT, IBAN = "FR40303265045", "DE89370400440532013000"


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf"])


def test_the_form_names_every_bad_field_and_keeps_every_value(world, panel):
    client = Fresh(panel(world.user_a))
    overview = client.get(f"/accounts/{world.customer_a.id}").get_data(as_text=True)
    assert 'id="billing-details"' in overview and "Edit billing details" in overview
    url = f"/accounts/{world.customer_a.id}/billing-details"
    page = client.get(url).get_data(as_text=True)
    assert 'name="iban"' not in page  # a customer issues no invoices
    form = {"legal_name": "Customer A SARL", "street": "1 rue de Rivoli", "postcode": "75001",
            "city": "Paris", "country": "ZZ", "vat_id": "FR00000000000",
            "billing_emails": "ap@a.example, not-an-address", "invoice_language": "en"}  # fmt: skip
    resp = client.post(url, data=form)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "Country:" in html and "Billing e-mails:" in html and "VAT ID:" in html
    assert 'value="Customer A SARL"' in html and 'value="ap@a.example, not-an-address"' in html
    assert "1 rue de Rivoli" in html
    assert parties.BillingDetails.select().count() == 0
    resp = client.post(url, data=form | {"country": "FR", "vat_id": "FR 40303265045",
                                         "billing_emails": "ap@a.example"})  # fmt: skip
    assert resp.status_code == 302
    overview = client.get(f"/accounts/{world.customer_a.id}").get_data(as_text=True)
    assert FR_VAT in overview and "75001 Paris" in overview and "France" in overview
    # another customer's page does not exist for it
    assert client.get(f"/accounts/{world.customer_b.id}/billing-details").status_code == 404
    assert client.post(f"/accounts/{world.customer_b.id}/billing-details",
                       data={"city": "Lyon"}).status_code == 404  # fmt: skip


def test_the_operator_sets_the_providers_payment_instructions(world, panel):
    client = Fresh(panel(world.operator))
    url = f"/accounts/{world.provider.id}/billing-details"
    resp = client.post(url, data={"legal_name": "Billhive Demo GmbH", "country": "DE",
                                  "invoice_language": "en", "iban": "DE89370400440532013001",
                                  "payment_terms_days": "30",
                                  "payment_reference": "{number}"})  # fmt: skip
    assert resp.status_code == 422 and "IBAN:" in resp.get_data(as_text=True)
    assert 'value="30"' in resp.get_data(as_text=True)
    resp = client.post(url, data={"legal_name": "Billhive Demo GmbH", "country": "DE",
                                  "invoice_language": "en", "iban": IBAN,
                                  "payment_terms_days": "30", "payment_reference": "{number}"})  # fmt: skip
    assert resp.status_code == 302
    assert parties.details_of(world.provider).iban == IBAN
    # on a customer's page the operator sees no payment fields (customers issue nothing)
    page = client.get(f"/accounts/{world.customer_a.id}/billing-details").get_data(as_text=True)
    assert 'name="iban"' not in page


@pytest.mark.browser
def test_a_customer_admin_gives_its_vat_id_and_the_next_invoice_carries_it(
    world, live_server, page, make_app
):
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.user_a.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server}/accounts/{world.customer_a.id}")
    page.click("#edit-billing-details")
    form = page.locator("#billing-details-form")
    form.locator("input[name=legal_name]").fill("Customer A SARL")
    form.locator("textarea[name=street]").fill("1 rue de Rivoli")
    form.locator("input[name=postcode]").fill("75001")
    form.locator("input[name=city]").fill("Paris")
    form.locator("select[name=country]").select_option("FR")
    form.locator("input[name=vat_id]").fill("FR00000000000")
    form.locator("input[name=billing_emails]").fill("ap@a.example")
    form.locator("button[type=submit]").click()
    assert "VAT ID:" in page.locator(".flash.error").inner_text()
    assert page.locator("input[name=legal_name]").input_value() == "Customer A SARL"
    assert page.locator("select[name=country]").input_value() == "FR"
    page.locator("input[name=vat_id]").fill(FR_VAT)
    page.locator("#billing-details-form button[type=submit]").click()
    assert "Billing details saved." in page.locator(".flash").first.inner_text()
    card = page.locator("#billing-details")
    assert FR_VAT in card.inner_text() and "75001 Paris" in card.inner_text()
    issued = lifecycle.issue(lifecycle.create_draft(
        None, world.customer_a, world.provider, [{"description": "Support", "unit_price": "10"}]))  # fmt: skip
    doc = documents.build(issued)
    assert doc["recipient"]["vat_id"] == FR_VAT and doc["recipient"]["name"] == "Customer A SARL"
