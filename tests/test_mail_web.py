"""E-mail in the API and the panel: an invoice's send history and "Send again", a message and
its .eml, the operator's Outbox, an issuer's templates with a preview; scoped like the rest
(outside the caller's subtree: 404)."""

from __future__ import annotations

import pytest

from tests.mail_support import outbox_files, parse
from tests.test_mail import billed_customer, issue_invoice, messages_of

API = "/api/v1"


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"], MAIL_RETRY_SECONDS=60)


@pytest.fixture
def issued(ctx, world):
    customer = billed_customer(world)
    return issue_invoice(world, customer)


def test_the_api_lists_an_invoices_messages_to_the_issuer_and_the_buyer(issued, world, api):
    for user in (world.operator, world.user_a):
        resp = api(user).get(f"{API}/invoices/{issued.id}/messages")
        assert resp.status_code == 200, resp.get_json()
        [item] = resp.get_json()
        assert item["event"] == "invoice" and item["status"] == "sent"
        assert item["to"] == ["ap@contoso.example"]
        assert item["from"] == "Provider GmbH <billing@provider.example>"
        assert item["event_key"] == f"invoice:{issued.id}:issued"
    assert api(world.user_b).get(f"{API}/invoices/{issued.id}/messages").status_code == 404


def test_send_again_through_the_api_is_a_new_audited_message_sent_once_per_key(
    ctx, issued, world, api
):
    from core.models import AuditEntry

    client = api(world.operator)
    resp = client.post(f"{API}/invoices/{issued.id}/messages", json={"key": "click-1"})
    assert resp.status_code == 201, resp.get_json()
    again = resp.get_json()
    assert again["event_key"] == f"invoice:{issued.id}:again:click-1"
    assert again["status"] == "sent"
    replay = client.post(f"{API}/invoices/{issued.id}/messages", json={"key": "click-1"})
    assert replay.get_json()["id"] == again["id"]
    reminder = client.post(f"{API}/invoices/{issued.id}/messages", json={"event": "reminder_1"})
    assert reminder.status_code == 201 and reminder.get_json()["subject"].startswith("Reminder:")
    assert len(messages_of(issued)) == 3
    assert len(outbox_files(ctx)) == 3
    audits = AuditEntry.select().where(AuditEntry.action == "invoice.send_again")
    assert audits.count() == 2 and {a.actor_label for a in audits} == {"op@example.com"}


def test_send_again_refusals_name_the_field_and_send_nothing(ctx, issued, world, api):
    from core.billing.invoicing import lifecycle as invoices
    from core.models import Account

    client = api(world.operator)
    bad = client.post(f"{API}/invoices/{issued.id}/messages", json={"event": "birthday"})
    assert bad.status_code == 422 and "event" in bad.get_json()["errors"]
    wrong = client.post(f"{API}/invoices/{issued.id}/messages", json={"event": "credit_note"})
    assert wrong.status_code == 422
    assert wrong.get_json()["errors"]["event"] == [
        "for an invoice: one of invoice, reminder_1, reminder_2, final_notice"
    ]
    long_key = client.post(f"{API}/invoices/{issued.id}/messages", json={"key": "k" * 65})
    assert long_key.status_code == 422 and "key" in long_key.get_json()["errors"]
    buyer = api(world.user_a).post(f"{API}/invoices/{issued.id}/messages", json={})
    assert buyer.status_code == 403
    other = api(world.user_b).post(f"{API}/invoices/{issued.id}/messages", json={})
    assert other.status_code == 404
    draft = invoices.create_draft(None, world.customer_a, Account.get_by_id(world.provider.id),
                                  [{"description": "x", "unit_price": "1"}])  # fmt: skip
    resp = client.post(f"{API}/invoices/{draft.id}/messages", json={})
    assert resp.status_code == 422 and "issue it first" in resp.get_json()["message"]
    assert len(messages_of(issued)) == 1 and len(outbox_files(ctx)) == 1


def test_the_openapi_document_has_the_messages_operations(ctx):
    doc = ctx.test_client().get(f"{API}/openapi.json").get_json()
    path = doc["paths"]["/api/v1/invoices/{invoice_id}/messages"]
    assert {"200", "404"} <= set(path["get"]["responses"])
    assert {"201", "403", "404", "422"} <= set(path["post"]["responses"])


