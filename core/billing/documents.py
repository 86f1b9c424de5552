"""The invoice as plain data: what every ``InvoiceFormat.render(document)`` receives.

Amounts are given twice: formatted for people (``"1,234.56"``, totals with the currency) and
as integer minor units (``*_minor``) for machines. Keys (stable, formats rely on them):

``kind`` (invoice / credit_note), ``number``, ``status``, ``currency``, ``issue_date``,
``due_date``, ``period_start``, ``period_end``, ``issuer`` and ``recipient`` ({name, address
[lines], email, tax_id / account_ref}), ``lines`` ([{position, description, quantity, unit,
unit_price, amount, amount_minor, product_code, group}]), ``groups`` ([{name, subtotal,
subtotal_minor}], empty when no line is grouped), ``subtotal``, ``tax``, ``total`` (formatted;
``total`` carries the currency code), ``subtotal_minor``, ``tax_minor``, ``total_minor``,
``tax_rate`` (e.g. ``"20%"``), ``credit_note_for`` (the credited invoice's number or None),
``notes``.
"""

from __future__ import annotations

from core.billing.models import Invoice, InvoiceLine
from core.billing.money import canonical_decimal_text, format_money, to_decimal
from core.models import Account


def _amount(minor: int, currency: str) -> str:
    """Formatted without the currency code: "1,234.56", "-0.50"."""
    value = to_decimal(minor, currency)
    return ("-" if minor < 0 else "") + format(abs(value), ",f")


def _party(account: Account) -> dict:
    return {
        "name": account.name,
        "address": [line for line in (account.address or "").splitlines() if line.strip()],
        "email": account.email,
        "tax_id": (account.profile or {}).get("tax_id", ""),
        "account_ref": f"A-{account.id}",
    }


def build(invoice: Invoice, lines: list[dict] | None = None) -> dict:
    """The document of ``invoice``; ``lines`` are its line rows (field name -> value) in
    position order when the caller has them, else they are read."""
    currency = invoice.currency
    issuer, recipient = invoice.issuer, invoice.account  # loaded unless the caller set them
    if lines is None:
        lines = invoice.lines.order_by(InvoiceLine.position).dicts()
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
            }
        )
        if group:
            groups[group] = groups.get(group, 0) + amount
    credited = invoice.credit_for
    return {
        "kind": invoice.kind,
        "number": invoice.number or f"DRAFT-{invoice.id}",
        "status": invoice.status,
        "currency": currency,
        "issue_date": invoice.issued_at.date().isoformat() if invoice.issued_at else None,
        "due_date": invoice.due_date.isoformat() if invoice.due_date else None,
        "period_start": invoice.period_start.isoformat() if invoice.period_start else None,
        "period_end": invoice.period_end.isoformat() if invoice.period_end else None,
        "issuer": _party(issuer),
        "recipient": _party(recipient),
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
        "credit_note_for": credited.number if credited else None,
        "notes": f"Payment due by {invoice.due_date.isoformat()}." if invoice.due_date else "",
    }
