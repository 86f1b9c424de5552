"""Invoice lifecycle: draft -> issued (immutable) -> paid / void; credit notes. Numbers come
from :mod:`core.billing.invoicing.numbering`, the due date from :func:`due_date_for` (the one
rule). Every change is audited in its own transaction.

**Status changes are guarded rows.** Issuing, paying, voiding and crediting each read the
invoice *inside* their transaction under a row lock (:func:`~core.billing.invoicing.status.lock_invoice`) and change its
status with a conditional update (:func:`~core.billing.invoicing.status.transition`: ``UPDATE ... WHERE status = <what was
read>``, exactly one row or a refusal), so of N concurrent callers one succeeds and the others
get a 409 saying what the invoice already is ("invoice INV-000001 is already paid"). Locks are
always taken in one order, so two of these never deadlock: the issuer's number sequence (when
a number is taken), then the billed account (:func:`core.billing.invoicing.status.lock_account`, which
serialises its money operations: payments, refunds, reversals, prepaid credit drawn), then the
invoice row.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal

from core import audit, events
from core.billing.invoicing import numbering, parties, status
from core.billing.invoicing import tax as tax_rule
from core.billing.ledger import entries as ledger
from core.billing.models import (
    ImmutableInvoice,
    Invoice,
    InvoiceLine,
)
from core.billing.money import MoneyError, invoice_totals, line_amount, parse_decimal
from core.current import host
from core.db import utcnow, write_transaction
from core.errors import Conflict, ValidationFailed
from core.models import Account

log = logging.getLogger("billhive.billing")


def due_date_for(issuer: Account, account: Account, issued: date,
                 known: parties.Known | None = None) -> date:  # fmt: skip
    """The one due-date rule: the issue date plus the payment terms
    (:func:`core.billing.invoicing.parties.terms_days`: the buyer's own terms, else the issuer's, else
    14 days). From the issue date, never the period's end, so a late bill run never issues an
    invoice that is already overdue."""
    return issued + timedelta(days=parties.terms_days(issuer, account, known))


def tax_at_issue(invoice: Invoice, issuer: Account, account: Account,
                 known: parties.Known | None = None) -> dict:  # fmt: skip
    """The tax decision recorded with ``invoice`` (:mod:`core.billing.invoicing.tax`): a credit note
    keeps its invoice's, a prepaid top-up charges none (the invoices its credit pays do)."""
    if invoice.kind == "credit_note" and invoice.credit_for_id:
        return tax_rule.of_credit_note(Invoice.get_by_id(invoice.credit_for_id))
    if invoice.id and ledger.is_topup(invoice):
        return {"rule": "prepaid", "rate": "0", "reverse_charge": False}
    return tax_rule.decide(issuer, account, known)


def recompute_totals(invoice: Invoice) -> None:
    amounts = [line.amount for line in invoice.lines]
    invoice.subtotal, invoice.tax, invoice.total = invoice_totals(
        amounts, Decimal(invoice.tax_rate), invoice.currency
    )


def _issue_in_transaction(invoice: Invoice, actor, number: str | None = None) -> Invoice:
    issuer = Account.get_by_id(invoice.issuer_id)
    account = Account.get_by_id(invoice.account_id)
    if number is None:
        number = numbering.next_number(issuer, invoice.kind)
    known = parties.read(issuer, account)
    tax = tax_at_issue(invoice, issuer, account, known)
    invoice.tax_rate = tax["rate"]  # the parties as they are now rate the draft
    recompute_totals(invoice)
    invoice.number = number
    invoice.status = "issued"
    invoice.issued_at = utcnow()
    invoice.due_date = due_date_for(issuer, account, invoice.issued_at.date(), known)
    invoice.save()
    parties.record_issue(invoice, issuer, account, tax, known)  # what it says of the parties, kept
    ledger.post_issued(invoice, actor)  # its ledger entry, in this transaction
    audit.record(
        actor,
        f"{invoice.kind}.issue",
        invoice,
        object_type="invoice",
        account=invoice.account_id,
        after=status.snapshot(invoice),
    )
    return invoice


