"""Invoice lifecycle: draft -> issued (immutable) -> paid / void; credit notes; numbering.

Numbers are per issuing account and document kind, gap-free: the sequence row is
incremented with an ``UPDATE ... SET next_number = next_number + 1`` inside the issuing
transaction, so concurrent issuers queue on that row and a rolled-back issue gives its number
back. Invoices are ``<prefix><000001>``, credit notes ``<prefix>CN<000001>`` where the prefix
is the issuer's ``invoice_prefix``. Every change is audited in its own transaction.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal

from core import audit
from core.billing import ledger
from core.billing.models import (
    ImmutableInvoice,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
)
from core.billing.money import MoneyError, invoice_totals, line_amount, parse_decimal
from core.db import Prepared, database, is_postgres, utcnow
from core.errors import Conflict, ValidationFailed
from core.models import Account

log = logging.getLogger("billhive.billing")

NUMBER_DIGITS = 6
PAYMENT_TERMS_DAYS = 14


def write_transaction():
    """A write transaction that takes the write lock up front on SQLite (BEGIN IMMEDIATE), so
    two processes queue on the busy timeout instead of one failing with 'database is locked'
    when it upgrades a read transaction. A savepoint when already inside a transaction."""
    if not is_postgres() and not database.in_transaction():
        return database.atomic("IMMEDIATE")
    return database.atomic()


def snapshot(invoice: Invoice) -> dict:
    return {
        "status": invoice.status,
        "number": invoice.number,
        "kind": invoice.kind,
        "account_id": invoice.account_id,
        "issuer_id": invoice.issuer_id,
        "currency": invoice.currency,
        "total": invoice.total,
    }


def _ensure_sequence(issuer_id: int, kind: str) -> None:
    if InvoiceSequence.get_or_none(issuer=issuer_id, kind=kind) is None:
        try:
            with database.atomic():
                InvoiceSequence.create(issuer=issuer_id, kind=kind, next_number=1)
        except Exception:  # noqa: BLE001 - a concurrent creator won; the row exists now
            if InvoiceSequence.get_or_none(issuer=issuer_id, kind=kind) is None:
                raise


_take_number = Prepared(
    lambda issuer, kind: InvoiceSequence.update(next_number=InvoiceSequence.next_number + 1).where(
        (InvoiceSequence.issuer == issuer) & (InvoiceSequence.kind == kind)
    )
)
_taken_number = Prepared(
    lambda issuer, kind: InvoiceSequence.select(InvoiceSequence.next_number - 1).where(
        (InvoiceSequence.issuer == issuer) & (InvoiceSequence.kind == kind)
    )
)


def next_number(issuer: Account, kind: str) -> str:
    """Take the next number of ``issuer`` for ``kind``; call inside the issuing transaction."""
    if not _take_number.rowcount(issuer.id, kind):
        InvoiceSequence.create(issuer=issuer.id, kind=kind, next_number=2)
        taken = 1
    else:
        taken = _taken_number.scalar(issuer.id, kind)
    infix = "CN" if kind == "credit_note" else ""
    return f"{issuer.invoice_prefix}{infix}{taken:0{NUMBER_DIGITS}d}"


def recompute_totals(invoice: Invoice) -> None:
    amounts = [line.amount for line in invoice.lines]
    invoice.subtotal, invoice.tax, invoice.total = invoice_totals(
        amounts, Decimal(invoice.tax_rate), invoice.currency
    )


def _issue_in_transaction(invoice: Invoice, actor, when: date | None = None) -> Invoice:
    issuer = Account.get_by_id(invoice.issuer_id)
    recompute_totals(invoice)
    invoice.number = next_number(issuer, invoice.kind)
    invoice.status = "issued"
    invoice.issued_at = utcnow()
    invoice.due_date = (when or date.today()) + timedelta(days=PAYMENT_TERMS_DAYS)
    invoice.save()
    ledger.post_issued(invoice, actor)  # its ledger entry, in this transaction
    audit.record(
        actor,
        f"{invoice.kind}.issue",
        invoice,
        object_type="invoice",
        account=invoice.account_id,
        after=snapshot(invoice),
    )
    return invoice


def issue(invoice: Invoice, actor=None) -> Invoice:
    """Issue a draft: totals from its lines, a number, immutable from then on."""
    if invoice.status != "draft":
        raise ImmutableInvoice(
            f"invoice {invoice.number or invoice.id} is already {invoice.status}"
        )
    if not invoice.lines.count():
        raise ValidationFailed.field("lines", "an invoice needs at least one line to be issued")
    _ensure_sequence(invoice.issuer_id, invoice.kind)
    with write_transaction():
        invoice = Invoice.get_by_id(invoice.id)  # fresh, inside the lock
        if invoice.status != "draft":
            raise ImmutableInvoice(f"invoice {invoice.number} was issued meanwhile")
        _issue_in_transaction(invoice, actor)
    finalize(invoice)
    return invoice


def void(invoice: Invoice, actor=None) -> Invoice:
    if invoice.status not in ("draft", "issued"):
        raise Conflict(
            f"invoice {invoice.number or invoice.id} is {invoice.status}: cannot void it"
        )
    with write_transaction():
        ledger.on_void(invoice, actor)  # reversal entry, allocations released
        before = snapshot(invoice)
        invoice.status = "void"
        invoice.voided_at = utcnow()
        invoice.save()
        audit.record(actor, "invoice.void", invoice, account=invoice.account_id, before=before,
                     after=snapshot(invoice))  # fmt: skip
    return invoice


def mark_paid(invoice: Invoice, actor=None) -> Invoice:
    if invoice.status != "issued" or invoice.kind != "invoice":
        raise Conflict(
            f"invoice {invoice.number or invoice.id} is a {invoice.status} {invoice.kind}: "
            "only an issued invoice can be marked paid"
        )
    with write_transaction():
        ledger.on_mark_paid(invoice, actor)  # what is still due is recorded as a payment
        before = snapshot(invoice)
        invoice.status = "paid"
        invoice.paid_at = utcnow()
        invoice.save()
        audit.record(actor, "invoice.pay", invoice, account=invoice.account_id, before=before,
                     after=snapshot(invoice))  # fmt: skip
    return invoice


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
            tax_rate=issuer.tax_rate,
            period_start=extra.get("period_start"),
            period_end=extra.get("period_end"),
        )
        for data in lines:
            add_line(invoice, data)
        recompute_totals(invoice)
        invoice.save()
        audit.record(actor, "invoice.draft", invoice, account=account.id, after=snapshot(invoice))
    return invoice


def credit_note(invoice: Invoice, actor=None, positions: list[int] | None = None) -> Invoice:
    """Issue a credit note for the whole invoice or for the lines at ``positions``.

    Its lines mirror the credited ones with negated quantities, so amounts are the exact
    negatives; tax is computed the same way on the (negative) subtotal. A line cannot be
    credited twice.
    """
    if invoice.kind != "invoice" or invoice.status not in ("issued", "paid"):
        raise Conflict(
            f"only an issued or paid invoice can be credited; {invoice.number or invoice.id} "
            f"is a {invoice.status} {invoice.kind}"
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
    _ensure_sequence(invoice.issuer_id, "credit_note")
    with write_transaction():
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
        _issue_in_transaction(note, actor)
    finalize(note)
    return note


def finalize(invoice: Invoice) -> None:
    """After commit: render and store the formats, then tell plugins (``invoice_finalized``)."""
    from core.billing import storage

    storage.render_all(invoice)
    notify_finalized(invoice)


def notify_finalized(invoice: Invoice) -> None:
    """Tell plugins (``invoice_finalized``) about an invoice committed as issued. It is issued
    whatever a plugin does with the news: a plugin that raises is logged, and neither turns
    the issue into an error (the change was saved) nor stops a bill run."""
    from core.billing import storage

    try:
        storage.host().call("invoice_finalized", invoice=invoice)
    except Exception:  # noqa: BLE001 - a plugin's failure, after the commit
        log.exception("a plugin failed on invoice_finalized of %s", invoice.number or invoice.id)
