"""Composing and recording messages: the rule behind "once per event".

**Recording** (:func:`send_for_invoice`, :func:`send_receipt`, :func:`send_again`): one
:class:`~core.mail.models.MailMessage` row per event key, written with ``INSERT ... ON
CONFLICT DO NOTHING`` in the caller's transaction, then read back: a second call with the
same key (a re-run, a retried task, a second worker, a double click) finds the first row and
records nothing. Subject, body, From, Reply-To and To are rendered now and stored, so every
attempt sends the same text with the same ``Message-ID``, and the history shows what went
out. The send is dispatched after the transaction commits (peewee's ``after_commit``): a
rolled-back issue or payment sends nothing.

Delivering is :mod:`core.mail.delivery`; when, after the commit, is :mod:`core.mail.tasks`.
"""

from __future__ import annotations

import hashlib
import logging
from email.utils import formataddr, parseaddr

from flask import current_app

from core import audit, events
from core.billing.invoicing import parties, storage
from core.billing.ledger import entries as ledger
from core.billing.ledger.dunning import reminder_key
from core.billing.models import Allocation, BillingSettings, DunningStep, Invoice, Payment
from core.billing.money import format_money
from core.db import database
from core.errors import NotFound, ValidationFailed
from core.mail import tasks, templates
from core.mail.models import MailMessage
from core.models import Account

log = logging.getLogger("billhive.mail")

EVENTS = {
    "invoice": "Invoice",
    "credit_note": "Credit note",
    "receipt": "Payment receipt",
    "reminder_1": "First reminder",
    "reminder_2": "Second reminder",
    "final_notice": "Final notice",
}
INVOICE_EVENTS = ("invoice", "credit_note", "reminder_1", "reminder_2", "final_notice")
MAX_KEY = 200


# -- who: addresses --------------------------------------------------------------------------


def valid_address(text: str) -> str | None:
    """The bare address in ``text`` when it is one (a@b.c), else None."""
    _, address = parseaddr(text or "")
    local, _, domain = address.rpartition("@")
    if not local or "." not in domain or any(c.isspace() for c in address):
        return None
    return address


def split_addresses(text: str) -> list[str]:
    return [part.strip() for part in (text or "").replace(";", ",").split(",") if part.strip()]


def _party(account: Account) -> dict:
    """The account as its invoices name it (:func:`core.billing.invoicing.parties.party`: legal name,
    billing e-mails, VAT ID); read once per message."""
    if account.id is None:  # the preview's made-up customer
        return {"name": account.name, "email": "", "emails": [], "vat_id": ""}
    return parties.party(account)


def recipients_of(account: Account, party: dict | None = None) -> list[str]:
    """The buyer's billing e-mail addresses (:func:`core.billing.invoicing.parties.billing_emails`: its
    billing details' e-mails, else its payment settings' invoice e-mail, which may list
    several separated by commas, else the account's e-mail)."""
    party = party or _party(account)
    return [a for entry in party["emails"] for a in split_addresses(entry)]


def identity_of(issuer: Account, party: dict | None = None) -> tuple[str, str]:
    """(From, Reply-To) of mail an issuer sends: its legal name (else its name) with its
    first billing e-mail (else its billing contact's e-mail) as the address; with neither,
    the instance's sender address under the issuer's name and no Reply-To."""
    party = party or _party(issuer)
    own = valid_address(party["emails"][0]) if party["emails"] else None
    if own is None:
        settings = BillingSettings.get_or_none(BillingSettings.account == issuer.id)
        own = valid_address(settings.contact_email) if settings else None
    address = own or parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1]
    return formataddr((templates.one_line(party["name"]), address)), own or ""


# -- what: template context ------------------------------------------------------------------


def _day(value) -> str:
    return value.isoformat() if value else ""


