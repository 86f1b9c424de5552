"""Rating and bill runs.

A bill run for ``as_of`` takes every account holding a subscription and, for each billing
period of that account (its ``bill_cycle_day``) that ended on or before ``as_of`` and is not
invoiced yet, rates:

* one **recurring** line per subscription: quantity x the plan's recurring price x the share
  of the period the subscription was active (``overlap_fraction``, exact, rounded once);
* one **usage** line per subscription with usage in the period: the summed quantity x the
  plan's usage rate, or the volume-tier price the total falls in (``tiered_unit_price``);
* **one-off** products: quantity x price once, in the period containing the start;
* the :class:`~core.registry.Charge` lines plugins return from ``charges_for_period``.

Lines are grouped per **issuer**: the account owning the price plan (the seller) — the
provider for its customers, a reseller for the customers it sells its own plans to. Plugin
charges go to the billed account's parent (the account that sells to it).

Tax: once per invoice, on the subtotal, at the **issuer's** ``tax_rate`` (the seller charges
the tax; DESIGN.md "tax once per invoice from the issuing account's tax rate").

Each (account, issuer, period) invoice is written, numbered and issued in ONE transaction; the
unique index on ``Invoice(account, issuer, run_period, kind)`` makes a concurrent or repeated
writer fail with IntegrityError, which is rolled back and reported as skipped "already
invoiced". Formats are rendered after the commit (:mod:`core.billing.storage`), then
``invoice_finalized`` is called.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import peewee as pw
from flask import current_app

from core import audit, rbac
from core.billing import invoices as lifecycle
from core.billing import ledger, storage
from core.billing.models import (
    BillRun,
    Invoice,
    InvoiceLine,
    PricePlan,
    Product,
    Subscription,
    UsageRecord,
)
from core.billing.money import (
    canonical_decimal_text,
    format_money,
    invoice_totals,
    line_amount,
    tiered_unit_price,
)
from core.billing.periods import closed_periods, overlap_fraction
from core.db import Prepared, database, insert_row, insert_rows, utcnow
from core.models import Account

log = logging.getLogger("billhive.billing")


def host():
    return current_app.extensions["billhive"].host


# -- rating ----------------------------------------------------------------------------------


def _line(description, quantity, unit_price, currency, *, fraction=Decimal(1), unit="",
          product_code="", group=None, source="") -> dict:  # fmt: skip
    return {
        "description": description,
        "quantity": quantity,
        "unit": unit,
        "unit_price": unit_price,
        "fraction": fraction,
        "amount": line_amount(quantity, unit_price, currency, fraction),
        "product_code": product_code,
        "group": group,
        "source": source,
    }


def _active(sub: Subscription, period: tuple[date, date]) -> bool:
    return sub.start < period[1] and (sub.end is None or sub.end > period[0])


def rate_subscriptions(account: Account, period, subs: list, usage: dict) -> dict[int, list]:
    """Plan lines of ``account`` for ``period``: ``{issuer_id: [line, ...]}``.

    ``usage`` maps subscription id -> summed usage quantity in the period.
    """
    currency = account.currency
    out: dict[int, list] = defaultdict(list)
    for sub in subs:
        if not _active(sub, period):
            continue
        plan, product = sub.plan, sub.plan.product
        issuer = plan.account_id
        label = f"{product.name} — {plan.name}"
        if product.kind == "one_off":
            if period[0] <= sub.start < period[1] and plan.recurring_price:
                out[issuer].append(_line(label, sub.quantity, plan.recurring_price, currency,
                                         unit=product.unit, product_code=product.code,
                                         source=f"subscription:{sub.id}"))  # fmt: skip
            continue
        if plan.recurring_price:
            fraction = overlap_fraction(sub.start, sub.end, period)
            if fraction:
                days, of = fraction.as_integer_ratio()
                text = label
                if fraction != 1:
                    total_days = (period[1] - period[0]).days
                    text = f"{label} ({total_days * days // of} of {total_days} days)"
                out[issuer].append(_line(text, sub.quantity, plan.recurring_price, currency,
                                         fraction=fraction, unit=product.unit,
                                         product_code=product.code,
                                         source=f"subscription:{sub.id}"))  # fmt: skip
        if sub.id in usage:
            quantity = usage[sub.id]
            price = tiered_unit_price(quantity, plan.tiers) if plan.tiers else plan.usage_rate
            out[issuer].append(_line(f"{product.name} usage", quantity, price, currency,
                                     unit=product.unit, product_code=product.code,
                                     source=f"usage:{sub.id}"))  # fmt: skip
    return out


def plugin_charges(account: Account, period) -> list[dict]:
    lines = []
    for charges in host().call("charges_for_period", account=account, period=period):
        for c in charges or ():
            lines.append(_line(c.description, c.quantity, c.unit_price, account.currency,
                               fraction=c.fraction, unit=c.unit, product_code=c.product_code,
                               group=c.group, source=c.source or "plugin"))  # fmt: skip
    return lines


def _usage_sums(account: Account, period) -> dict[int, Decimal]:
    sums: dict[int, Decimal] = defaultdict(Decimal)
    query = UsageRecord.select(UsageRecord.subscription, UsageRecord.quantity).where(
        (UsageRecord.account == account.id)
        & (UsageRecord.occurred_at >= period[0])
        & (UsageRecord.occurred_at < period[1])
    )
    for rec in query:
        sums[rec.subscription_id] += rec.quantity
    return dict(sums)


# -- who may issue ---------------------------------------------------------------------------


def issuer_refusal(issuer: Account, account: Account, period) -> str | None:
    """Why ``issuer`` must not invoice ``account`` for ``period`` now, or None."""
    h = host()
    declared = h.catalog.account_types.get(issuer.type)
    if declared is None:
        return f"issuer {issuer.name}: account type '{issuer.type}' is not installed"
    plugin = declared.plugin
    if not h.is_enabled(plugin):
        return (
            f"issuer {issuer.name} is a '{issuer.type}' account of plugin '{plugin}', "
            "which is disabled"
        )
    problem = h.license_problem(plugin)
    if problem:
        feature = h.get(plugin).meta.license_feature
        return f"issuer {issuer.name}: plugin '{plugin}' needs licence feature {feature}: {problem}"
    return None


def _options(issuer: Account, account: Account, period):
    return host().hook("invoice_options")(issuer=issuer, account=account, period=period)


# -- writing ---------------------------------------------------------------------------------


class AlreadyInvoiced(Exception):
    pass


def line_rows(lines: list[dict]) -> list[dict]:
    """The rows of ``lines`` for the ``invoiceline`` table (without the invoice id), in
    position order; also what :func:`core.billing.documents.build` reads lines from."""
    return [
        {
            "position": position,
            "description": line["description"][:500],
            "quantity": line["quantity"],
            "unit": line["unit"],
            "unit_price": line["unit_price"],
            "fraction": line["fraction"],
            "amount": line["amount"],
            "product_code": line["product_code"],
            "group": line["group"],
            "source": line["source"],
        }
        for position, line in enumerate(lines, start=1)
    ]


_set_number = Prepared(
    lambda number, invoice: Invoice.update(number=number).where(Invoice.id == invoice)
)
_SEQUENCED: set[tuple] = set()  # (database, issuer id) known to have an invoice sequence


def write_invoice(account: Account, issuer: Account, period, lines: list[dict],
                  bill_run_id: int | None = None, actor=None) -> Invoice:  # fmt: skip
    """Write, number and issue one bill-run invoice in one transaction.

    Raises :class:`AlreadyInvoiced` when the unique index says this (account, issuer,
    period) has its invoice already (another run, another process); nothing is left behind.
    The invoice returned holds its account and issuer, and ``written_lines``: the line rows
    as written (what :func:`render_now` builds the document from, reading nothing back).
    """
    currency = account.currency
    subtotal, tax, total = invoice_totals(
        [line["amount"] for line in lines], Decimal(issuer.tax_rate), currency
    )
    now = utcnow()
    key = (id(database.obj), issuer.id)
    if key not in _SEQUENCED:
        # the issuer's number sequence exists before the issuing transaction, so two workers
        # issuing its first invoices at once do not both create it
        lifecycle._ensure_sequence(issuer.id, "invoice")
        _SEQUENCED.add(key)
    values = {
        "account": account.id,
        "issuer": issuer.id,
        "kind": "invoice",
        "status": "issued",
        "period_start": period[0],
        "period_end": period[1],
        "run_period": period[0],
        "currency": currency,
        "subtotal": subtotal,
        "tax": tax,
        "total": total,
        "tax_rate": issuer.tax_rate,
        "issued_at": now,
        "due_date": period[1] + timedelta(days=lifecycle.PAYMENT_TERMS_DAYS),
        "bill_run": bill_run_id,
        "created_at": now,
    }
    rows = line_rows(lines)
    try:
        with lifecycle.write_transaction():
            # the hot path's statements have their SQL built once (core.db.insert_rows)
            invoice = insert_row(Invoice, values)
            insert_rows(InvoiceLine, [{"invoice": invoice.id, **row} for row in rows])
            # numbered last: the issuer's number sequence stays locked (until the commit)
            # for as short a time as possible; a rollback gives the number back
            invoice.number = lifecycle.next_number(issuer, "invoice")
            _set_number.execute(invoice.number, invoice.id)
            audit.record(
                actor,
                "invoice.issue",
                invoice,
                account=account.id,
                after={**lifecycle.snapshot(invoice), "bill_run": bill_run_id},
            )
            ledger.post_issued(invoice, actor)  # its ledger entry; draws prepaid credit
    except pw.IntegrityError:
        if Invoice.get_or_none(account=account.id, issuer=issuer.id, run_period=period[0],
                               kind="invoice") is None:  # fmt: skip
            raise
        raise AlreadyInvoiced() from None
    invoice.account, invoice.issuer = account, issuer  # known: documents need not load them
    invoice.written_lines = rows
    return invoice


# -- the run ---------------------------------------------------------------------------------


def plan_query(scope: Account | None, *columns) -> pw.ModelSelect:
    """Planning a run: every account below the root (or below ``scope``) is visited.
    Subscriptions are one source of lines, plugins' ``charges_for_period`` another (billing
    units, reseller wholesale), so an account with no subscription may still have something
    to bill. A queued run (:mod:`core.billing.queue`) makes one item per account of this
    query (INSERT ... SELECT) and a task per item calls :func:`bill_account`."""
    query = Account.select(*columns).where(Account.parent.is_null(False))
    if scope is not None:
        query = query.where(rbac.in_subtree(scope, strict=True))
    return query.order_by(Account.id)


def plan_accounts(scope: Account | None) -> list[Account]:
    return list(plan_query(scope))


_accounts = plan_accounts


def new_summary(as_of: date, accounts: int, bill_run_id: int | None = None) -> dict:
    return {
        "as_of": as_of.isoformat(),
        "bill_run_id": bill_run_id,
        "accounts": accounts,
        "invoices_created": 0,
        "invoices": [],
        "invoices_skipped": [],
        "failures": [],
        "render_errors": [],
        "totals": {},
    }


def finish_summary(summary: dict) -> dict:
    """Totals per currency and the created count, once every account is billed."""
    totals: dict[str, int] = defaultdict(int)
    for inv in summary["invoices"]:
        totals[inv["currency"]] += inv["total_minor"]
    summary["totals"] = {
        code: {"minor": minor, "formatted": format_money(minor, code)}
        for code, minor in sorted(totals.items())
    }
    summary["invoices_created"] = len(summary["invoices"])
    return summary


def render_now(invoice: Invoice) -> list[str]:
    """In-process runs render every wanted format right after the commit, from what
    :func:`write_invoice` wrote (nothing is read back)."""
    return storage.render_all(invoice, lines=invoice.written_lines)


def _skip(summary, account, issuer, period, reason):
    summary["invoices_skipped"].append(
        {
            "account_id": account.id,
            "account": account.name,
            "issuer": issuer.name if issuer else None,
            "period": f"{period[0]}/{period[1]}",
            "reason": reason,
        }
    )


@dataclass
class RunCache:
    """What one bill run reads once, by id: issuing accounts and price plans (with their
    product). A plan edited while a run is under way is billed as the run first read it."""

    issuers: dict[int, Account] = field(default_factory=dict)
    plans: dict[int, PricePlan] = field(default_factory=dict)

    def issuer(self, issuer_id: int) -> Account:
        if issuer_id not in self.issuers:
            self.issuers[issuer_id] = Account.get_by_id(issuer_id)
        return self.issuers[issuer_id]

    def subscriptions(self, account: Account) -> list[Subscription]:
        """The account's subscriptions, each with its plan and product."""
        subs = list(Subscription.select().where(Subscription.account == account.id))
        missing = {s.plan_id for s in subs} - self.plans.keys()
        if missing:
            query = PricePlan.select(PricePlan, Product).join(Product)
            self.plans.update((p.id, p) for p in query.where(PricePlan.id.in_(missing)))
        for sub in subs:
            sub.plan = self.plans[sub.plan_id]
        return subs


