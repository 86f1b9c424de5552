"""Account statements: for a period, the opening balance, every ledger entry, the closing
balance — per currency, as data (the page and the API), CSV and PDF.

A period is ``[start, end]``, both days included, on the entries' ``occurred_on`` (the
invoice's issue date, the payment's date). The opening balance is the sum of every entry
before ``start``; the closing balance is the opening plus the period's entries. So the
closing balance of one period is the opening balance of the period starting the next day.

The PDF goes through the invoice-format machinery: the enabled format whose media type is
``application/pdf`` (the ``invoice_pdf`` plugin's ``PDF``) renders the statement document
(``kind == "statement"``; keys below). With no such format enabled there is no PDF.

Statement document keys: ``kind`` ("statement"), ``title``, ``account`` ({name, address,
email, account_ref}), ``start``, ``end``, ``generated_on``, ``currencies``: [{currency,
opening, closing, debits, credits (formatted), opening_minor, closing_minor, lines: [{date,
type, reference, description, debit, credit, balance, amount_minor, balance_minor}]}].
"""

from __future__ import annotations

import io
from datetime import date

import peewee as pw

from core import csv_export
from core.billing.models import Invoice, LedgerEntry, Payment
from core.billing.money import MoneyError, check_currency, format_money, to_decimal
from core.current import host
from core.errors import NotFound, ValidationFailed
from core.models import Account

TYPE_LABELS = {
    "invoice": "Invoice",
    "prepaid_topup": "Prepaid top-up",
    "credit_note": "Credit note",
    "payment": "Payment",
    "refund": "Refund",
    "credit_applied": "Prepaid credit applied",
    "reversal": "Reversal",
}
METHOD_LABELS = {
    "bank_transfer": "bank transfer",
    "card": "card",
    "direct_debit": "direct debit",
    "cash": "cash",
    "cheque": "cheque",
    "other": "other",
}
MAX_DAYS = 3660


def _plain(minor: int, currency: str) -> str:
    """Without the currency and without thousands separators: "-1234.50"."""
    return format(to_decimal(minor, currency), "f")


def _amount(minor: int, currency: str) -> str:
    value = to_decimal(minor, currency)
    return ("-" if minor < 0 else "") + format(abs(value), ",f")


def check_period(start: date, end: date) -> None:
    if end < start:
        raise ValidationFailed.field("to", "must not be before 'from'")
    if (end - start).days > MAX_DAYS:
        raise ValidationFailed.field("to", "a statement covers at most ten years")


def describe(entries: list[LedgerEntry]) -> dict[int, tuple[str, str, str]]:
    """``{entry id: (type, reference, description)}`` in a few queries."""
    invoice_ids = {e.invoice_id for e in entries if e.invoice_id}
    payment_ids = {e.payment_id for e in entries if e.payment_id}
    invoices = {i.id: i for i in Invoice.select().where(Invoice.id.in_(invoice_ids))} if \
        invoice_ids else {}  # fmt: skip
    credited_ids = {i.credit_for_id for i in invoices.values() if i.credit_for_id}
    credited = {i.id: i.number for i in Invoice.select(Invoice.id, Invoice.number).where(
        Invoice.id.in_(credited_ids))} if credited_ids else {}  # fmt: skip
    payments = {p.id: p for p in Payment.select().where(Payment.id.in_(payment_ids))} if \
        payment_ids else {}  # fmt: skip
    reversed_ids = {e.reverses_id for e in entries if e.reverses_id}
    reversed_kinds = dict(LedgerEntry.select(LedgerEntry.id, LedgerEntry.kind).where(
        LedgerEntry.id.in_(reversed_ids)).tuples()) if reversed_ids else {}  # fmt: skip
    out = {}
    for e in entries:
        inv = invoices.get(e.invoice_id)
        pay = payments.get(e.payment_id)
        reference, text = "", ""
        if inv is not None:
            reference = inv.number or ""
            if inv.period_start and inv.period_end:
                text = f"period {inv.period_start.isoformat()} – {inv.period_end.isoformat()}"
            if inv.credit_for_id:
                text = f"credits {credited.get(inv.credit_for_id, '')}"
        if pay is not None:
            reference = pay.reference or f"P-{pay.id}"
            text = METHOD_LABELS.get(pay.method, pay.method)
        if e.kind == "credit_applied":
            text = "from prepaid credit"
        if e.kind == "reversal":
            what = TYPE_LABELS.get(reversed_kinds.get(e.reverses_id, ""), "entry").lower()
            text = f"reverses {what}" + (f": {e.memo}" if e.memo else "")
        elif e.memo and e.kind in ("payment", "refund"):
            text = f"{text}; {e.memo}" if text else e.memo
        out[e.id] = (TYPE_LABELS.get(e.kind, e.kind), reference, text)
    return out