def invoice_values(invoice: Invoice) -> dict:
    credit_for = None
    if invoice.credit_for_id:
        credit_for = Invoice.select(Invoice.number).where(Invoice.id == invoice.credit_for_id)
        credit_for = credit_for.scalar()
    period = ""
    if invoice.period_start and invoice.period_end:
        period = f"{_day(invoice.period_start)} to {_day(invoice.period_end)}"
    return {
        "number": invoice.number or "",
        "kind": invoice.kind,
        "currency": invoice.currency,
        "total": format_money(invoice.total, invoice.currency),
        "subtotal": format_money(invoice.subtotal, invoice.currency),
        "tax": format_money(invoice.tax, invoice.currency),
        "amount_due": format_money(ledger.open_amount(invoice), invoice.currency),
        "issued_on": _day(invoice.issued_at.date() if invoice.issued_at else None),
        "due_date": _day(invoice.due_date),
        "period": period,
        "credit_for": credit_for or "",
    }


def party_values(party: dict) -> dict:
    """What templates see of a party: ``name`` (legal name, else the account's), ``email``,
    ``vat_id``."""
    return {"name": party["name"], "email": party["email"], "vat_id": party["vat_id"]}


def payment_values(payment: Payment) -> dict:
    numbers = [
        number
        for (number,) in Invoice.select(Invoice.number)
        .join(Allocation, on=(Allocation.invoice == Invoice.id))
        .where(Allocation.payment == payment.id)
        .order_by(Invoice.id)
        .tuples()
    ]
    return {
        "amount": format_money(payment.amount, payment.currency),
        "currency": payment.currency,
        "received_on": _day(payment.received_on),
        "reference": payment.reference or "",
        "method": payment.method,
        "invoices": numbers,
    }


def build_context(issuer: Account, account: Account, invoice=None, payment=None,
                  extra: dict | None = None, *, parties: tuple | None = None) -> dict:  # fmt: skip
    """The template values of one message. ``parties``: the (issuer, buyer) party dicts when
    the caller has them."""
    seller, buyer = parties or (_party(issuer), _party(account))
    context = {
        "issuer": {**party_values(seller), "email": identity_of(issuer, seller)[1]},
        "account": party_values(buyer),
        "invoice": invoice_values(invoice) if invoice is not None else None,
        "payment": payment_values(payment) if payment is not None else None,
        "late_fee": "",
        "level": "",
    }
    for key, value in (extra or {}).items():  # the caller's values (a reminder's level,
        if key in ("late_fee", "level", "days_overdue") or key not in context:  # late fee...)
            context[key] = value  # never replacing the parties, the invoice or the payment
    return context


def sample_context(issuer: Account) -> dict:
    """What a preview renders: the issuer's latest issued invoice when it has one, else a
    made-up invoice to "Example Customer Ltd"."""
    latest = (
        Invoice.select()
        .where((Invoice.issuer == issuer.id) & (Invoice.status != "draft"))
        .order_by(Invoice.id.desc())
        .first()
    )
    if latest is not None:
        account = Account.get_by_id(latest.account_id)
        context = build_context(issuer, account, latest)
    else:
        context = build_context(issuer, Account(name="Example Customer Ltd", email=""))
        context["invoice"] = {
            "number": f"{issuer.invoice_prefix}000123", "kind": "invoice", "currency": "EUR",
            "total": "118.80 EUR", "subtotal": "99.00 EUR", "tax": "19.80 EUR",
            "amount_due": "118.80 EUR", "issued_on": "2026-01-01", "due_date": "2026-01-15",
            "period": "2025-12-01 to 2026-01-01", "credit_for": "",
        }  # fmt: skip
    context["payment"] = context["payment"] or {
        "amount": context["invoice"]["total"], "currency": context["invoice"]["currency"],
        "received_on": context["invoice"]["issued_on"], "reference": "REF-123",
        "method": "bank_transfer", "invoices": [context["invoice"]["number"]],
    }  # fmt: skip
    if context["invoice"]["kind"] == "credit_note" and not context["invoice"]["credit_for"]:
        context["invoice"]["credit_for"] = f"{issuer.invoice_prefix}000122"
    context.update(late_fee="10.00 EUR", level="final_notice", days_overdue=30)
    return context


