"""The dashboard: an account's part of the tree at a glance, per level, on its Overview page
(the caller's own account's is the panel's landing page).

Every figure is scoped to the account's subtree, an account the caller may see
(``core.rbac``), and shown only with the privilege its own page needs: money owed (``billing.view``), monthly recurring revenue
(``catalog.view`` or ``billing.view``), the last bill runs (``billruns.run``), what went wrong
elsewhere (the ``dashboard_alerts`` hook: failed e-mail sends, failed PSA syncs, whatever a
plugin reports) and, for the provider's operators on their own account, the licence and what each add-on
needs. What went wrong elsewhere and the licence show on the caller's own account only.

Amounts come from the ledger's own rule (``core.billing.ledger.entries.amounts_due``: total less
allocated money and prepaid credit applied), summed in the database per currency; nothing
is converted between currencies.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

import peewee as pw

from core import clock, current, license_store, rbac
from core.billing.models import (
    Allocation,
    BillRun,
    Invoice,
    LedgerEntry,
    PricePlan,
    Product,
    Subscription,
)
from core.billing.money import format_money, to_minor
from core.models import Account

LICENCE_WARNING_DAYS = 30
#: who the money in each row of :func:`owed` is owed to / by, as the page says it
OWED_TO_YOU, OWED_BELOW, YOU_OWE = "to_you", "below", "you_owe"


def _due_expression():
    """(query, due) where ``due`` is what is still owed on each invoice of ``query``."""
    allocated = (
        Allocation.select(
            Allocation.invoice.alias("inv"), pw.fn.SUM(Allocation.amount).alias("amt")
        )
        .where(Allocation.invoice.is_null(False))
        .group_by(Allocation.invoice)
        .alias("allocated")
    )
    applied = (
        LedgerEntry.select(
            LedgerEntry.invoice.alias("inv"), pw.fn.SUM(LedgerEntry.amount).alias("amt")
        )
        .where((LedgerEntry.kind == "credit_applied") & LedgerEntry.invoice.is_null(False))
        .group_by(LedgerEntry.invoice)
        .alias("applied")
    )
    due = Invoice.total - pw.fn.COALESCE(allocated.c.amt, 0) + pw.fn.COALESCE(applied.c.amt, 0)
    return allocated, applied, due


def owed(account: Account, today: date | None = None) -> list[dict]:
    """Open and overdue amounts per currency for ``account`` (one the caller may see), in
    three groups: owed to it (invoices it issued), owed to accounts below it, and owed by it
    to the account above. ``overdue`` is the part whose due date has passed. Rows sorted by
    group and currency."""
    today = today or clock.today()
    own = account
    allocated, applied, due = _due_expression()
    group = pw.Case(
        None,
        [(Invoice.issuer == own.id, OWED_TO_YOU), (Invoice.account == own.id, YOU_OWE)],
        OWED_BELOW,
    )
    overdue = Invoice.due_date < today
    below = Account.select(Account.id).where(rbac.in_subtree(own))
    query = (
        Invoice.select(
            group.alias("grp"),
            Invoice.currency,
            pw.fn.SUM(due).alias("due"),
            pw.fn.SUM(pw.Case(None, [(overdue, due)], 0)).alias("overdue"),
            pw.fn.COUNT(Invoice.id).alias("invoices"),
            pw.fn.SUM(pw.Case(None, [(overdue, 1)], 0)).alias("overdue_invoices"),
        )
        .join(allocated, pw.JOIN.LEFT_OUTER, on=(allocated.c.inv == Invoice.id))
        .join(applied, pw.JOIN.LEFT_OUTER, on=(applied.c.inv == Invoice.id))
        .where(
            (Invoice.kind == "invoice")
            & (Invoice.status == "issued")
            & (due > 0)
            & (Invoice.issuer.in_(below) | (Invoice.account == own.id))
        )
        .group_by(group, Invoice.currency)
        .tuples()
    )
    order = {OWED_TO_YOU: 0, OWED_BELOW: 1, YOU_OWE: 2}
    rows = []
    for grp, currency, total, late, count, late_count in query:
        total, late = int(total or 0), int(late or 0)
        rows.append({
            "group": grp, "currency": currency, "due_minor": total, "overdue_minor": late,
            "open_minor": total - late, "invoices": int(count), "overdue_invoices": int(late_count),
            "due": format_money(total, currency), "overdue": format_money(late, currency),
            "open": format_money(total - late, currency),
        })  # fmt: skip
    return sorted(rows, key=lambda r: (order[r["group"]], r["currency"]))


def mrr(account: Account, today: date | None = None, *, sold: bool = True) -> list[dict]:
    """Monthly recurring revenue by price plan: the recurring price x quantity of every
    subscription running today (one period is a month: the bill cycle). ``sold``: plans of
    ``account`` or below (what its part of the tree sells); otherwise what ``account`` itself
    buys from above. Rounded per subscription (ROUND_HALF_UP), as a bill run rounds each
    line."""
    today = today or clock.today()
    own = account
    below = Account.select(Account.id).where(rbac.in_subtree(own))
    if sold:
        where = PricePlan.account.in_(below)
    else:
        where = (Subscription.account == own.id) & PricePlan.account.not_in(below)
    query = (
        Subscription.select(
            PricePlan.id,
            PricePlan.name,
            PricePlan.currency,
            PricePlan.recurring_price,
            Account.name,
            Subscription.quantity,
        )  # fmt: skip
        .join(PricePlan)
        .join(Product)
        .switch(PricePlan)
        .join(Account, on=(PricePlan.account == Account.id))
        .where(
            where
            & (Product.kind == "recurring")
            & (Subscription.start <= today)
            & (Subscription.end.is_null() | (Subscription.end > today))
        )
        .tuples()
    )
    plans: dict[int, dict] = {}
    for plan_id, name, currency, price, seller, quantity in query:
        row = plans.setdefault(plan_id, {"plan_id": plan_id, "plan": name, "seller": seller,
                                         "currency": currency, "subscriptions": 0,
                                         "mrr_minor": 0})  # fmt: skip
        row["subscriptions"] += 1
        row["mrr_minor"] += to_minor(Decimal(price) * Decimal(quantity), currency)
    rows = sorted(plans.values(), key=lambda r: (r["currency"], -r["mrr_minor"], r["plan"]))
    for row in rows:
        row["mrr"] = format_money(row["mrr_minor"], row["currency"])
    return rows


def mrr_totals(rows: list[dict]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row["currency"]] += row["mrr_minor"]
    return dict(sorted(totals.items()))


def last_runs(account: Account, limit: int = 5) -> list[BillRun]:
    """The latest bill runs of ``account``'s subtree (run by it or below it)."""
    from core.billing.runs import queue

    below = Account.select(Account.id).where(rbac.in_subtree(account))
    query = BillRun.select().where(BillRun.scope.in_(below))
    return [queue.live(r) for r in query.order_by(BillRun.id.desc()).limit(limit)]