def test_the_invoice_page_shows_the_history_and_sends_again(ctx, issued, world, panel):
    client = panel(world.operator)
    page = client.get(f"/billing/invoices/{issued.id}").get_data(as_text=True)
    assert 'id="email"' in page and "ap@contoso.example" in page and ">sent<" in page
    assert 'id="send-again"' in page
    resp = client.post(f"/billing/invoices/{issued.id}/send-again",
                       data={"key": "form-1", "event": "invoice"})  # fmt: skip
    assert resp.status_code == 302
    client.post(f"/billing/invoices/{issued.id}/send-again", data={"key": "form-1"})  # twice
    assert len(messages_of(issued)) == 2
    page = client.get(f"/billing/invoices/{issued.id}").get_data(as_text=True)
    assert "(sent again)" in page and "sent to ap@contoso.example" in page
    buyer_page = panel(world.user_a).get(f"/billing/invoices/{issued.id}").get_data(as_text=True)
    assert "ap@contoso.example" in buyer_page and 'id="send-again"' not in buyer_page


def test_a_message_opens_and_downloads_as_eml_within_the_subtree_only(ctx, issued, world, panel):
    [message] = messages_of(issued)
    page = panel(world.user_a).get(f"/mail/messages/{message.id}")
    assert page.status_code == 200 and issued.number in page.get_data(as_text=True)
    eml = panel(world.operator).get(f"/mail/messages/{message.id}.eml")
    assert eml.status_code == 200 and eml.mimetype == "message/rfc822"
    assert parse(eml.data)["Subject"] == message.subject
    assert panel(world.user_b).get(f"/mail/messages/{message.id}").status_code == 404
    assert panel(world.user_b).get(f"/mail/messages/{message.id}.eml").status_code == 404


def test_the_outbox_is_the_operators(ctx, issued, world, panel):
    page = panel(world.operator).get("/mail/outbox")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"Invoice {issued.number} from Provider GmbH" in text and "Outbox" in text
    assert "Outbox" in panel(world.operator).get("/accounts").get_data(as_text=True)  # menu
    failed = panel(world.operator).get("/mail/outbox?status=failed").get_data(as_text=True)
    assert issued.number not in failed
    assert panel(world.user_a).get("/mail/outbox").status_code == 403


def test_an_issuer_edits_its_template_with_a_preview_and_the_next_invoice_uses_it(
    ctx, issued, world, panel
):
    client = panel(world.operator)
    url = f"/accounts/{world.provider.id}/billing/email-templates"
    page = client.get(url + "?event=invoice")
    assert page.status_code == 200
    assert "Invoice {{ invoice.number }} from {{ issuer.name }}" in page.get_data(as_text=True)
    subject = "Rechnung {{ invoice.number }} – {{ invoice.total }}"
    body = "Hallo {{ account.name }},\nbitte zahlen Sie {{ invoice.amount_due }}."
    preview = client.post(url, data={"event": "invoice", "subject": subject, "body": body,
                                     "action": "preview"})  # fmt: skip
    text = preview.get_data(as_text=True)
    assert f"Rechnung {issued.number} – 118.80 EUR" in text and "Hallo Contoso Ltd," in text
    saved = client.post(url, data={"event": "invoice", "subject": subject, "body": body})
    assert saved.status_code == 302
    second = issue_invoice(world, billed_customer(world), amount="10.00")
    [message] = messages_of(second)
    assert message.subject == f"Rechnung {second.number} – 12.00 EUR"
    assert message.body == "Hallo Contoso Ltd,\nbitte zahlen Sie 12.00 EUR."
    reset = client.post(url, data={"event": "invoice", "action": "reset"})
    assert reset.status_code == 302
    third = issue_invoice(world, billed_customer(world), amount="1.00")
    assert messages_of(third)[0].subject.startswith("Invoice ")