def build(account: Account, start: date, end: date, currency: str | None = None) -> dict:
    """The statement of ``account`` for ``[start, end]`` (see the module doc)."""
    check_period(start, end)
    if currency:
        try:
            currency = check_currency(currency)
        except MoneyError as exc:
            raise ValidationFailed.field("currency", exc.message) from None
    opening = dict(
        LedgerEntry.select(LedgerEntry.currency, pw.fn.SUM(LedgerEntry.amount))
        .where((LedgerEntry.account == account.id) & (LedgerEntry.occurred_on < start))
        .group_by(LedgerEntry.currency)
        .tuples()
    )
    query = LedgerEntry.select().where(
        (LedgerEntry.account == account.id)
        & (LedgerEntry.occurred_on >= start)
        & (LedgerEntry.occurred_on <= end)
    )
    if currency:
        query = query.where(LedgerEntry.currency == currency)
    entries = list(query.order_by(LedgerEntry.occurred_on, LedgerEntry.id))
    labels = describe(entries)
    codes = sorted({c for c, v in opening.items() if v} | {e.currency for e in entries})
    if currency:
        codes = [currency]
    elif not codes:
        codes = [account.currency]
    blocks = []
    for code in codes:
        running = int(opening.get(code) or 0)
        start_balance = running
        lines, debits, credits = [], 0, 0
        for e in entries:
            if e.currency != code:
                continue
            running += e.amount
            if e.amount > 0:
                debits += e.amount
            else:
                credits -= e.amount
            kind, reference, text = labels[e.id]
            lines.append(
                {
                    "id": e.id,
                    "date": e.occurred_on.isoformat(),
                    "kind": e.kind,
                    "type": kind,
                    "reference": reference,
                    "description": text,
                    "debit": _amount(e.amount, code) if e.amount > 0 else "",
                    "credit": _amount(-e.amount, code) if e.amount < 0 else "",
                    "balance": _amount(running, code),
                    "amount_minor": e.amount,
                    "balance_minor": running,
                }
            )
        blocks.append(
            {
                "currency": code,
                "opening_minor": start_balance,
                "closing_minor": running,
                "debits_minor": debits,
                "credits_minor": credits,
                "opening": format_money(start_balance, code),
                "closing": format_money(running, code),
                "debits": format_money(debits, code),
                "credits": format_money(credits, code),
                "lines": lines,
            }
        )
    return {
        "kind": "statement",
        "title": "STATEMENT OF ACCOUNT",
        "account": {
            "id": account.id,
            "name": account.name,
            "address": [line for line in (account.address or "").splitlines() if line.strip()],
            "email": account.email,
            "account_ref": f"A-{account.id}",
        },
        "start": start.isoformat(),
        "end": end.isoformat(),
        "generated_on": date.today().isoformat(),
        "currencies": blocks,
    }


def to_csv(statement: dict) -> str:
    out = io.StringIO()
    writer = csv_export.writer(out)
    writer.writerow(["currency", "date", "type", "reference", "description", "debit", "credit",
                     "balance"])  # fmt: skip
    for block in statement["currencies"]:
        code = block["currency"]
        writer.writerow([code, statement["start"], "Opening balance", "", "", "", "",
                         _plain(block["opening_minor"], code)])  # fmt: skip
        for line in block["lines"]:
            amount = line["amount_minor"]
            writer.writerow([code, line["date"], line["type"], line["reference"],
                             line["description"], _plain(amount, code) if amount > 0 else "",
                             _plain(-amount, code) if amount < 0 else "",
                             _plain(line["balance_minor"], code)])  # fmt: skip
        writer.writerow([code, statement["end"], "Closing balance", "", "", "", "",
                         _plain(block["closing_minor"], code)])  # fmt: skip
    return out.getvalue()


def pdf_format():
    """The enabled invoice format that renders PDF, or None (invoice_pdf disabled)."""
    formats = host().invoice_formats()
    return next((f for f in formats.values() if f.media_type == "application/pdf"), None)


def pdf_format_or_404():
    fmt = pdf_format()
    if fmt is None:
        raise NotFound("statements as PDF need the invoice_pdf plugin, which is not enabled")
    return fmt


def to_pdf(statement: dict) -> bytes:
    return pdf_format_or_404().render(statement)


def filename(account: Account, statement: dict, extension: str) -> str:
    return f"statement-A{account.id}-{statement['start']}-{statement['end']}.{extension}"
