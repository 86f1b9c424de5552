"""The invoice as plain data: what every ``InvoiceFormat.render(document)`` receives.

Amounts are given twice: formatted for people (``"1,234.56"``, totals with the currency) and
as integer minor units (``*_minor``) for machines. Dates are ISO 8601 (``"2026-11-01"``);
formats localise them (and amounts) for ``language``. Keys (stable, formats rely on them):

``kind`` (invoice / credit_note), ``number``, ``status``, ``currency``, ``language`` (the
buyer's invoice language, e.g. ``"en"``), ``issue_date``, ``due_date``, ``period_start``,
``period_end`` (exclusive), ``supply_period`` ({start, end}, both inclusive: the date of
supply, from the lines' service days or else the period; None when the supply date is the
issue date), ``issuer`` and ``recipient`` ({name (the legal name), address [lines, the
country's name last], street [lines], postcode, city, region, country (ISO 3166 alpha-2,
empty when unknown), country_name, vat_id, tax_id (the same), registration_number, email, emails [billing
e-mails], account_ref, language}), ``payment`` (None on credit notes, else {iban (grouped in
fours, or empty), bic, text (free-text instructions), reference (what to quote when paying),
reference_rule, terms_days}), ``lines`` ([{position, description, quantity, unit,
unit_price, amount, amount_minor, product_code, group, service_start, service_end}];
``unit_price`` is net of tax), ``groups`` ([{name, subtotal, subtotal_minor}], empty when no
line is grouped), ``subtotal``, ``tax``, ``total`` (formatted; ``total`` carries the
currency code), ``subtotal_minor``, ``tax_minor``, ``total_minor``, ``tax_rate`` (e.g.
``"20%"``), ``tax_breakdown`` ([{rate, rate_percent, taxable, taxable_minor, tax,
tax_minor}], one entry per rate), ``reverse_charge`` (bool), ``reverse_charge_statement``
(the text to print, empty when no reverse charge), ``amount_paid``, ``credit_applied``,
``amount_due`` (formatted with the currency, from the ledger at the time the document is
built) and ``amount_paid_minor``, ``credit_applied_minor``, ``amount_due_minor``,
``credit_note_for`` (the credited invoice's number or None), ``notes``.

The parties, the payment instructions and the tax decision of an issued invoice are the ones
kept when it was issued (:mod:`core.billing.invoicing.parties`), never the accounts as they are now;
drafts show the accounts as they are (invoices issued before the parties were kept got them
as they were at the upgrade: core migration 4, :func:`core.billing.invoicing.parties.backfill`).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from core.billing.invoicing import parties
from core.billing.invoicing import tax as tax_rule
from core.billing.ledger import entries as ledger
from core.billing.models import Invoice, InvoiceLine
from core.billing.money import canonical_decimal_text, format_money, to_decimal


def _amount(minor: int, currency: str) -> str:
    """Formatted without the currency code: "1,234.56", "-0.50"."""
    value = to_decimal(minor, currency)
    return ("-" if minor < 0 else "") + format(abs(value), ",f")


def _kept(invoice: Invoice) -> tuple[dict, dict, dict | None, dict]:
    """(seller, buyer, payment, tax) as issued, or as the accounts are now for a draft."""
    row = parties.recorded(invoice) if invoice.status != "draft" else None
    if row is not None:
        return row.seller, row.buyer, row.payment, row.tax
    issuer, recipient = invoice.issuer, invoice.account  # loaded unless the caller set them
    payment = None
    if invoice.kind == "invoice":
        payment = parties.payment_instructions(issuer)
        payment["reference"] = payment["reference_rule"].format(
            number=invoice.number or f"DRAFT-{invoice.id}",
            account_ref=f"A-{recipient.id}",
            issue_year=(invoice.issued_at or invoice.created_at).year,
        )
    if invoice.status == "draft":
        # what the draft charges now (it is rated again when issued): the statement only
        # where the rule says reverse charge and the draft's own rate is 0 as well
        decision = dict(tax_rule.decide(issuer, recipient), rate=invoice.tax_rate)
        decision["reverse_charge"] &= Decimal(invoice.tax_rate or "0") == 0
    else:  # issued before the parties were kept: what it charged
        decision = {"rule": "issuer", "rate": invoice.tax_rate, "reverse_charge": False}
    return parties.party(issuer), parties.party(recipient), payment, decision


def _supply_period(invoice: Invoice, lines: list[dict]) -> dict | None:
    """The days supplied: the lines' service days where they have them (a subscription that
    started mid-period supplied from its start), else the invoice's period."""
    starts = [line["service_start"] for line in lines if line.get("service_start")]
    ends = [line["service_end"] for line in lines if line.get("service_end")]
    if starts and ends:
        start, end = min(starts), max(ends)
    else:
        start, end = invoice.period_start, invoice.period_end
        if start is None or end is None:
            return None
    last = end - timedelta(days=1) if end > start else end
    return {"start": start.isoformat(), "end": last.isoformat()}


