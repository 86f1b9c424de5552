"""E-mail delivery (issue 19 item 5): an issued invoice, a credit note and a recorded payment
each reach the buyer once, through the outbox folder or a real SMTP server, from the issuer;
failures are recorded and retried, never a duplicate, never an error for the issuer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.billing_support import set_tax
from tests.mail_support import outbox_files, parse


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"], MAIL_RETRY_SECONDS=0)


@pytest.fixture
def pdf(ctx):
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)


def billed_customer(world, email="ap@contoso.example", name="Contoso Ltd"):
    from core.models import Account

    Account.update(email=email, name=name).where(Account.id == world.customer_a.id).execute()
    Account.update(email="billing@provider.example", name="Provider GmbH").where(
        Account.id == world.provider.id
    ).execute()
    set_tax(world.provider, "20")
    return Account.get_by_id(world.customer_a.id)


def issue_invoice(world, customer, amount="99.00", description="Cloud seats"):
    from core.billing.invoicing import lifecycle as invoices
    from core.models import Account

    provider = Account.get_by_id(world.provider.id)
    draft = invoices.create_draft(
        None,
        customer,
        provider,
        [{"description": description, "quantity": "1", "unit_price": amount}],  # fmt: skip
    )
    return invoices.issue(draft)


def messages_of(invoice):
    from core.mail.models import MailMessage

    return list(
        MailMessage.select().where(MailMessage.invoice == invoice.id).order_by(MailMessage.id)
    )


def test_an_issued_invoice_lands_in_the_outbox_once_with_its_pdf(ctx, world, pdf):
    from core.billing.invoicing import storage
    from core.billing.invoicing.lifecycle import notify_finalized

    customer = billed_customer(world)
    invoice = issue_invoice(world, customer)
    files = outbox_files(ctx)
    assert len(files) == 1
    mail = parse(files[0].read_bytes())
    assert mail["From"] == "Provider GmbH <billing@provider.example>"
    assert mail["Reply-To"] == "billing@provider.example"
    assert mail["To"] == "ap@contoso.example"
    assert mail["Subject"] == f"Invoice {invoice.number} from Provider GmbH"
    assert mail["Message-ID"].endswith("@provider.example>")
    assert mail["Date"]
    body = mail.get_body(("plain",)).get_content()
    assert "118.80 EUR" in body and invoice.number in body
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == f"{invoice.number}.pdf"
    stored, _, _ = storage.file_for(invoice, "PDF")
    assert attachment.get_content() == stored  # the very PDF the invoice page serves
    [message] = messages_of(invoice)
    assert (message.status, message.attempts, message.transport) == ("sent", 1, "outbox")
    assert message.event_key == f"invoice:{invoice.id}:issued"

    notify_finalized(invoice)  # the news again (a retried task, a second worker)
    assert len(outbox_files(ctx)) == 1 and len(messages_of(invoice)) == 1


def test_without_the_pdf_format_the_raw_file_is_attached(ctx, world):
    customer = billed_customer(world)
    invoice = issue_invoice(world, customer)
    [mail] = [parse(p.read_bytes()) for p in outbox_files(ctx)]
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == f"{invoice.number}.csv"
    assert "Cloud seats" in attachment.get_content()


def test_a_customer_without_an_address_gets_nothing_and_the_failure_is_recorded(ctx, world):
    customer = billed_customer(world, email="")
    invoice = issue_invoice(world, customer)  # issued all the same
    assert invoice.status == "issued"
    [message] = messages_of(invoice)
    assert message.status == "failed"
    assert "Contoso Ltd has no valid billing e-mail address" in message.last_error
    assert outbox_files(ctx) == []


def test_a_credit_note_is_mailed_as_a_credit_note(ctx, world):
    from core.billing.invoicing import lifecycle as invoices

    customer = billed_customer(world)
    invoice = issue_invoice(world, customer)
    note = invoices.credit_note(invoice)
    [message] = messages_of(note)
    assert message.event == "credit_note"
    assert message.subject == f"Credit note {note.number} from Provider GmbH"
    assert invoice.number in message.body
    assert len(outbox_files(ctx)) == 2


def test_a_recorded_payment_sends_a_receipt(ctx, world):
    from core.billing.ledger import payments

    customer = billed_customer(world)
    invoice = issue_invoice(world, customer)
    payment = payments.record_payment(None, customer, {"amount": "118.80"})
    from core.mail.models import MailMessage

    receipt = MailMessage.get(MailMessage.event_key == f"payment:{payment.id}:receipt")
    assert receipt.status == "sent" and receipt.invoice_id == invoice.id
    assert receipt.subject == "Payment received: 118.80 EUR"
    assert invoice.number in receipt.body
    mail = parse(next(p for p in outbox_files(ctx) if "receipt" in p.name).read_bytes())
    assert list(mail.iter_attachments()) == []


def test_a_payment_refused_sends_no_receipt(ctx, world):
    from core.billing.ledger import payments
    from core.errors import ValidationFailed
    from core.mail.models import MailMessage

    customer = billed_customer(world)
    issue_invoice(world, customer)
    before = MailMessage.select().count()
    with pytest.raises(ValidationFailed):
        payments.record_payment(None, customer, {"amount": "10.00", "invoice_ids": [999999]})
    assert MailMessage.select().count() == before


def test_send_for_invoice_is_idempotent_by_event_key(ctx, world):
    from core.mail import send_for_invoice

    customer = billed_customer(world)
    invoice = issue_invoice(world, customer)
    first = send_for_invoice(invoice, "reminder_1", event_key="dunning:1:reminder_1",
                             context={"level": "reminder_1", "days_overdue": 3})  # fmt: skip
    again = send_for_invoice(invoice, "reminder_1", event_key="dunning:1:reminder_1")
    assert again.id == first.id
    assert first.subject == f"Reminder: invoice {invoice.number} is overdue"
    assert len([p for p in outbox_files(ctx) if "reminder_1" in p.name]) == 1
    with pytest.raises(ValueError):
        send_for_invoice(invoice, "birthday", event_key="x")


def test_a_rolled_back_transaction_sends_nothing(ctx, world):
    from core.db import database
    from core.mail import send_for_invoice
    from core.mail.models import MailMessage

    customer = billed_customer(world)
    invoice = issue_invoice(world, customer)
    sent_before = len(outbox_files(ctx))
    with pytest.raises(RuntimeError), database.atomic():
        send_for_invoice(invoice, "reminder_2", event_key="rolled-back")
        raise RuntimeError("the caller failed after recording")
    assert MailMessage.get_or_none(MailMessage.event_key == "rolled-back") is None
    assert len(outbox_files(ctx)) == sent_before


@pytest.mark.parametrize("dies", ["after writing", "before writing"])
def test_a_sender_that_stopped_is_settled_from_the_outbox_file(ctx, world, monkeypatch, dies):
    """The crash between sending and recording, with the outbox: the message's file name
    depends only on its row, so the sweeper looks: there -> sent, missing -> sent now."""
    from datetime import timedelta

    from core.mail import delivery, send_for_invoice, tasks
    from core.mail.models import MailMessage

    invoice = issue_invoice(world, billed_customer(world))
    real = delivery.transport.write_outbox

    def die(message, email):
        if dies == "after writing":
            real(message, email)
        raise SystemExit("worker killed")

    monkeypatch.setattr(delivery.transport, "write_outbox", die)
    with pytest.raises(SystemExit):
        send_for_invoice(invoice, "reminder_1", event_key="crash-test")
    monkeypatch.undo()
    message = MailMessage.get(MailMessage.event_key == "crash-test")
    assert message.status == "sending"
    stale = message.claimed_at - timedelta(seconds=ctx.config["MAIL_STALE_SECONDS"] + 1)
    MailMessage.update(claimed_at=stale).where(MailMessage.id == message.id).execute()
    report = tasks.sweep()
    message = MailMessage.get_by_id(message.id)
    assert message.status == "sent"
    if dies == "after writing":
        assert report["settled_sent"] == 1 and message.attempts == 1
    else:
        assert report["settled_retry"] == 1 and message.attempts == 2
    reminders = [p for p in outbox_files(ctx) if p.name.endswith("reminder_1.eml")]
    assert len(reminders) == 1
    assert parse(reminders[0].read_bytes())["Message-ID"] == message.message_id


def test_a_resellers_customer_gets_mail_from_the_reseller_at_its_billing_addresses(
    ctx, world, install_license
):
    from core.billing.invoicing import lifecycle as invoices
    from core.billing.invoicing import parties

    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    reseller = world.add_account(world.provider, "Northwind", "reseller", profile={
        "customer_invoice_creation": True, "customer_invoice_type": "RAW",
        "customer_billing_cycle_day": 1})  # fmt: skip
    retail = world.add_account(reseller, "Fabrikam", email="old@fabrikam.example")
    parties.update(None, reseller, {"legal_name": "Northwind Handels GmbH",
                                    "billing_emails": ["invoices@northwind.example"]})  # fmt: skip
    parties.update(None, retail, {"billing_emails": ["ap@fabrikam.example",
                                                     "cfo@fabrikam.example"]})  # fmt: skip
    draft = invoices.create_draft(None, retail, reseller,
                                  [{"description": "Seat", "unit_price": "5"}])  # fmt: skip
    invoice = invoices.issue(draft)
    [message] = messages_of(invoice)
    assert message.status == "sent"
    mail = parse((Path(ctx.config["MAIL_OUTBOX_DIR"]) / message.outbox_path).read_bytes())
    assert mail["From"] == "Northwind Handels GmbH <invoices@northwind.example>"
    assert mail["Reply-To"] == "invoices@northwind.example"
    assert mail["To"] == "ap@fabrikam.example, cfo@fabrikam.example"  # not the account e-mail
    assert mail["Subject"] == f"Invoice {invoice.number} from Northwind Handels GmbH"


def test_the_longest_non_ascii_names_and_largest_amounts_are_mailed_whole(ctx, world):
    """200 characters of a non-ASCII name (the longest an account name is) in From, the
    subject and the body; the largest amount an invoice line takes."""
    from core.fields import MAX_AMOUNT
    from core.models import Account

    long_name = "Ä" * 200
    customer = billed_customer(world, name="Ö" * 200)
    Account.update(name=long_name).where(Account.id == world.provider.id).execute()
    invoice = issue_invoice(world, customer, amount=str(MAX_AMOUNT))
    [message] = messages_of(invoice)
    assert message.status == "sent", message.last_error
    mail = parse((Path(ctx.config["MAIL_OUTBOX_DIR"]) / message.outbox_path).read_bytes())
    assert mail["From"].addresses[0].display_name == long_name
    # folded over several encoded words; the parser keeps the fold's space, clients do not
    assert mail["Subject"].strip() == f"Invoice {invoice.number} from {long_name}"
    body = mail.get_body(("plain",)).get_content()
    assert "Ö" * 200 in body and f"{invoice.total // 100:,}" in body