def bill_account(account: Account, as_of: date, summary: dict, *, scope=None,
                 bill_run_id=None, actor=None, cache: RunCache | None = None,
                 render=render_now) -> None:  # fmt: skip
    """Bill every closed, not yet invoiced period of one account into ``summary``.

    ``cache`` holds what the accounts of one run share. ``render`` (invoice) -> error
    messages is called after each commit, before ``invoice_finalized``: in-process runs
    render the files at once, queued runs enqueue one render task per file.
    """
    if cache is None:
        cache = RunCache()
    subs = cache.subscriptions(account)
    # without subscriptions only plugins can add lines, from the account's creation on
    since = min([s.start for s in subs] + [account.created_at.date()])
    done = {
        (row.issuer_id, row.run_period)
        for row in Invoice.select(Invoice.issuer, Invoice.run_period).where(
            (Invoice.account == account.id) & Invoice.run_period.is_null(False)
        )
    }
    issuer_of = cache.issuer
    for period in closed_periods(since, as_of, account.bill_cycle_day):
        candidates = {s.plan.account_id for s in subs if _active(s, period)}
        if account.parent_id:
            candidates.add(account.parent_id)
        if candidates and all((i, period[0]) in done for i in candidates):
            for i in sorted(candidates):
                _skip(summary, account, issuer_of(i), period, "already invoiced")
            continue
        try:
            by_issuer = rate_subscriptions(account, period, subs, _usage_sums(account, period))
            extra = plugin_charges(account, period) if account.parent_id else []
        except Exception as exc:  # noqa: BLE001 - one account's failure does not stop the run
            log.exception("rating account %s for %s failed", account.id, period)
            summary["failures"].append(
                {"account_id": account.id, "account": account.name,
                 "period": f"{period[0]}/{period[1]}", "error": f"{type(exc).__name__}: {exc}"}
            )  # fmt: skip
            continue
        if extra:
            by_issuer.setdefault(account.parent_id, []).extend(extra)
        for issuer_id, lines in by_issuer.items():
            if not lines:
                continue
            issuer = issuer_of(issuer_id)
            if (issuer_id, period[0]) in done:
                _skip(summary, account, issuer, period, "already invoiced")
                continue
            if scope is not None and not issuer.is_within(scope):
                continue
            reason = issuer_refusal(issuer, account, period)
            options = None if reason else _options(issuer, account, period)
            if options is not None and not options.create:
                reason = options.skip_reason or f"issuer {issuer.name} does not invoice it"
            if reason:
                _skip(summary, account, issuer, period, reason)
                continue
            try:
                invoice = write_invoice(account, issuer, period, lines, bill_run_id, actor)
            except AlreadyInvoiced:
                _skip(summary, account, issuer, period, "already invoiced")
                continue
            except Exception as exc:  # noqa: BLE001
                log.exception("writing the invoice of account %s failed", account.id)
                summary["failures"].append(
                    {"account_id": account.id, "account": account.name,
                     "period": f"{period[0]}/{period[1]}",
                     "error": f"{type(exc).__name__}: {exc}"}
                )  # fmt: skip
                continue
            done.add((issuer_id, period[0]))
            invoice._formats = options.formats if options is not None else None
            for error in render(invoice) or ():
                summary["render_errors"].append(error)
            lifecycle.notify_finalized(invoice)  # a plugin's failure is logged, not fatal
            summary["invoices"].append(
                {
                    "id": invoice.id,
                    "number": invoice.number,
                    "account_id": account.id,
                    "account": account.name,
                    "issuer": issuer.name,
                    "period": f"{period[0]}/{period[1]}",
                    "currency": invoice.currency,
                    "total_minor": invoice.total,
                    "total": format_money(invoice.total, invoice.currency),
                }
            )