# -- recording -------------------------------------------------------------------------------


def _message_id(event_key: str, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "billhive.invalid"
    digest = hashlib.sha256(event_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def attachment_for(invoice: Invoice | None, event: str) -> str:
    """The invoice file a message carries: PDF when the invoice has that format, else RAW
    (what :func:`core.billing.invoicing.storage.wanted_formats` decides), none for receipts."""
    if invoice is None or event == "receipt":
        return ""
    wanted = storage.wanted_formats(invoice)
    for code in ("PDF", "RAW"):
        if code in wanted:
            return code
    return wanted[0] if wanted else ""


def _record(event: str, event_key: str, issuer: Account, account: Account, *, invoice=None,
            payment=None, context=None, actor=None) -> MailMessage:  # fmt: skip
    if event not in EVENTS:
        raise ValueError(f"unknown e-mail event '{event}' (one of {', '.join(EVENTS)})")
    if not event_key or len(event_key) > MAX_KEY:
        raise ValueError(f"an event key is 1 to {MAX_KEY} characters")
    existing = MailMessage.get_or_none(MailMessage.event_key == event_key)
    if existing is not None:
        existing.created = False
        return existing
    seller, buyer = _party(issuer), _party(account)
    sender, reply_to = identity_of(issuer, seller)
    to = [a for a in map(valid_address, recipients_of(account, buyer)) if a]
    values = {
        "event_key": event_key,
        "event": event,
        "issuer": issuer.id,
        "account": account.id,
        "invoice": invoice.id if invoice is not None else None,
        "payment": payment.id if payment is not None else None,
        "sender": sender,
        "reply_to": reply_to,
        "recipients": to,
        "message_id": _message_id(event_key, sender),
        "context": context or None,
        "created_by": actor.id if actor is not None else None,
        "status": "queued",
    }
    try:
        values["subject"], values["body"] = templates.render(
            issuer.id,
            event,
            build_context(issuer, account, invoice, payment, context, parties=(seller, buyer)),
        )
        values["attachment"] = attachment_for(invoice, event)
    except templates.TemplateProblem as problem:
        values.update(status="failed", last_error=f"the {event} template of {issuer.name} "
                      f"does not render: {problem}")  # fmt: skip
    if values["status"] == "queued" and not to:
        values.update(status="failed", last_error=f"{account.name} has no valid billing "
                      f"e-mail address (found: {account.email or 'none'})")  # fmt: skip
    with database.atomic():
        # a parallel caller with the same key waits here for the first one's commit, then
        # inserts nothing (rowcount 0): only the caller that wrote the row reports it new
        inserted = MailMessage.insert(values).on_conflict_ignore().as_rowcount().execute()
    message = MailMessage.get(MailMessage.event_key == event_key)
    message.created = bool(inserted)
    if message.status == "queued":
        message_id = message.id
        database.after_commit(lambda: tasks.dispatch(message_id))
    return message


def send_for_invoice(invoice: Invoice, event: str, *, event_key: str, context: dict | None = None,
                     actor=None) -> MailMessage:  # fmt: skip
    """Record the e-mail ``event`` (one of :data:`EVENTS`) about ``invoice`` to its buyer,
    from its issuer, and queue its sending once the current transaction commits.
    Idempotent by ``event_key``: a second call with a key already used returns the first
    record (``created`` False) and sends nothing. ``context`` adds template values (a reminder's ``level``,
    ``days_overdue``, ``late_fee``), kept JSON-serialisable."""
    issuer = Account.get_by_id(invoice.issuer_id)
    account = Account.get_by_id(invoice.account_id)
    return _record(event, event_key, issuer, account, invoice=invoice, context=context,
                   actor=actor)  # fmt: skip


def send_receipt(payment: Payment, actor=None) -> MailMessage | None:
    """The receipt of a recorded payment (event key ``payment:<id>:receipt``), from the
    payee; filed under the first invoice it paid, if any."""
    if payment.kind != "payment":
        return None
    first = (
        Allocation.select(Allocation.invoice)
        .where((Allocation.payment == payment.id) & Allocation.invoice.is_null(False))
        .order_by(Allocation.id)
        .scalar()
    )
    invoice = Invoice.get_by_id(first) if first else None
    return _record("receipt", f"payment:{payment.id}:receipt",
                   Account.get_by_id(payment.payee_id), Account.get_by_id(payment.account_id),
                   invoice=invoice, payment=payment, actor=actor)  # fmt: skip


def on_invoice_finalized(invoice: Invoice) -> MailMessage | None:
    """An invoice or credit note committed as issued is e-mailed once (``invoice:<id>:issued``)."""
    if not isinstance(invoice, Invoice) or invoice.status == "draft":
        return None
    event = "credit_note" if invoice.kind == "credit_note" else "invoice"
    return send_for_invoice(invoice, event, event_key=f"invoice:{invoice.id}:issued")


def reminder_status(step: DunningStep) -> str | None:
    """What the send history says of a dunning step's reminder: ``sent``, ``queued``
    (retried), ``failed: <why>``; None before it was handed over."""
    message = MailMessage.get_or_none(
        MailMessage.event_key == reminder_key(step.invoice_id, step.level)
    )
    if message is None:
        return None
    if message.status == "failed" and message.last_error:
        return f"failed: {message.last_error}"
    return message.status


def history(invoice: Invoice) -> list[MailMessage]:
    return list(
        MailMessage.select().where(MailMessage.invoice == invoice.id).order_by(MailMessage.id)
    )


def send_again(invoice: Invoice, actor, *, key: str, event: str | None = None) -> MailMessage:
    """Send again: the invoice's message once more under a new event key
    (``invoice:<id>:again:<key>``; the same ``key`` twice is the same request, sent once),
    rendered from the template as it is now; audited. ``event`` defaults to what the invoice
    is (invoice / credit note)."""
    if invoice.status in ("draft", "void"):
        why = (
            "a draft is not sent; issue it first"
            if invoice.status == "draft"
            else ("a void invoice is not sent again")
        )
        raise ValidationFailed.field("invoice", why)
    default = "credit_note" if invoice.kind == "credit_note" else "invoice"
    event = event or default
    allowed = (
        ("credit_note",)
        if default == "credit_note"
        else tuple(e for e in INVOICE_EVENTS if e != "credit_note")
    )
    if event not in allowed:
        what = "a credit note" if default == "credit_note" else "an invoice"
        raise ValidationFailed.field("event", f"for {what}: one of {', '.join(allowed)}")
    key = (key or "").strip()
    if not key or len(key) > 64 or not key.isascii() or not key.isprintable():
        raise ValidationFailed.field("key", "must be 1 to 64 printable ASCII characters")
    event_key = f"invoice:{invoice.id}:again:{key}"
    with database.atomic():
        message = send_for_invoice(invoice, event, event_key=event_key, actor=actor)
        if message.created:  # not a replay of the same key (one audit entry per message)
            audit.record(actor, "invoice.send_again", object_type="invoice",
                         object_id=invoice.id, account=invoice.account_id,
                         after={"message_id": message.id, "event": event,
                                "to": message.recipients, "status": message.status})  # fmt: skip
    return MailMessage.get_by_id(message.id)  # as it is now (sent inline after the commit)


def scoped_message(invoice: Invoice, message_id) -> MailMessage:
    message = MailMessage.get_or_none(
        (MailMessage.id == message_id) & (MailMessage.invoice == invoice.id)
    )
    if message is None:
        raise NotFound(f"message {message_id} not found")
    return message


# billing tells mail through the core's events (core.events): billing never imports mail
events.listen("invoice_finalized", on_invoice_finalized)
events.listen("payment_recorded", send_receipt)
events.listen("dunning_reminder", send_for_invoice)