def alerts(user) -> list:
    """What the ``dashboard_alerts`` hook reports for ``user`` (each plugin its own, scoped
    to the user's subtree), the ones with something to show."""
    host = current.host()
    found = []
    for answer in host.call("dashboard_alerts", user=user):
        found.extend(a for a in answer or () if a.count)
    return found


def licence(today: date | None = None) -> dict:
    """For operators: the licence, its expiry (a warning from LICENCE_WARNING_DAYS before),
    and each add-on with the licence feature it needs and whether the licence covers it."""
    from core.api.resources import license_status, plugin_rows
    from core.plugins import CORE_PLUGIN

    today = today or clock.today()
    status = license_status()
    expires = status.get("expires")
    days_left = None
    if expires:
        expiry = expires if isinstance(expires, date) else date.fromisoformat(str(expires))
        days_left = (expiry - today).days
    warning = None
    if not status["installed"]:
        warning = "No licence is installed: add-ons that need a licence feature cannot be enabled."
    elif days_left is not None and days_left < 0:
        warning = f"The licence expired on {expires}: licensed add-ons refuse new work."
    elif days_left is not None and days_left <= LICENCE_WARNING_DAYS:
        warning = f"The licence expires on {expires}, in {days_left} day(s): install a new one."
    addons = [r for r in plugin_rows() if r["name"] != CORE_PLUGIN]
    return {**status, "days_left": days_left, "warning": warning, "addons": addons,
            "current": license_store.current_record() is not None}  # fmt: skip


