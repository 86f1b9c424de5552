"""Activity reports: usage and charges by product and by month, for an account and — for a
provider or a reseller — per child account; CSV and an inline SVG bar chart.

* **Usage** is the quantity of the account's usage records (by the day they occurred),
  summed per product of the subscription's plan, in the product's unit.
* **Charges** are the lines of the invoices and credit notes billed to the account (issued,
  paid or void-free: void documents are left out), per product code (lines without one are
  reported under their description), in the month of the invoice's period start (the issue
  date for invoices without a period). Credit notes count negative. Prepaid top-ups are not
  charges (they buy credit the charges are later paid with) and are left out.
* **Per child account** (provider and reseller accounts): the same for each account directly
  below, on what is billed to that account itself.

Months are ``YYYY-MM``; a report covers ``[from, to]`` months, both included.
"""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import date
from decimal import Decimal

from markupsafe import Markup, escape

from core import csv_export, rbac
from core.billing.models import (
    Invoice,
    InvoiceLine,
    PrepaidTopup,
    PricePlan,
    Product,
    Subscription,
    UsageRecord,
)
from core.billing.money import canonical_decimal_text, format_money, to_decimal
from core.errors import ValidationFailed
from core.models import Account

MAX_MONTHS = 60


def parse_month(value: str, field: str) -> date:
    text = (value or "").strip()
    try:
        year, month = text.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError
        return date(int(year), int(month), 1)
    except ValueError:
        raise ValidationFailed.field(field, f"must be a month like 2026-01, got {text!r}") from None


def month_key(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def months(start: date, end: date) -> list[str]:
    out, y, m = [], start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def default_range(today: date | None = None) -> tuple[date, date]:
    today = today or date.today()
    y, m = today.year, today.month - 11
    if m <= 0:
        y, m = y - 1, m + 12
    return date(y, m, 1), date(today.year, today.month, 1)


def _after(month_start: date) -> date:
    y, m = month_start.year, month_start.month
    return date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1)


def check_range(start: date, end: date) -> list[str]:
    if end < start:
        raise ValidationFailed.field("to", "must not be before 'from'")
    if (end.year - start.year) * 12 + end.month - start.month >= MAX_MONTHS:
        raise ValidationFailed.field("to", f"a report covers at most {MAX_MONTHS} months")
    return months(start, end)


def _rows(account_id: int, start: date, end: date) -> dict:
    """``{(month, product, currency): {"usage": Decimal, "unit": str, "name": str,
    "charges": int}}`` for one account."""
    stop = _after(end)
    rows: dict = defaultdict(lambda: {"usage": Decimal(0), "unit": "", "name": "", "charges": 0,
                                      "has_usage": False})  # fmt: skip
    usage = (
        UsageRecord.select(
            UsageRecord.quantity,
            UsageRecord.occurred_at,
            Product.code,
            Product.name,
            Product.unit,
            PricePlan.currency,
        )  # fmt: skip
        .join(Subscription, on=(UsageRecord.subscription == Subscription.id))
        .join(PricePlan, on=(Subscription.plan == PricePlan.id))
        .join(Product, on=(PricePlan.product == Product.id))
        .where(
            (UsageRecord.account == account_id)
            & (UsageRecord.occurred_at >= start)
            & (UsageRecord.occurred_at < stop)
        )
        .namedtuples()
    )
    for rec in usage:
        row = rows[(month_key(rec.occurred_at), rec.code, rec.currency)]
        row["usage"] += rec.quantity
        row["unit"], row["name"], row["has_usage"] = rec.unit, rec.name, True
    topups = PrepaidTopup.select(PrepaidTopup.invoice).where(PrepaidTopup.account == account_id)
    invoices = {
        inv.id: inv
        for inv in Invoice.select().where(
            (Invoice.account == account_id)
            & Invoice.status.in_(("issued", "paid"))
            & Invoice.id.not_in(topups)
            & (Invoice.credit_for.is_null() | Invoice.credit_for.not_in(topups))
        )
    }
    when = {}
    for inv in invoices.values():
        day = inv.period_start or (inv.issued_at.date() if inv.issued_at else None)
        if day is not None and start <= day < stop:
            when[inv.id] = month_key(day)
    if when:
        lines = InvoiceLine.select(InvoiceLine.invoice, InvoiceLine.amount,
                                   InvoiceLine.product_code, InvoiceLine.description,
                                   InvoiceLine.unit).where(InvoiceLine.invoice.in_(list(when)))  # fmt: skip
        for line in lines:
            inv = invoices[line.invoice_id]
            product = line.product_code or line.description[:60]
            row = rows[(when[inv.id], product, inv.currency)]
            row["charges"] += line.amount
            if not row["name"]:
                row["name"] = line.description if not line.product_code else line.product_code
                row["unit"] = row["unit"] or line.unit
    names = dict(Product.select(Product.code, Product.name).where(
        Product.code.in_({k[1] for k in rows})).tuples()) if rows else {}  # fmt: skip
    for key, row in rows.items():
        if key[1] in names and (not row["name"] or row["name"] == key[1]):
            row["name"] = names[key[1]]
    return rows


