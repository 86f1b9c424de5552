"""What makes an invoice legal to send to an EU business (issue 19): billing details on
accounts, the issuer's payment instructions, the parties kept at issue, the tax rule (reverse
charge, the buyer's rate, the issuer's rate), the due date from the issue date, and the
document every format renders."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core.billing.invoicing import documents, lifecycle, parties
from core.billing.invoicing.tax import REVERSE_CHARGE_STATEMENT
from core.billing.ledger import payments
from core.billing.models import Invoice
from core.billing.runs import engine
from core.errors import Forbidden, NotFound, ValidationFailed
from core.models import Account, AuditEntry
from tests.billing_support import set_tax, setup_catalog, subscribe

PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "PDF",
    "customer_billing_cycle_day": 15,
}
# valid check digits (python-stdnum's own examples and the Commission's test numbers)
DE_VAT, FR_VAT, AT_VAT = "DE136695976", "FR40303265045", "ATU13585627"
IBAN = "DE89370400440532013000"


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts"])


@pytest.fixture
def resellers(ctx, install_license):
    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    return ctx


def provider_in_germany(world, **extra):
    return parties.update(None, world.provider, {
        "legal_name": "Billhive Demo GmbH", "street": "Friedrichstr. 1", "postcode": "10117",
        "city": "Berlin", "country": "DE", "vat_id": DE_VAT, "iban": IBAN, **extra})  # fmt: skip


def buyer_in(account, country, vat_id="", **extra):
    return parties.update(None, account, {
        "legal_name": f"{account.name} SARL", "street": "1 rue de Rivoli", "postcode": "75001",
        "city": "Paris", "country": country, "vat_id": vat_id, **extra})  # fmt: skip


def draft_for(world, account, amount="100.00"):
    return lifecycle.create_draft(
        None, account, world.provider, [{"description": "Consulting", "unit_price": amount}]
    )


def fresh(invoice):
    return Invoice.get_by_id(invoice.id)


# -- billing details: validation -------------------------------------------------------------


def test_every_bad_field_is_named_at_once_and_nothing_is_written(world):
    with pytest.raises(ValidationFailed) as err:
        parties.update(None, world.customer_a, {
            "country": "XX", "vat_id": "DE123", "billing_emails": ["ap@a.example", "not-mail"],
            "invoice_language": "fr", "street": "1\n2\n3\n4", "legal_name": "x\x00"})  # fmt: skip
    errors = err.value.errors
    assert set(errors) == {"country", "vat_id", "billing_emails.1", "invoice_language",
                           "street", "legal_name"}  # fmt: skip
    assert "ISO 3166" in errors["country"][0]
    assert "Country:" in err.value.message and "Invoice language:" in err.value.message
    assert parties.BillingDetails.select().count() == 0
    # with a valid country, a bad VAT ID is named too
    with pytest.raises(ValidationFailed) as err:
        parties.update(None, world.customer_a, {"country": "DE", "vat_id": "DE136695977"})
    assert set(err.value.errors) == {"vat_id"}
    assert "DE136695977" in err.value.errors["vat_id"][0]
    assert "VAT ID:" in err.value.message


def test_vat_ids_are_stored_compact_with_their_country_prefix(world):
    d = buyer_in(world.customer_a, "fr", vat_id="fr 40 303 265 045")
    assert (d.country, d.vat_id) == ("FR", FR_VAT)
    d = parties.update(None, world.customer_a, {"country": "DE", "vat_id": "136695976"})
    assert d.vat_id == DE_VAT  # typed without its prefix: the country's added
    d = parties.update(None, world.customer_a, {"country": "GR", "vat_id": "094259216"})
    assert d.vat_id == "EL094259216"  # Greece's VAT prefix is EL
    d = parties.update(None, world.customer_a, {"country": "CH", "vat_id": "CHE-100.155.212 MWST"})
    assert d.vat_id == "CHE100155212MWST"  # stdnum.ch.vat
    with pytest.raises(ValidationFailed) as err:
        parties.update(None, world.customer_a, {"country": "CH", "vat_id": "CHE-100.155.213"})
    assert "Switzerland" in err.value.errors["vat_id"][0]
    d = parties.update(None, world.customer_a, {"country": "US", "vat_id": "12-3456789"})
    assert d.vat_id == "123456789"  # no stdnum module: the generic shape check
    with pytest.raises(ValidationFailed):
        parties.update(None, world.customer_a, {"country": "US", "vat_id": "N/A"})


def test_billing_emails_take_a_list_or_one_text_and_refuse_what_is_not_an_address(world):
    d = parties.update(None, world.customer_a, {"billing_emails": "AP@a.example, ap@a.example\n"
                                                                    "boss@a.example"})  # fmt: skip
    assert d.billing_emails == ["ap@a.example", "boss@a.example"]
    assert parties.billing_emails(world.customer_a) == ["ap@a.example", "boss@a.example"]
    with pytest.raises(ValidationFailed) as err:
        parties.update(None, world.customer_a, {"billing_emails": "ap@a.example, nope"})
    assert "billing_emails.1" in err.value.errors
    with pytest.raises(ValidationFailed):
        parties.update(None, world.customer_a,
                       {"billing_emails": [f"u{i}@a.example" for i in range(11)]})  # fmt: skip
    assert parties.details_of(world.customer_a).billing_emails == ["ap@a.example", "boss@a.example"]


def test_payment_instructions_are_checked_with_schwifty_and_only_issuers_have_them(world):
    with pytest.raises(ValidationFailed) as err:
        parties.update(None, world.provider, {"iban": "DE89370400440532013001", "bic": "XXXX",
                                              "payment_reference": "{number}/{customer}",
                                              "payment_terms_days": 366})  # fmt: skip
    assert set(err.value.errors) == {"iban", "bic", "payment_reference", "payment_terms_days"}
    assert "not a valid IBAN" in err.value.errors["iban"][0]
    with pytest.raises(ValidationFailed) as err:
        parties.update(None, world.provider, {"bic": "COBADEFFXXX"})
    assert err.value.errors == {"iban": ["is needed with a BIC"]}
    with pytest.raises(ValidationFailed) as err:
        parties.update(None, world.provider, {"payment_reference": "{account_ref}"})
    assert "{number}" in err.value.errors["payment_reference"][0]
    d = parties.update(None, world.provider, {"iban": "de89 3704 0044 0532 0130 00",
                                              "bic": "cobadeffxxx", "payment_terms_days": "30",
                                              "payment_reference": "{number}/{account_ref}"})  # fmt: skip
    assert (d.iban, d.bic, d.payment_terms_days) == (IBAN, "COBADEFFXXX", 30)
    assert parties.payment_instructions(world.provider)["iban"] == "DE89 3704 0044 0532 0130 00"
    with pytest.raises(ValidationFailed) as err:
        parties.update(None, world.customer_a, {"iban": IBAN})
    assert "only the provider and resellers" in err.value.errors["iban"][0]


# -- who edits -------------------------------------------------------------------------------


def test_the_account_admin_and_the_seller_edit_billing_details_others_get_404(world):
    parties.update(world.user_a, world.customer_a, {"city": "Paris", "country": "FR"})
    parties.update(world.operator, world.customer_a, {"postcode": "75001"})
    d = parties.details_of(world.customer_a)
    assert (d.city, d.postcode, d.country) == ("Paris", "75001", "FR")
    with pytest.raises(NotFound):
        parties.update(world.user_b, world.customer_a, {"city": "Lyon"})
    with pytest.raises(NotFound):  # a customer never edits the provider above it
        parties.update(world.user_a, world.provider, {"city": "Lyon"})
    assert parties.details_of(world.customer_a).city == "Paris"
    audit = AuditEntry.select().where(AuditEntry.action == "account.billing_details")
    assert audit.count() == 2


def test_payment_instructions_belong_to_the_issuers_own_admins(resellers, world):
    reseller = world.add_account(world.provider, "Reseller", "reseller", profile=PROFILE)
    admin = world.add_user(reseller, "admin@reseller.example")
    parties.update(admin, reseller, {"iban": IBAN, "payment_terms_days": 10})
    parties.update(world.operator, world.provider, {"payment_text": "Pay by cheque"})
    # the provider edits the reseller's address, but not where its customers pay
    parties.update(world.operator, reseller, {"city": "Wien", "country": "AT"})
    with pytest.raises(Forbidden) as err:
        parties.update(world.operator, reseller, {"iban": "GB33BUKB20201555555555"})
    assert "own admins" in err.value.message and set(err.value.errors) == {"iban"}
    d = parties.details_of(reseller)
    assert (d.iban, d.payment_terms_days, d.city) == (IBAN, 10, "Wien")


# -- the tax rule ----------------------------------------------------------------------------


def test_a_business_in_another_eu_country_is_reverse_charged_on_drafts_and_bill_runs(world):
    provider_in_germany(world)
    world.provider = set_tax(world.provider, "19")
    buyer_in(world.customer_a, "FR", vat_id=FR_VAT)
    issued = lifecycle.issue(draft_for(world, world.customer_a))
    assert (issued.tax_rate, issued.tax, issued.total) == ("0", 0, 10000)
    doc = documents.build(fresh(issued))
    assert doc["reverse_charge"] is True
    assert doc["reverse_charge_statement"] == REVERSE_CHARGE_STATEMENT
    assert doc["tax_breakdown"] == [{"rate": "0%", "rate_percent": "0", "taxable": "100.00",
                                     "taxable_minor": 10000, "tax": "0.00", "tax_minor": 0}]  # fmt: skip
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan, start="2026-01-01")
    engine.run(date(2026, 2, 1))
    billed = Invoice.get(
        (Invoice.account == world.customer_a.id) & Invoice.run_period.is_null(False)
    )
    assert (billed.tax_rate, billed.tax, billed.total) == ("0", 0, 3000)
    assert documents.build(billed)["reverse_charge"] is True
    # its credit note keeps the reverse charge, even after the buyer's VAT ID is gone
    parties.update(None, world.customer_a, {"vat_id": ""})
    note = lifecycle.credit_note(fresh(issued))
    doc = documents.build(fresh(note))
    assert (note.tax, doc["reverse_charge"], doc["payment"]) == (0, True, None)


def test_the_buyers_rate_drives_the_invoice_else_the_issuers(world):
    provider_in_germany(world)
    world.provider = set_tax(world.provider, "19")
    buyer_in(world.customer_a, "DE", vat_id=DE_VAT)  # same country as the seller: taxed
    world.customer_b = set_tax(world.customer_b, "7")
    a = lifecycle.issue(draft_for(world, world.customer_a))
    b_draft = draft_for(world, world.customer_b)
    assert b_draft.tax_rate == "7"
    b = lifecycle.issue(b_draft)
    assert (a.tax_rate, a.tax) == ("19", 1900)
    assert (b.tax_rate, b.tax) == ("7", 700)
    assert documents.build(fresh(a))["reverse_charge"] is False
    _, plan = setup_catalog(world.provider)
    for account in (world.customer_a, world.customer_b):
        subscribe(account, plan, start="2026-01-01")
    engine.run(date(2026, 2, 1))
    rates = {
        i.account_id: (i.tax_rate, i.tax)
        for i in Invoice.select().where(Invoice.run_period.is_null(False))
    }
    assert rates == {world.customer_a.id: ("19", 570), world.customer_b.id: ("7", 210)}


def test_a_draft_is_rated_again_when_it_is_issued(world):
    provider_in_germany(world)
    world.provider = set_tax(world.provider, "19")
    draft = draft_for(world, world.customer_a)
    assert draft.tax_rate == "19"
    buyer_in(world.customer_a, "AT", vat_id=AT_VAT)  # it gave its VAT ID before the issue
    preview = documents.build(fresh(draft))  # the draft as it stands: taxed, no statement
    assert (preview["tax_rate"], preview["reverse_charge"]) == ("19%", False)
    issued = lifecycle.issue(fresh(draft))
    assert (issued.tax_rate, issued.tax) == ("0", 0)
    assert documents.build(fresh(issued))["reverse_charge"] is True


def test_no_reverse_charge_without_the_sellers_country_or_outside_the_eu(world):
    world.provider = set_tax(world.provider, "20")
    buyer_in(world.customer_a, "FR", vat_id=FR_VAT)
    assert lifecycle.issue(draft_for(world, world.customer_a)).tax == 2000  # seller unknown
    provider_in_germany(world)
    parties.update(None, world.customer_b, {"country": "CH", "vat_id": "CHE100155212MWST"})
    assert lifecycle.issue(draft_for(world, world.customer_b)).tax == 2000  # not EU


# -- the due date ----------------------------------------------------------------------------


def test_a_late_bill_run_never_issues_an_invoice_that_is_already_overdue(world):
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan, start="2026-01-01")
    engine.run(date(2026, 2, 1))  # months after the period ended
    billed = Invoice.get(Invoice.account == world.customer_a.id)
    assert billed.due_date == billed.issued_at.date() + timedelta(days=14)
    assert billed.due_date >= date.today()


def test_due_dates_follow_the_buyers_terms_else_the_issuers(world):
    parties.update(None, world.provider, {"payment_terms_days": 30})
    payments.update_settings(world.operator, world.customer_b, {"payment_terms_days": 7})
    a = lifecycle.issue(draft_for(world, world.customer_a))
    b = lifecycle.issue(draft_for(world, world.customer_b))
    assert a.due_date == a.issued_at.date() + timedelta(days=30)
    assert b.due_date == b.issued_at.date() + timedelta(days=7)
    assert documents.build(fresh(a))["payment"]["terms_days"] == 30
    parties.update(None, world.provider, {"payment_terms_days": 0})
    c = lifecycle.issue(draft_for(world, world.customer_a))
    assert c.due_date == c.issued_at.date()  # due on receipt


# -- the snapshot and the document -----------------------------------------------------------


def test_a_later_address_change_never_alters_an_issued_invoice(world):
    provider_in_germany(world, payment_reference="{number}/{account_ref}")
    buyer_in(world.customer_a, "FR", vat_id=FR_VAT, billing_emails=["ap@a.example"])
    draft = draft_for(world, world.customer_a)
    issued = lifecycle.issue(draft)
    before = documents.build(fresh(issued))
    parties.update(None, world.customer_a, {"street": "99 avenue Foch", "vat_id": "",
                                            "legal_name": "Renamed SA"})  # fmt: skip
    parties.update(None, world.provider, {"iban": "GB33BUKB20201555555555",
                                          "city": "München", "postcode": "80331"})  # fmt: skip
    Account.update(name="Renamed").where(Account.id == world.customer_a.id).execute()
    after = documents.build(fresh(issued))
    assert after == before
    assert after["recipient"]["address"] == ["1 rue de Rivoli", "75001 Paris", "France"]
    assert after["recipient"]["name"] == "Customer A SARL"
    assert after["issuer"]["address"] == ["Friedrichstr. 1", "10117 Berlin", "Germany"]
    assert after["payment"]["iban"] == "DE89 3704 0044 0532 0130 00"
    assert after["payment"]["reference"] == f"{issued.number}/A-{world.customer_a.id}"
    # a draft shows the parties as they are now
    assert documents.build(fresh(draft_for(world, world.customer_a)))["recipient"]["name"] == (
        "Renamed SA"
    )


DOCUMENT_KEYS = {
    "kind", "number", "status", "currency", "language", "issue_date", "due_date",
    "period_start", "period_end", "supply_period", "issuer", "recipient", "payment", "lines",
    "groups", "subtotal", "tax", "total", "subtotal_minor", "tax_minor", "total_minor",
    "tax_rate", "tax_breakdown", "reverse_charge", "reverse_charge_statement", "amount_paid",
    "credit_applied", "amount_due", "amount_paid_minor", "credit_applied_minor",
    "amount_due_minor", "credit_note_for", "notes",
}  # fmt: skip
PARTY_KEYS = {
    "name", "address", "street", "postcode", "city", "region", "country", "country_name",
    "vat_id", "tax_id", "registration_number", "email", "emails", "account_ref", "language",
}  # fmt: skip


def test_the_document_carries_every_article_226_item_and_what_is_owed(world):
    """The keys the module doc lists, each with what a reader of the invoice checks."""
    provider_in_germany(world, registration_number="HRB 12345", bic="COBADEFFXXX")
    world.provider = set_tax(world.provider, "19")
    buyer_in(world.customer_a, "DE", vat_id=DE_VAT, invoice_language="de",
             billing_emails=["ap@a.example"])  # fmt: skip
    _, plan = setup_catalog(world.provider, price="30.00")
    subscribe(world.customer_a, plan, start="2026-01-17")
    engine.run(date(2026, 2, 1))
    invoice = Invoice.get(Invoice.account == world.customer_a.id)
    payments.record_payment(world.operator, world.customer_a, {"amount": "5.00"})
    doc = documents.build(fresh(invoice))
    assert set(doc) == DOCUMENT_KEYS
    assert set(doc["issuer"]) == set(doc["recipient"]) == PARTY_KEYS
    assert doc["issuer"]["vat_id"] == DE_VAT and doc["recipient"]["vat_id"] == DE_VAT
    assert doc["issuer"]["registration_number"] == "HRB 12345"
    assert doc["language"] == "de" and doc["recipient"]["email"] == "ap@a.example"
    assert doc["supply_period"] == {"start": "2026-01-17", "end": "2026-01-31"}
    line = doc["lines"][0]
    assert (line["service_start"], line["service_end"]) == ("2026-01-17", "2026-02-01")
    assert doc["payment"]["bic"] == "COBADEFFXXX"
    assert doc["payment"]["reference"] == invoice.number
    total = invoice.total
    assert [b["tax_minor"] for b in doc["tax_breakdown"]] == [invoice.tax]
    assert sum(b["taxable_minor"] + b["tax_minor"] for b in doc["tax_breakdown"]) == total
    assert (doc["amount_paid_minor"], doc["credit_applied_minor"]) == (500, 0)
    assert doc["amount_due_minor"] == total - 500
    assert doc["amount_paid"] == "5.00 EUR"
    # a credit note for it settles the rest: credit applied, nothing due
    lifecycle.credit_note(fresh(invoice))
    doc = documents.build(fresh(invoice))
    assert (doc["amount_paid_minor"], doc["credit_applied_minor"], doc["amount_due_minor"]) == (
        500, total - 500, 0)  # fmt: skip


def test_an_account_without_billing_details_keeps_its_plain_address(world):
    Account.update(address="Main St 1\n\n1000 Town").where(
        Account.id == world.customer_a.id
    ).execute()
    issued = lifecycle.issue(draft_for(world, fresh_account(world.customer_a)))
    doc = documents.build(fresh(issued))
    assert doc["recipient"]["address"] == ["Main St 1", "1000 Town"]
    assert doc["recipient"]["name"] == "Customer A" and doc["recipient"]["vat_id"] == ""
    assert doc["payment"]["iban"] == "" and doc["payment"]["reference"] == issued.number
    assert doc["supply_period"] is None  # no period, no service days: supplied on issue


def fresh_account(account):
    return Account.get_by_id(account.id)


# -- the API ---------------------------------------------------------------------------------


def test_billing_details_through_the_api(resellers, world, api):
    from tests.conftest import Fresh

    customer = Fresh(api(world.user_a))
    url = f"/api/v1/accounts/{world.customer_a.id}/billing-details"
    resp = customer.get(url)
    assert resp.status_code == 200
    assert resp.get_json()["legal_name"] == "" and resp.get_json()["is_issuer"] is False
    resp = customer.patch(url, json={"legal_name": "Customer A SARL", "country": "fr",
                                     "vat_id": "FR 40 303 265 045",
                                     "billing_emails": ["ap@a.example"]})  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["country"], body["vat_id"], body["billing_emails"]) == ("FR", FR_VAT,
                                                                         ["ap@a.example"])  # fmt: skip
    # bad input: every field named, nothing written, never a 500
    resp = customer.patch(url, json={"country": "France", "billing_emails": ["x"],
                                     "invoice_language": "xx", "iban": IBAN})  # fmt: skip
    assert resp.status_code == 422
    assert {"country", "billing_emails.0", "invoice_language", "iban"} <= set(
        resp.get_json()["errors"]
    )
    resp = customer.patch(url, json={"vat_id": "FR00000000000"})
    assert resp.status_code == 422 and set(resp.get_json()["errors"]) == {"vat_id"}
    resp = customer.patch(url, json={"nickname": "x"})
    assert resp.status_code == 422
    for body in ([FR_VAT], "FR", {"payment_terms_days": "10" * 20}, {"country": None}):
        resp = customer.patch(url, json=body)
        assert resp.status_code == 422, (body, resp.get_json())
    resp = customer.patch(url, data="country=DE", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415
    assert customer.get(url).get_json()["vat_id"] == FR_VAT
    # another customer's details do not exist for it
    other = f"/api/v1/accounts/{world.customer_b.id}/billing-details"
    assert customer.get(other).status_code == 404
    assert customer.patch(other, json={"city": "Lyon"}).status_code == 404
    # the provider's operator: its own payment instructions yes, a reseller's no
    reseller = world.add_account(world.provider, "Reseller", "reseller", profile=PROFILE)
    operator = Fresh(api(world.operator))
    resp = operator.patch(f"/api/v1/accounts/{world.provider.id}/billing-details",
                          json={"iban": IBAN, "bic": "COBADEFFXXX"})  # fmt: skip
    assert resp.status_code == 200 and resp.get_json()["is_issuer"] is True
    resp = operator.patch(f"/api/v1/accounts/{reseller.id}/billing-details", json={"iban": IBAN})
    assert resp.status_code == 403
    resp = operator.patch(f"/api/v1/accounts/{reseller.id}/billing-details",
                          json={"city": "Wien"})  # fmt: skip
    assert resp.status_code == 200


def test_the_openapi_document_describes_billing_details(world, ctx):
    spec = ctx.test_client().get("/api/v1/openapi.json").get_json()
    path = spec["paths"]["/api/v1/accounts/{account_id}/billing-details"]
    assert {"200", "404"} <= set(path["get"]["responses"])
    assert {"200", "403", "404", "415", "422"} <= set(path["patch"]["responses"])


# -- the CLI ---------------------------------------------------------------------------------


def test_the_operators_shell_shows_and_sets_billing_details(world, ctx, monkeypatch):
    from click.testing import CliRunner

    import hostapp.cli

    monkeypatch.setattr(hostapp.cli, "_app", ctx)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(hostapp.cli.main, ["accounts", "billing-details", *args])

    result = run(str(world.provider.id), "--country", "DE", "--vat-id", "DE136695977",
                 "--iban", "DE00", "--street", "Friedrichstr. 1\\nHof 2")  # fmt: skip
    assert result.exit_code != 0
    assert "VAT ID:" in result.output and "IBAN:" in result.output
    assert parties.BillingDetails.select().count() == 0
    result = run(str(world.provider.id), "--country", "de", "--vat-id", "136695976",
                 "--iban", IBAN, "--street", "Friedrichstr. 1\\nHof 2", "--city", "Berlin",
                 "--payment-terms-days", "21")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"VAT ID: {DE_VAT}" in result.output and "terms 21 days" in result.output
    assert parties.details_of(world.provider).street == "Friedrichstr. 1\nHof 2"
    shown = run(str(world.customer_a.id))
    assert shown.exit_code == 0 and "Payment:" not in shown.output
    result = run(str(world.customer_a.id), "--iban", IBAN)
    assert result.exit_code != 0 and "only the provider and resellers" in result.output
    assert run("999999").exit_code != 0


def test_the_raw_file_carries_the_parties_payment_and_reverse_charge(world):
    from core.billing.invoicing import raw, storage

    provider_in_germany(world, registration_number="HRB 12345")
    buyer_in(world.customer_a, "FR", vat_id=FR_VAT)
    issued = lifecycle.issue(draft_for(world, world.customer_a))
    header, lines = raw.parse(storage.file_for(fresh(issued), "RAW")[0])
    assert header["issuer"] == "Billhive Demo GmbH" and header["issuer_vat_id"] == DE_VAT
    assert header["issuer_address"] == "Friedrichstr. 1; 10117 Berlin; Germany"
    assert header["issuer_registration"] == "HRB 12345"
    assert (header["account"], header["account_vat_id"], header["account_country"]) == (
        "Customer A SARL", FR_VAT, "FR")  # fmt: skip
    assert header["issue_date"] == issued.issued_at.date().isoformat()
    assert header["due_date"] == issued.due_date.isoformat()
    assert header["reverse_charge"] == REVERSE_CHARGE_STATEMENT
    assert (header["tax_rate"], header["tax"], header["total"]) == ("0", "0.00", "100.00")
    assert header["payment_iban"] == "DE89 3704 0044 0532 0130 00"
    assert header["payment_reference"] == issued.number and header["payment_terms_days"] == "14"
    assert len(lines) == 1 and lines[0]["unit_price"] == "100"


def test_parallel_editors_of_new_billing_details_each_keep_their_field(world, api):
    """Eight PATCHes of one account's details, none saved yet, released together (threads of
    one web process; on PostgreSQL each its own connection): each answers 200 and every field
    sent is kept, none lost to another editor's write or refused as a duplicate row."""
    import threading

    fields = {"legal_name": "Customer A SARL", "street": "1 rue de Rivoli", "postcode": "75001",
              "city": "Paris", "region": "Île-de-France", "country": "FR",
              "registration_number": "RCS 123", "billing_emails": ["ap@a.example"]}  # fmt: skip
    url = f"/api/v1/accounts/{world.customer_a.id}/billing-details"
    clients = [api(world.user_a) for _ in fields]  # a thread has no app context of its own
    barrier = threading.Barrier(len(fields))
    answers: dict = {}

    def patch(client, name, value):
        barrier.wait()
        answers[name] = client.patch(url, json={name: value}).status_code

    threads = [threading.Thread(target=patch, args=(c, n, v))
               for c, (n, v) in zip(clients, fields.items(), strict=True)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == {name: 200 for name in fields}
    stored = parties.details_of(world.customer_a)
    assert {name: getattr(stored, name) for name in fields} == fields
    assert parties.BillingDetails.select().count() == 1


# -- over any sequence of edits --------------------------------------------------------------

EDITS = {
    "legal_name": ["Renamed SA", "Other GmbH", ""],
    "street": ["99 avenue Foch", "Hauptstr. 5\nHinterhaus", ""],
    "postcode": ["80331", "1010", ""],
    "city": ["München", "Wien", ""],
    "country": ["DE", "AT", "FR", "CH", ""],
    "vat_id": ["", DE_VAT, AT_VAT, FR_VAT],
    "registration_number": ["HRB 1", ""],
    "billing_emails": [["x@y.example"], []],
    "invoice_language": ["en", "de"],
}
PAYMENT_EDITS = {
    "iban": ["", "GB33BUKB20201555555555"],
    "payment_text": ["Cash only", ""],
    "payment_terms_days": [0, 60, None],
    "payment_reference": ["{number}", "{issue_year}-{number}"],
}


def test_no_sequence_of_edits_changes_an_issued_invoice(world):
    """Hypothesis: whatever the buyer and the seller change afterwards (addresses, VAT IDs,
    bank account, terms, tax rates), an issued invoice's document and stored row stay as
    they were issued."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    provider_in_germany(world)
    buyer_in(world.customer_a, "FR", vat_id=FR_VAT)
    issued = lifecycle.issue(draft_for(world, world.customer_a))
    before = documents.build(fresh(issued))
    stored = (issued.tax_rate, issued.tax, issued.total, issued.due_date)

    def edit(pool):
        return st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in pool.items()})

    step = st.one_of(
        st.tuples(st.just("buyer"), edit(EDITS)),
        st.tuples(st.just("seller"), edit(EDITS | PAYMENT_EDITS)),
        st.tuples(st.just("rate"), st.sampled_from(["0", "7", "19.5", "100"])),
    )

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(step, max_size=6))
    def check(steps):
        for who, change in steps:
            if who == "rate":
                Account.update(tax_rate=change).where(Account.id == world.customer_a.id).execute()
                continue
            account = world.customer_a if who == "buyer" else world.provider
            try:
                parties.update(None, account, change)
            except ValidationFailed:  # e.g. a VAT ID of another country than the address
                pass
        invoice = fresh(issued)
        assert documents.build(invoice) == before
        assert (invoice.tax_rate, invoice.tax, invoice.total, invoice.due_date) == stored

    check()


def test_invoices_issued_before_the_upgrade_get_their_parties_kept_at_start(world, make_app):
    """Core migration 4: an invoice issued by a release that kept no parties gets them, as the
    accounts are when the upgraded release starts; a change after that never alters it."""
    from core.migrations import SchemaMigration

    provider_in_germany(world)
    buyer_in(world.customer_a, "FR", vat_id=FR_VAT)
    old = lifecycle.issue(draft_for(world, world.customer_a))
    draft = draft_for(world, world.customer_b)
    # as the older release left it: no parties row, step 4 not applied
    parties.InvoiceParties.delete().execute()
    SchemaMigration.delete().where(SchemaMigration.name == "invoice_parties_backfill").execute()

    make_app(plugins=["reseller_accounts"])  # the upgraded release starts
    assert SchemaMigration.select().where(
        SchemaMigration.name == "invoice_parties_backfill").count() == 1  # fmt: skip
    kept = parties.InvoiceParties.get(parties.InvoiceParties.invoice == old.id)
    assert kept.buyer["vat_id"] == FR_VAT and kept.payment["reference"] == old.number
    assert parties.InvoiceParties.select().count() == 1  # the draft has none
    before = documents.build(fresh(old))
    parties.update(None, world.customer_a, {"city": "Lyon", "vat_id": ""})
    assert documents.build(fresh(old)) == before
    assert documents.build(fresh(draft))["recipient"]["name"] == "Customer B"
    assert parties.backfill() == 0  # nothing left to do


def test_the_api_gives_an_invoices_document_within_the_callers_subtree(world, api):
    from tests.conftest import Fresh

    provider_in_germany(world)
    buyer_in(world.customer_a, "FR", vat_id=FR_VAT)
    issued = lifecycle.issue(draft_for(world, world.customer_a))
    customer = Fresh(api(world.user_a))
    resp = customer.get(f"/api/v1/invoices/{issued.id}/document")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert set(doc) == DOCUMENT_KEYS
    assert doc["reverse_charge"] is True and doc["recipient"]["vat_id"] == FR_VAT
    assert doc["payment"]["iban"] == "DE89 3704 0044 0532 0130 00"
    assert doc["amount_due_minor"] == issued.total
    other = Fresh(api(world.user_b))
    assert other.get(f"/api/v1/invoices/{issued.id}/document").status_code == 404
    spec = customer.get("/api/v1/openapi.json").get_json()
    assert "404" in spec["paths"]["/api/v1/invoices/{invoice_id}/document"]["get"]["responses"]