def run(as_of: date, *, actor=None, scope: Account | None = None, progress=None,
        bill_run: BillRun | None = None) -> dict:  # fmt: skip
    """Run a bill run for ``as_of``; returns the summary (see module doc).

    ``progress(done, total, account)`` is called after each account. ``scope`` restricts the
    run to the accounts below it, invoiced by issuers within it (a reseller's own run).
    ``bill_run`` is updated as accounts complete so the panel can show progress.
    """
    accounts = plan_accounts(scope)
    summary = new_summary(as_of, len(accounts), bill_run.id if bill_run else None)
    cache = RunCache()
    if bill_run is not None:
        BillRun.update(status="running", total=len(accounts), started_at=utcnow()).where(
            BillRun.id == bill_run.id
        ).execute()
    last_update = time.monotonic()
    try:
        for index, account in enumerate(accounts, start=1):
            bill_account(account, as_of, summary, scope=scope, cache=cache,
                         bill_run_id=bill_run.id if bill_run else None, actor=actor)  # fmt: skip
            if progress is not None:
                progress(index, len(accounts), account)
            now = time.monotonic()
            if bill_run is not None and (now - last_update > 0.3 or index == len(accounts)):
                last_update = now
                _update_run(bill_run, index, summary)
    except BaseException as exc:
        if bill_run is not None:
            summary["failures"].append({"error": f"{type(exc).__name__}: {exc}"})
            _update_run(bill_run, None, summary, status="failed")
        raise
    finish_summary(summary)
    if bill_run is not None:
        _update_run(bill_run, len(accounts), summary,
                    status="failed" if summary["failures"] else "done")  # fmt: skip
    return summary


def _update_run(bill_run: BillRun, done, summary, status=None) -> None:
    values = {
        BillRun.created: len(summary["invoices"]),
        BillRun.skipped: len(summary["invoices_skipped"]),
        BillRun.failures: summary["failures"],
    }
    if done is not None:
        values[BillRun.done] = done
    if status:
        values[BillRun.status] = status
        values[BillRun.finished_at] = utcnow()
        values[BillRun.summary] = {k: v for k, v in summary.items() if k != "invoices"} | {
            "invoices_created": len(summary["invoices"])
        }
    BillRun.update(values).where(BillRun.id == bill_run.id).execute()


def quantity_text(value: Decimal) -> str:
    return canonical_decimal_text(value)