def hbar_chart(rows: list[dict], value: str, label: str, currency: str, title: str):
    """A horizontal bar chart as inline SVG (server-side, no script: the activity chart's
    way, ``core.billing.ledger.reports.bar_chart``), one bar per row."""
    from markupsafe import Markup, escape

    width, left, right, bar_h, gap = 720, 220, 110, 18, 8
    height = max(len(rows), 1) * (bar_h + gap) + 10
    top = max([r[value] for r in rows] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
    ]
    for index, row in enumerate(rows):
        y = 5 + index * (bar_h + gap)
        w = (width - left - right) * max(row[value], 0) / top
        text = f"{row[label]}: {format_money(row[value], currency)}"
        parts.append(
            f'<text x="{left - 8}" y="{y + 13}" text-anchor="end" font-size="12" '
            f'fill="#1d2733">{escape(str(row[label])[:32])}</text>'
            f'<rect class="bar" data-value="{row[value]}" x="{left}" y="{y}" width="{w:.1f}" '
            f'height="{bar_h}" fill="#c27c0e"><title>{escape(text)}</title></rect>'
            f'<text x="{left + w + 6:.1f}" y="{y + 13}" font-size="12" fill="#667385">'
            f"{escape(format_money(row[value], currency))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def owed_chart(rows: list[dict], currency: str, titles: dict[str, str]):
    """Open and overdue amounts of one currency as stacked horizontal bars, one per group."""
    from markupsafe import Markup, escape

    width, left, right, bar_h, gap = 720, 220, 150, 20, 10
    mine = [r for r in rows if r["currency"] == currency]
    height = max(len(mine), 1) * (bar_h + gap) + 30
    top = max([r["due_minor"] for r in mine] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="Open and overdue '
        f'amounts in {escape(currency)}">'
    ]
    for index, row in enumerate(mine):
        y = 5 + index * (bar_h + gap)
        scale = (width - left - right) / top
        w_late, w_open = row["overdue_minor"] * scale, row["open_minor"] * scale
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" font-size="12" '
            f'fill="#1d2733">{escape(titles[row["group"]])}</text>'
            f'<rect class="bar overdue" data-value="{row["overdue_minor"]}" x="{left}" y="{y}" '
            f'width="{w_late:.1f}" height="{bar_h}" fill="#b42318"><title>overdue '
            f"{escape(row['overdue'])}</title></rect>"
            f'<rect class="bar open" data-value="{row["open_minor"]}" x="{left + w_late:.1f}" '
            f'y="{y}" width="{w_open:.1f}" height="{bar_h}" fill="#c27c0e"><title>not due yet '
            f"{escape(row['open'])}</title></rect>"
            f'<text x="{left + w_late + w_open + 6:.1f}" y="{y + 14}" font-size="12" '
            f'fill="#667385">{escape(row["due"])}</text>'
        )
    legend_y = height - 10
    parts.append(
        f'<rect x="{left}" y="{legend_y - 9}" width="10" height="10" fill="#b42318"/>'
        f'<text x="{left + 14}" y="{legend_y}" font-size="11" fill="#667385">overdue</text>'
        f'<rect x="{left + 80}" y="{legend_y - 9}" width="10" height="10" fill="#c27c0e"/>'
        f'<text x="{left + 94}" y="{legend_y}" font-size="11" fill="#667385">not due yet</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def context(user, account: Account) -> dict:
    """What the Overview page shows of ``account`` for ``user`` (template variables)."""
    own = account.id == user.account_id
    see_money = rbac.has(user, "billing.view")
    rows = owed(account) if see_money else []
    titles = {
        OWED_TO_YOU: f"Owed to {account.name}",
        OWED_BELOW: "Owed to accounts below",
        YOU_OWE: f"Owed by {account.name}",
    }
    see_plans = see_money or rbac.has(user, "catalog.view")
    sold = mrr(account) if see_plans else []
    totals = mrr_totals(sold)
    return {
        "see_money": see_money,
        "owed": rows,
        "titles": titles,
        "owed_charts": [
            (c, owed_chart(rows, c, titles)) for c in sorted({r["currency"] for r in rows})
        ],
        "sold": sold,
        "sold_totals": totals,
        "mrr_charts": [
            (
                c,
                hbar_chart(
                    [r for r in sold if r["currency"] == c],
                    "mrr_minor",
                    "plan",
                    c,
                    f"Monthly recurring revenue by plan in {c}",
                ),
            )
            for c in totals
        ],  # fmt: skip
        "bought": mrr(account, sold=False) if see_money else [],
        "runs": last_runs(account) if rbac.has(user, "billruns.run") else None,
        "alerts": alerts(user) if own else [],
        "licence": licence()
        if own and account.parent_id is None and rbac.has(user, "plugins.manage")
        else None,
        "warning_days": LICENCE_WARNING_DAYS,
        "format_money": format_money,
    }