def _flatten(account: Account, rows: dict) -> list[dict]:
    out = []
    for (month, product, currency), row in sorted(rows.items()):
        out.append(
            {
                "account_id": account.id,
                "account": account.name,
                "month": month,
                "product": product,
                "product_name": row["name"] or product,
                "unit": row["unit"],
                "usage": canonical_decimal_text(row["usage"]) if row["has_usage"] else "",
                "currency": currency,
                "charges_minor": row["charges"],
                "charges": format_money(row["charges"], currency),
            }
        )
    return out


def has_children_view(account: Account) -> bool:
    return rbac.level_of(account) in ("provider", "reseller")


def activity(account: Account, start: date, end: date) -> dict:
    """The report of ``account`` for the months ``[start, end]`` (first days of months)."""
    span = check_range(start, end)
    rows = _flatten(account, _rows(account.id, start, end))
    by_month: dict[str, dict[str, int]] = defaultdict(lambda: {m: 0 for m in span})
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        by_month[row["currency"]][row["month"]] += row["charges_minor"]
        totals[row["currency"]] += row["charges_minor"]
    children = []
    child_months: dict[str, dict[str, int]] = defaultdict(lambda: {m: 0 for m in span})
    if has_children_view(account):
        for child in account.children.order_by(Account.name):
            child_rows = _flatten(child, _rows(child.id, start, end))
            sums: dict[str, int] = defaultdict(int)
            for row in child_rows:
                sums[row["currency"]] += row["charges_minor"]
                child_months[row["currency"]][row["month"]] += row["charges_minor"]
            children.append(
                {
                    "account_id": child.id,
                    "account": child.name,
                    "type": child.type,
                    "totals": [
                        {"currency": c, "charges_minor": v, "charges": format_money(v, c)}
                        for c, v in sorted(sums.items())
                    ],
                    "rows": child_rows,
                }
            )
    return {
        "account_id": account.id,
        "account": account.name,
        "from": span[0],
        "to": span[-1],
        "months": span,
        "rows": rows,
        "by_month": _points(by_month),
        "totals": [
            {"currency": c, "charges_minor": v, "charges": format_money(v, c)}
            for c, v in sorted(totals.items())
        ],
        "children": children,
        "children_by_month": _points(child_months),
    }


def _points(per_currency: dict) -> dict:
    return {
        c: [{"month": m, "charges_minor": v, "charges": format_money(v, c)} for m, v in per.items()]
        for c, per in sorted(per_currency.items())
    }


def to_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv_export.writer(out)
    writer.writerow(["account_id", "account", "month", "product", "product_name", "unit",
                     "usage", "currency", "charges"])  # fmt: skip

    def emit(rows):
        for row in rows:
            writer.writerow([row["account_id"], row["account"], row["month"], row["product"],
                             row["product_name"], row["unit"], row["usage"], row["currency"],
                             format(to_decimal(row["charges_minor"], row["currency"]), "f")])  # fmt: skip

    emit(report["rows"])
    for child in report["children"]:
        emit(child["rows"])
    return out.getvalue()


def bar_chart(points: list[dict], currency: str, width: int = 720, height: int = 240) -> Markup:
    """Charges per month as an inline SVG bar chart (server-side, no script, no CDN).
    ``points`` are ``{"month", "charges_minor"}``; negative months (credits) go below 0."""
    left, right, top, bottom = 70, 10, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [p["charges_minor"] for p in points] or [0]
    high, low = max(max(values), 0), min(min(values), 0)
    span = (high - low) or 1
    zero_y = top + plot_h * high / span
    step = plot_w / max(len(points), 1)
    bar = max(step * 0.6, 2)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="Charges per month in '
        f'{escape(currency)}">',
        f'<line x1="{left}" y1="{zero_y:.1f}" x2="{width - right}" y2="{zero_y:.1f}" '
        'stroke="#9aa7b8" stroke-width="1"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11" fill="#667385">'
        f"{escape(format_money(high, currency))}</text>",
        f'<text x="{left - 6}" y="{zero_y + 4:.1f}" text-anchor="end" font-size="11" '
        f'fill="#667385">0</text>',
    ]
    for index, point in enumerate(points):
        value = point["charges_minor"]
        x = left + index * step + (step - bar) / 2
        h = plot_h * abs(value) / span
        y = zero_y - h if value >= 0 else zero_y
        label = f"{point['month']}: {format_money(value, currency)}"
        colour = "#c27c0e" if value >= 0 else "#b42318"
        parts.append(
            f'<rect class="bar" data-month="{escape(point["month"])}" data-value="{value}" '
            f'x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0):.1f}" '
            f'fill="{colour}"><title>{escape(label)}</title></rect>'
        )
        if len(points) <= 24 or index % 2 == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                f'font-size="10" fill="#667385">{escape(point["month"][2:])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