def build(invoice: Invoice, lines: list[dict] | None = None) -> dict:
    """The document of ``invoice``; ``lines`` are its line rows (field name -> value) in
    position order when the caller has them, else they are read."""
    currency = invoice.currency
    if lines is None:
        lines = list(invoice.lines.order_by(InvoiceLine.position).dicts())
    seller, buyer, payment, decision = _kept(invoice)
    out = []
    groups: dict[str, int] = {}
    for line in lines:
        amount, group = line["amount"], line["group"]
        out.append(
            {
                "position": line["position"],
                "description": line["description"],
                "quantity": canonical_decimal_text(line["quantity"]),
                "unit": line["unit"],
                "unit_price": canonical_decimal_text(line["unit_price"]),
                "amount": _amount(amount, currency),
                "amount_minor": amount,
                "product_code": line["product_code"],
                "group": group,
                "service_start": _iso(line.get("service_start")),
                "service_end": _iso(line.get("service_end")),
            }
        )
        if group:
            groups[group] = groups.get(group, 0) + amount
    credited = invoice.credit_for
    settled = ledger.settlement(invoice)
    reverse_charge = bool(decision.get("reverse_charge"))
    rate = canonical_decimal_text(Decimal(invoice.tax_rate or "0"))
    return {
        "kind": invoice.kind,
        "number": invoice.number or f"DRAFT-{invoice.id}",
        "status": invoice.status,
        "currency": currency,
        "language": buyer.get("language") or "en",
        "issue_date": invoice.issued_at.date().isoformat() if invoice.issued_at else None,
        "due_date": invoice.due_date.isoformat() if invoice.due_date else None,
        "period_start": invoice.period_start.isoformat() if invoice.period_start else None,
        "period_end": invoice.period_end.isoformat() if invoice.period_end else None,
        "supply_period": _supply_period(invoice, lines),
        "issuer": seller,
        "recipient": buyer,
        "payment": payment,
        "lines": out,
        "groups": [
            {"name": name, "subtotal": _amount(total, currency), "subtotal_minor": total}
            for name, total in groups.items()
        ],
        "subtotal": _amount(invoice.subtotal, currency),
        "tax": _amount(invoice.tax, currency),
        "total": format_money(invoice.total, currency),
        "subtotal_minor": invoice.subtotal,
        "tax_minor": invoice.tax,
        "total_minor": invoice.total,
        "tax_rate": f"{invoice.tax_rate}%",
        "tax_breakdown": [
            {
                "rate": f"{rate}%",
                "rate_percent": rate,
                "taxable": _amount(invoice.subtotal, currency),
                "taxable_minor": invoice.subtotal,
                "tax": _amount(invoice.tax, currency),
                "tax_minor": invoice.tax,
            }
        ],
        "reverse_charge": reverse_charge,
        "reverse_charge_statement": tax_rule.REVERSE_CHARGE_STATEMENT if reverse_charge else "",
        "amount_paid": format_money(settled["paid"], currency),
        "credit_applied": format_money(settled["credit"], currency),
        "amount_due": format_money(settled["due"], currency),
        "amount_paid_minor": settled["paid"],
        "credit_applied_minor": settled["credit"],
        "amount_due_minor": settled["due"],
        "credit_note_for": credited.number if credited else None,
        "notes": "",  # free text; the due date and payment are their own keys
    }


def _iso(value) -> str | None:
    return value.isoformat() if value else None