def issue(invoice: Invoice, actor=None) -> Invoice:
    """Issue a draft: totals from its lines, a number, immutable from then on."""
    if invoice.status != "draft":
        raise ImmutableInvoice(
            f"invoice {invoice.number or invoice.id} is already {invoice.status}"
        )
    issuer = Account.get_by_id(invoice.issuer_id)
    numbering.ensure_sequence(invoice.issuer_id, invoice.kind)
    with write_transaction():
        # the number first (the sequence row's lock), then the account and the invoice: the
        # order a bill run takes too; a refusal rolls back and gives the number back
        number = numbering.next_number(issuer, invoice.kind)
        invoice = status.lock_invoice(invoice.id)  # fresh, under its lock
        if invoice.status != "draft":
            raise status.refusal(invoice, "issued")
        if not invoice.lines.count():  # its lines as they are now (an edit may have run)
            raise ValidationFailed.field("lines", "an invoice needs at least one line to be issued")
        _issue_in_transaction(invoice, actor, number=number)
    finalize(invoice)
    return invoice


def void(invoice: Invoice, actor=None) -> Invoice:
    """Void a draft or an issued invoice (or credit note): its entry is reversed and the money
    allocated to it released. Guarded (:func:`~core.billing.invoicing.status.transition`): a second voider gets 409."""
    with write_transaction():
        before = status.transition(invoice.id, ("draft", "issued"), "void", voided_at=utcnow())
        ledger.on_void(before, actor)  # reversal entry, allocations released
        after = Invoice.get_by_id(invoice.id)
        audit.record(actor, "invoice.void", after, account=after.account_id,
                     before=status.snapshot(before), after=status.snapshot(after))  # fmt: skip
    _refresh(invoice, after)
    return invoice


def mark_paid(invoice: Invoice, actor=None) -> Invoice:
    """Mark an issued invoice paid: what is still due is recorded as a payment ("marked
    paid"). Guarded (:func:`~core.billing.invoicing.status.transition`): of concurrent callers one pays, the others get 409
    ("already paid") and record nothing."""
    if invoice.kind != "invoice":
        raise Conflict(
            f"{invoice.number or invoice.id} is a {invoice.kind.replace('_', ' ')}: "
            "only an issued invoice can be marked paid"
        )
    with write_transaction():
        before = status.transition(invoice.id, ("issued",), "paid", paid_at=utcnow())
        ledger.on_mark_paid(before, actor)  # what is still due is recorded as a payment
        after = status.record_paid(before, actor)
    _refresh(invoice, after)
    return invoice


def _refresh(invoice: Invoice, stored: Invoice) -> None:
    """Give the caller's instance what was committed (status and its timestamps)."""
    for name in ("status", "paid_at", "voided_at"):
        setattr(invoice, name, getattr(stored, name))
    invoice._dirty.clear()


def add_line(invoice: Invoice, data: dict) -> InvoiceLine:
    """Add a line to a draft (quantity x unit_price, rounded once)."""
    try:
        quantity = parse_decimal(data.get("quantity", "1"), "quantity")
        unit_price = parse_decimal(data.get("unit_price"), "unit_price")
    except MoneyError as exc:
        raise ValidationFailed.field(exc.field or "lines", exc.message) from None
    position = (
        InvoiceLine.select(InvoiceLine.position)
        .where(InvoiceLine.invoice == invoice.id)
        .order_by(InvoiceLine.position.desc())
        .limit(1)
        .scalar()
        or 0
    ) + 1
    return InvoiceLine.create(
        invoice=invoice,
        position=position,
        description=data.get("description") or "Item",
        quantity=quantity,
        unit=data.get("unit", ""),
        unit_price=unit_price,
        amount=line_amount(quantity, unit_price, invoice.currency),
        product_code=data.get("product_code", ""),
        group=data.get("group"),
        source="manual",
    )