@pytest.mark.parametrize(
    ("subject", "body", "field", "says"),
    [
        ("Invoice {{ invoice.number", "ok", "subject", "unexpected end of template"),
        ("ok", "{% if %}", "body", "Expected an expression"),
        ("ok", "{{ invoce.number }}", "body", "'invoce' is undefined"),
        ("ok", "{{ ''.__class__.__mro__ }}", "body", "unsafe"),
        ("", "ok", "subject", "is required"),
        ("{{ '' }}", "ok", "subject", "renders as an empty subject"),
    ],
)
def test_a_bad_template_is_a_form_error_naming_the_field_and_keeps_what_was_typed(
    ctx, world, panel, subject, body, field, says
):
    from core.mail.models import MailTemplate

    client = panel(world.operator)
    url = f"/accounts/{world.provider.id}/billing/email-templates"
    resp = client.post(url, data={"event": "reminder_1", "subject": subject, "body": body})
    assert resp.status_code == 422
    text = resp.get_data(as_text=True)
    label = {"subject": "Subject", "body": "Body"}[field]
    assert f"{label}: " in text and says in text.replace("&#39;", "'")
    assert body.replace("'", "&#39;") in text or body in text  # what was typed is kept
    assert MailTemplate.select().count() == 0


def test_templates_are_the_issuers_admins_business(ctx, world, panel):
    url = f"/accounts/{world.provider.id}/billing/email-templates"
    assert panel(world.user_a).get(url).status_code == 404  # above the customer: not its tree
    own = panel(world.operator).get(f"/accounts/{world.provider.id}/billing/my-account")
    assert "E-mail templates" in own.get_data(as_text=True)  # a Billing sub-tab


def test_a_payment_through_the_api_and_mark_paid_each_send_one_receipt(ctx, world, api):
    from core.mail.models import MailMessage

    customer = billed_customer(world)
    first = issue_invoice(world, customer, amount="10.00")
    second = issue_invoice(world, customer, amount="20.00")
    client = api(world.operator)
    key = {"Idempotency-Key": "pay-1"}
    for _ in range(2):  # the retried request replays the first answer: one receipt
        resp = client.post(f"{API}/accounts/{customer.id}/payments", headers=key,
                           json={"amount": "12.00", "invoice_ids": [first.id]})  # fmt: skip
        assert resp.status_code == 201, resp.get_json()
    paid = client.post(f"{API}/invoices/{second.id}/pay")
    assert paid.status_code == 200
    receipts = list(MailMessage.select().where(MailMessage.event == "receipt").order_by(
        MailMessage.id))  # fmt: skip
    assert [(r.invoice_id, r.subject, r.status) for r in receipts] == [
        (first.id, "Payment received: 12.00 EUR", "sent"),
        (second.id, "Payment received: 24.00 EUR", "sent"),
    ]
    assert f"marked paid: {second.number}" in receipts[1].body


def test_a_reseller_admin_writes_the_resellers_template_and_only_its_customers_get_it(
    ctx, world, install_license, panel
):
    from core.billing.invoicing import lifecycle as invoices
    from core.mail.models import MailMessage

    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    reseller = world.add_account(world.provider, "Northwind", "reseller", profile={
        "customer_invoice_creation": True, "customer_invoice_type": "RAW",
        "customer_billing_cycle_day": 1})  # fmt: skip
    admin = world.add_user(reseller, "rita@northwind.example")
    retail = world.add_account(reseller, "Fabrikam", email="ap@fabrikam.example")
    client = panel(admin)
    page = client.get(f"/accounts/{reseller.id}/billing/my-account").get_data(as_text=True)
    assert "E-mail templates" in page
    url = f"/accounts/{reseller.id}/billing/email-templates"
    saved = client.post(url, data={"event": "invoice", "subject": "Northwind: {{ invoice.number }}",
                                   "body": "Hi {{ account.name }}"})  # fmt: skip
    assert saved.status_code == 302
    assert client.get(f"/accounts/{world.provider.id}/billing/email-templates").status_code == 404
    own = invoices.issue(invoices.create_draft(None, retail, reseller,
                                               [{"description": "Seat", "unit_price": "5"}]))  # fmt: skip
    other = issue_invoice(world, billed_customer(world))  # the provider's, to its customer
    subjects = {m.invoice_id: m.subject for m in MailMessage.select()}
    assert subjects[own.id] == f"Northwind: {own.number}"
    assert subjects[other.id] == f"Invoice {other.number} from Provider GmbH"
    retail_admin = world.add_user(retail, "frank@fabrikam.example")
    retail_page = panel(retail_admin).get(f"/accounts/{retail.id}/billing/my-account")
    assert "E-mail templates" not in retail_page.get_data(as_text=True)  # customers issue none