def create_draft(actor, account: Account, issuer: Account, lines: list[dict], **extra) -> Invoice:
    """A manual draft of ``issuer`` for ``account`` (issue it with :func:`issue`)."""
    with write_transaction():
        invoice = Invoice.create(
            account=account,
            issuer=issuer,
            kind="invoice",
            status="draft",
            currency=account.currency,
            tax_rate=tax_rule.decide(issuer, account)["rate"],  # rated again at issue
            period_start=extra.get("period_start"),
            period_end=extra.get("period_end"),
        )
        for data in lines:
            add_line(invoice, data)
        recompute_totals(invoice)
        invoice.save()
        audit.record(
            actor, "invoice.draft", invoice, account=account.id, after=status.snapshot(invoice)
        )
    return invoice


def credit_note(invoice: Invoice, actor=None, positions: list[int] | None = None) -> Invoice:
    """Issue a credit note for the whole invoice or for the lines at ``positions``.

    Its lines mirror the credited ones with negated quantities, so amounts are the exact
    negatives; tax is computed the same way on the (negative) subtotal. A line cannot be
    credited twice.
    """
    if invoice.kind != "invoice":
        raise Conflict(f"{invoice.number or invoice.id} is a credit note: it is not credited")
    issuer = Account.get_by_id(invoice.issuer_id)
    numbering.ensure_sequence(invoice.issuer_id, "credit_note")
    with write_transaction():
        # the number, then the account and the invoice (see the module doc): what is left to
        # credit is read under the invoice's lock, so two notes never credit one line
        number = numbering.next_number(issuer, "credit_note")
        invoice = status.lock_invoice(invoice.id)
        if invoice.status not in ("issued", "paid"):
            raise Conflict(
                f"only an issued or paid invoice can be credited; {invoice.number or invoice.id} "
                f"is a {invoice.status} {invoice.kind}",
                {"status": [invoice.status]},
            )
        lines = list(invoice.lines.order_by(InvoiceLine.position))
        if positions:
            known = {line.position for line in lines}
            unknown = sorted(set(positions) - known)
            if unknown:
                raise ValidationFailed.field("positions", f"no such line position(s): {unknown}")
            lines = [line for line in lines if line.position in set(positions)]
        already = {
            line.source
            for note in invoice.credit_notes.where(Invoice.status != "void")
            for line in note.lines
        }
        twice = [line.position for line in lines if f"credit:{line.id}" in already]
        if twice:
            raise Conflict(f"line(s) {twice} of {invoice.number} were already credited",
                           {"positions": [f"already credited: {twice}"]})  # fmt: skip
        note = Invoice.create(
            account=invoice.account_id,
            issuer=invoice.issuer_id,
            kind="credit_note",
            credit_for=invoice,
            status="draft",
            currency=invoice.currency,
            tax_rate=invoice.tax_rate,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
        )
        for index, line in enumerate(lines, start=1):
            InvoiceLine.create(
                invoice=note,
                position=index,
                description=line.description,
                quantity=-line.quantity,
                unit=line.unit,
                unit_price=line.unit_price,
                fraction=line.fraction,
                amount=-line.amount,
                product_code=line.product_code,
                group=line.group,
                source=f"credit:{line.id}",
            )
        _issue_in_transaction(note, actor, number=number)
    finalize(note)
    return note


def finalize(invoice: Invoice) -> None:
    """After commit: render and store the formats, then tell plugins (``invoice_finalized``)."""
    from core.billing.invoicing import storage

    storage.render_all(invoice)
    notify_finalized(invoice)


def notify_finalized(invoice: Invoice) -> None:
    """Tell the core's listeners of an invoice committed as issued (the core event
    ``invoice_finalized``: :mod:`core.mail` e-mails it to its buyer, before any plugin, so a
    failing plugin never stops it), then plugins (the ``invoice_finalized`` hook). It is issued
    whatever mail or a plugin does with the news: a failure is logged, and neither turns the
    issue into an error (the change was saved) nor stops a bill run."""
    try:
        events.emit("invoice_finalized", invoice)  # e-mailed to the buyer, once (core.mail)
    except Exception:  # noqa: BLE001 - recorded or not, the invoice stays issued
        log.exception("recording the e-mail of %s failed", invoice.number or invoice.id)
    try:
        host().call("invoice_finalized", invoice=invoice)
    except Exception:  # noqa: BLE001 - a plugin's failure, after the commit
        log.exception("a plugin failed on invoice_finalized of %s", invoice.number or invoice.id)
