"""Bill runs: which days of what each account is billed, and writing their invoices.

What those days cost is :mod:`core.billing.rating`'s to say (the only place proration,
tiers and one-off charges are computed). Every day of a subscription's service is billed
exactly once (DESIGN.md "Coverage invariant"). A bill run for ``as_of`` (never after today, :func:`core.clock.today`) takes every
account below the root and, for each billing period of that account (its ``bill_cycle_day``
as it is now) that ended on or before ``as_of``, rates what is not billed yet:

* one **recurring** line per subscription for the days from its ``billed_through`` (or its
  start) to the period's end (or its own end): quantity x the plan's recurring price x those
  days / the period's days (exact, rounded once); "(14 of 30 days)" when not the whole period.
  After a cycle-day change the first period bills one short stretch up to the new anchor;
* one **usage** line per subscription with usage on those same days: the summed quantity x the
  plan's usage rate, or the volume-tier price the total falls in;
* **one-off** products: quantity x price once, in the period containing the start;
* the :class:`~core.registry.Charge` lines plugins return from ``charges_for_period``, each
  billing the days of its coverage key (see :func:`plugin_charges`).

A subscription on a plan priced in another currency than the account's is never billed: it
is reported in ``invoices_skipped`` with the reason.

Lines are grouped per **issuer**: the account owning the price plan (the seller) — the
provider for its customers, a reseller for the customers it sells its own plans to. Plugin
charges go to the billed account's parent (the account that sells to it).

Tax: once per invoice, on the subtotal, at the rate :func:`core.billing.invoicing.tax.decide` gives
(reverse charge, else the buyer's rate where set, else the issuer's). The due date is the issue
date plus the payment terms (:func:`core.billing.invoicing.lifecycle.due_date_for`); the parties as they
are at issue are kept with the invoice (:func:`core.billing.invoicing.parties.record_issue`).

Each (account, issuer, period) invoice is written, numbered and issued in ONE transaction
that also records its coverage (:mod:`core.billing.coverage`: the database refuses
overlapping days of one key) and moves each billed subscription's ``billed_through`` with a
compare-and-set. A concurrent or repeated writer changes no row or is refused by the
database: its transaction is rolled back and reported as skipped "already invoiced".
Formats are rendered after the commit (:mod:`core.billing.invoicing.storage`), then
``invoice_finalized`` is called.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import peewee as pw

from core import audit, rbac
from core import lifecycle as account_status
from core._fastpath import Prepared, insert_row, insert_rows
from core.billing import coverage, rating
from core.billing.invoicing import lifecycle, numbering, parties, status, storage
from core.billing.invoicing import tax as tax_rule
from core.billing.ledger import entries as ledger
from core.billing.models import (
    BillRun,
    Coverage,
    Invoice,
    InvoiceLine,
    PricePlan,
    Product,
    Subscription,
    UsageRecord,
)
from core.billing.money import (
    canonical_decimal_text,
    invoice_totals,
)
from core.billing.periods import check_run_date, closed_periods
from core.billing.runs.summary import RunSummary
from core.current import host
from core.db import database, utcnow, write_transaction
from core.models import Account

log = logging.getLogger("billhive.billing")


# -- rating ----------------------------------------------------------------------------------


def _line(rated: rating.RatedLine, *, unit="", product_code="", group=None, coverage=None,
          advance=None) -> dict:  # fmt: skip
    service = rated.service
    return {
        "description": rated.description,
        "quantity": rated.quantity,
        "unit": unit,
        "unit_price": rated.unit_price,
        "fraction": rated.fraction,
        "amount": rated.amount,
        "product_code": product_code,
        "group": group,
        "source": rated.source,
        "service_start": service[0] if service else None,
        "service_end": service[1] if service else None,
        "coverage": coverage,  # the coverage key whose days the line bills, or None
        "advance": advance,  # (subscription id, its billed_through as read) or None
    }


def _active(sub: Subscription, period: tuple[date, date]) -> bool:
    return sub.start < period[1] and (sub.end is None or sub.end > period[0])


def currency_refusal(account: Account, plan: PricePlan) -> str | None:
    """Why ``plan`` is never billed to ``account`` (a plan is billed only in its currency)."""
    if plan.currency != account.currency:
        return (
            f"plan '{plan.name}' is priced in {plan.currency} but {account.name} is billed in "
            f"{account.currency}: the subscription is not billed"
        )
    return None


def service_range(sub: Subscription, period) -> tuple[date, date] | None:
    """The days of ``sub`` to bill in ``period``: from its coverage's end (``billed_through``,
    or its start when never billed) to the period's end or its own end; None when there is
    nothing to bill in this period. Coverage is contiguous: a subscription whose unbilled
    days begin before this period (an earlier period's invoice was refused or failed) waits
    for that period to be billed first, except a usage-only plan, which catches up (it bills
    no day of its own, only the usage in the range)."""
    start, end = period
    begin = sub.billed_through or sub.start
    if sub.plan.product.kind == "one_off":
        if sub.billed_through is not None:
            return None
        return rating.one_off_days(sub.start, sub.end, period)
    if begin >= end:
        return None
    if begin < start and sub.plan.recurring_price:
        return None
    until = end if sub.end is None else min(end, sub.end)
    return (begin, until) if begin < until else None


def rate_subscriptions(account: Account, period, subs: list, usage) -> dict[int, list]:
    """Plan lines of ``account`` for ``period``: ``{issuer_id: [line, ...]}``.

    Each subscription is billed for :func:`service_range` only (the days not covered yet), its
    usage summed over the same days, priced by :func:`core.billing.rating.plan_lines`.
    ``usage`` is a list of ``(subscription id, day, quantity)`` (or a mapping subscription id
    -> quantity, taken as the usage of the whole range). Subscriptions on a plan in another
    currency than the account's are left out (:func:`currency_refusal`).
    """
    currency = account.currency
    per_day = isinstance(usage, list)
    out: dict[int, list] = defaultdict(list)
    for sub in subs:
        plan, product = sub.plan, sub.plan.product
        if currency_refusal(account, plan):
            continue
        service = service_range(sub, period)
        if service is None:
            continue
        used = None  # no usage line unless the days have usage records
        if per_day:
            for sub_id, day, amount in usage:
                if sub_id == sub.id and service[0] <= day < service[1]:
                    used = (Decimal(0) if used is None else used) + amount
        elif sub.id in usage:
            used = usage[sub.id]
        rated = rating.plan_lines(rating.Prices.of(plan), sub.quantity, currency, service,
                                  period, label=f"{product.name} — {plan.name}",
                                  usage_label=f"{product.name} usage", used=used,
                                  source=f"subscription:{sub.id}",
                                  usage_source=f"usage:{sub.id}")  # fmt: skip
        key = coverage.subscription_key(sub.id)
        out[plan.account_id].extend(
            _line(r, unit=product.unit, product_code=product.code, coverage=key,
                  advance=(sub.id, sub.billed_through)) for r in rated
        )  # fmt: skip
    return out


class ChargeError(ValueError):
    """A plugin's charge the engine cannot bill (its days are billed already, or it bills days
    outside the period)."""


def plugin_charges(account: Account, period, problems: list | None = None) -> list[dict]:
    """The lines plugins add to ``account``'s invoice for ``period`` (``charges_for_period``).

    A charge with a ``coverage`` key bills its ``service_start``..``service_end`` (default:
    the period), which must lie in the period and after what the key is billed through. A
    charge without a key is taken as a charge for the whole period under the key
    ``charges:<account>:<source>``: only its share of days not covered yet is billed. A
    charge that breaks these rules is left out and described in ``problems``.
    """
    start, end = period
    charges = [c for result in host().call("charges_for_period", account=account, period=period)
               for c in result or ()]  # fmt: skip
    if not charges:
        return []
    keys = {c.coverage or coverage.charges_key(account.id, c.source) for c in charges}
    through = coverage.billed_through(keys)
    lines = []
    for c in charges:
        key = c.coverage or coverage.charges_key(account.id, c.source)
        source = c.source or "plugin"
        if c.coverage:
            service = (c.service_start or start, c.service_end or end)
            problem = None
            if not start <= service[0] < service[1] <= end:
                problem = f"bills {service[0]}..{service[1]}, outside the period"
            elif key in through and service[0] < through[key]:
                problem = f"bills {service[0]}.., but {key} is billed through {through[key]}"
            if problem:
                if problems is not None:
                    problems.append(f"charge '{c.description}' ({key}) {problem}")
                continue
            rated = rating.line(c.description, c.quantity, c.unit_price, account.currency,
                                fraction=c.fraction, service=service, source=source)  # fmt: skip
        else:
            begin = max(start, through.get(key, start))
            if begin >= end:
                continue  # billed already
            service = (begin, end)
            if begin > start:  # its share of the days not billed yet
                rated = rating.recurring(c.description, c.quantity, c.unit_price,
                                         account.currency, service, period,
                                         fraction=c.fraction, source=source,
                                         charge="charge")  # fmt: skip
            else:
                rated = rating.line(c.description, c.quantity, c.unit_price, account.currency,
                                    fraction=c.fraction, service=service,
                                    source=source)  # fmt: skip
        lines.append(_line(rated, unit=c.unit, product_code=c.product_code, group=c.group,
                           coverage=key))  # fmt: skip
    return lines


def charges_since(account: Account, problems: list) -> list[date]:
    """The first days plugins have charges for ``account`` from (``charges_since``); an
    answer that is not a date, or a plugin that raises, is left out and described in
    ``problems`` (one plugin's failure does not stop the run)."""
    days = []
    try:
        answers = host().call("charges_since", account=account)
    except Exception as exc:  # noqa: BLE001 - reported on the run like a bad answer
        log.exception("charges_since of account %s failed", account.id)
        problems.append(f"charges_since failed: {type(exc).__name__}: {exc}")
        return days
    for answer in answers:
        if isinstance(answer, date) and not isinstance(answer, datetime):
            days.append(answer)
        else:
            problems.append(f"charges_since answered {answer!r}, not a date")
    return days


def _usage_records(account: Account, since: date, until: date) -> list:
    """``(subscription id, day, quantity)`` of the account's usage in [since, until)."""
    query = UsageRecord.select(
        UsageRecord.subscription, UsageRecord.occurred_at, UsageRecord.quantity
    ).where(
        (UsageRecord.account == account.id)
        & (UsageRecord.occurred_at >= since)
        & (UsageRecord.occurred_at < until)
    )
    return [(rec.subscription_id, rec.occurred_at, rec.quantity) for rec in query]


def _usage_sums(account: Account, period) -> dict[int, Decimal]:
    sums: dict[int, Decimal] = defaultdict(Decimal)
    for sub_id, _day, quantity in _usage_records(account, period[0], period[1]):
        sums[sub_id] += quantity
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


class NotBillable(Exception):
    """The account was suspended (or is below a suspended account) when its invoice was
    about to be written (:func:`core.lifecycle.guard_billable`): nothing was written."""


class AlreadyInvoiced(Exception):
    pass


def line_rows(lines: list[dict]) -> list[dict]:
    """The rows of ``lines`` for the ``invoiceline`` table (without the invoice id), in
    position order; also what :func:`core.billing.invoicing.documents.build` reads lines from."""
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
            "service_start": line.get("service_start"),
            "service_end": line.get("service_end"),
        }
        for position, line in enumerate(lines, start=1)
    ]


def coverage_of(lines: list[dict]) -> tuple[dict[str, tuple], dict[int, tuple]]:
    """What an invoice of ``lines`` covers: ``{key: (start, end)}`` (one range per key: the
    lines of one key bill the same days) and ``{subscription id: (billed_through read, new
    billed_through)}``."""
    ranges: dict[str, tuple] = {}
    advances: dict[int, tuple] = {}
    for line in lines:
        key = line.get("coverage")
        if key is None:
            continue
        start, end = line["service_start"], line["service_end"]
        if key in ranges:
            start, end = min(start, ranges[key][0]), max(end, ranges[key][1])
        ranges[key] = (start, end)
        if line.get("advance") is not None:
            sub_id, read = line["advance"]
            advances[sub_id] = (read, max(end, advances.get(sub_id, (None, end))[1]))
    return ranges, advances


def _is_coverage_conflict(exc: Exception) -> bool:
    # PostgreSQL: 'conflicting key value violates exclusion constraint
    # "billing_coverage_no_overlap"'; SQLite: the trigger's RAISE(ABORT, 'billing_coverage: ...')
    return coverage.TABLE in str(exc)


_set_number = Prepared(
    lambda number, invoice: Invoice.update(number=number).where(Invoice.id == invoice)
)
_SEQUENCED: set[tuple] = set()  # (database, issuer id) known to have an invoice sequence


_advance_from_null = Prepared(
    lambda new, sub: Subscription.update(billed_through=new).where(
        (Subscription.id == sub) & Subscription.billed_through.is_null()
    )
)
_advance_from = Prepared(
    lambda new, sub, read: Subscription.update(billed_through=new).where(
        (Subscription.id == sub) & (Subscription.billed_through == read)
    )
)


def _advance(sub_id: int, read, new) -> int:
    """Compare-and-set of one subscription's ``billed_through``: rows changed (0 or 1)."""
    if read is None:
        return _advance_from_null.rowcount(new.isoformat(), sub_id)
    return _advance_from.rowcount(new.isoformat(), sub_id, read.isoformat())


def _advance_all(advances: dict[int, tuple]) -> int:
    """Compare-and-set of every billed subscription's ``billed_through``: one UPDATE per
    (read, new) pair (an invoice's subscriptions mostly share one), rows changed in all."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for sub_id, pair in advances.items():
        groups[pair].append(sub_id)
    changed = 0
    for (read, new), ids in sorted(groups.items(), key=lambda g: min(g[1])):
        if len(ids) == 1:
            changed += _advance(ids[0], read, new)
            continue
        was = Subscription.billed_through.is_null() if read is None else (
            Subscription.billed_through == read)  # fmt: skip
        query = Subscription.update(billed_through=new).where(
            Subscription.id.in_(sorted(ids)) & was
        )
        changed += query.execute()
    return changed


@dataclass
class WrittenInvoice:
    """A bill-run invoice as :func:`write_invoice` committed it, for the steps after the
    commit (render, notify): nothing is read back."""

    invoice: Invoice  # issued and numbered, its account and issuer attached
    lines: list[dict]  # its line rows as written (what the document is built from)
    covered: dict[int, tuple[date, date]]  # subscription id -> the days billed [start, end)
    formats: list[str] | None = None  # the issuer's choice (invoice_options); None = every format


def write_invoice(account: Account, issuer: Account, period, lines: list[dict],
                  bill_run_id: int | None = None, actor=None,
                  formats: list[str] | None = None) -> WrittenInvoice:  # fmt: skip
    """Write, number and issue one bill-run invoice in one transaction.

    The same transaction records the coverage of its lines and moves each billed
    subscription's ``billed_through`` with a compare-and-set. Raises :class:`AlreadyInvoiced`
    when another writer (another run, another process) billed any of these days first: a
    ``billed_through`` that is no longer what rating read, or coverage the database refuses
    as overlapping; nothing is left behind. ``formats``: what the issuer's
    ``invoice_options`` chose, carried to the render step.
    """
    currency = account.currency
    known = parties.read(issuer, account)  # both parties' details, once
    decision = tax_rule.decide(issuer, account, known)
    subtotal, tax, total = invoice_totals(
        [line["amount"] for line in lines], Decimal(decision["rate"]), currency
    )
    ranges, advances = coverage_of(lines)
    for key, (start, end) in ranges.items():
        if not (period[0] <= start < end <= period[1] or key.startswith("subscription:")):
            raise ChargeError(f"{key}: {start}..{end} is not within the period {period}")
        if end > period[1]:
            raise ChargeError(f"{key}: {start}..{end} bills days after the period's end")
    now = utcnow()
    key = (id(database.obj), issuer.id)
    if key not in _SEQUENCED:
        # the issuer's number sequence exists before the issuing transaction, so two workers
        # issuing its first invoices at once do not both create it
        numbering.ensure_sequence(issuer.id, "invoice")
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
        "tax_rate": decision["rate"],
        "issued_at": now,
        "due_date": lifecycle.due_date_for(issuer, account, now.date(), known),
        "bill_run": bill_run_id,
        "created_at": now,
    }
    rows = line_rows(lines)
    try:
        with write_transaction():
            # first the account's status, under its row lock (a suspension is serialised
            # with this invoice: committed before it, or seen here)
            refusal = account_status.guard_billable(account.id)
            if refusal:
                raise NotBillable(refusal)
            # then each subscription's billed_through, compare-and-set (in id order, so two
            # writers lock the rows in one order); a writer that lost waits for the winner's
            # commit and then changes fewer rows than it billed
            if _advance_all(advances) != len(advances):
                raise AlreadyInvoiced()
            # the hot path's statements have their SQL built once (core._fastpath.insert_rows)
            invoice = insert_row(Invoice, values)
            insert_rows(InvoiceLine, [{"invoice": invoice.id, **row} for row in rows])
            insert_rows(Coverage, [{"key": k, "start": s, "end": e, "invoice": invoice.id}
                                   for k, (s, e) in sorted(ranges.items())])  # fmt: skip
            # numbered last: the issuer's number sequence stays locked (until the commit)
            # for as short a time as possible; a rollback gives the number back
            invoice.number = numbering.next_number(issuer, "invoice")
            _set_number.execute(invoice.number, invoice.id)
            parties.record_issue(invoice, issuer, account, decision, known)
            audit.record(
                actor,
                "invoice.issue",
                invoice,
                account=account.id,
                after={**status.snapshot(invoice), "bill_run": bill_run_id},
            )
            ledger.post_issued(invoice, actor)  # its ledger entry; draws prepaid credit
    except pw.IntegrityError as exc:
        if not _is_coverage_conflict(exc):
            raise
        raise AlreadyInvoiced() from None
    invoice.account, invoice.issuer = account, issuer  # known: documents need not load them
    return WrittenInvoice(invoice, rows, advances, formats)


# -- the run ---------------------------------------------------------------------------------


def plan_query(scope: Account | None, *columns) -> pw.ModelSelect:
    """Planning a run: every account below the root (or below ``scope``) is visited.
    Subscriptions are one source of lines, plugins' ``charges_for_period`` another (billing
    units, reseller wholesale), so an account with no subscription may still have something
    to bill. A queued run (:mod:`core.billing.runs.queue`) makes one item per account of this
    query (INSERT ... SELECT) and a task per item calls :func:`bill_account`."""
    query = Account.select(*columns).where(Account.parent.is_null(False))
    if scope is not None:
        query = query.where(rbac.in_subtree(scope, strict=True))
    # suspended accounts and everything below them are not billed (core.lifecycle)
    query = query.where(Account.status != account_status.SUSPENDED)
    for held in account_status.suspended_subtrees():
        query = query.where(~rbac.in_subtree(held))
    return query.order_by(Account.id)


def plan_accounts(scope: Account | None) -> list[Account]:
    return list(plan_query(scope))


def render_now(written: WrittenInvoice) -> list[str]:
    """In-process runs render every wanted format right after the commit, from what
    :func:`write_invoice` wrote (nothing is read back)."""
    return storage.render_all(written.invoice, lines=written.lines, chosen=written.formats)


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


def bill_account(account: Account, as_of: date, summary: RunSummary, *, scope=None,
                 bill_run_id=None, actor=None, cache: RunCache | None = None,
                 render=render_now) -> None:  # fmt: skip
    """Bill the days not billed yet of one account, every closed period, into ``summary``.

    Periods follow the account's bill cycle day as it is now; in each, a subscription bills
    from its ``billed_through`` (or start), so after a cycle-day change the first period bills
    one short prorated stretch up to the new anchor and no ended period is billed again.
    ``cache`` holds what the accounts of one run share. ``render`` (a
    :class:`WrittenInvoice`) -> error messages is called after each commit, before ``invoice_finalized``: in-process runs
    render the files at once, queued runs enqueue one render task per file.
    """
    check_run_date(as_of)  # never an invoice for days that have not ended
    blocker = account_status.blocking_account(account)
    if blocker is not None and blocker.status == account_status.SUSPENDED:
        # suspended after the run was planned: checked again under a lock when writing
        summary.skipped(account, None, None, _suspended(account, blocker))
        return
    if cache is None:
        cache = RunCache()
    subs = cache.subscriptions(account)
    for sub in subs:  # a plan is billed only in its own currency: said once per run
        reason = currency_refusal(account, sub.plan)
        if reason and service_range_from(sub) is not None:
            summary.skipped(account, cache.issuer(sub.plan.account_id), None, reason)
    # without subscriptions only plugins can add lines: from the account's creation on, or
    # from the first day a plugin has something to bill it for (a reseller's customers)
    problems: list[str] = []
    since = min([s.start for s in subs] + [account.created_at.date()]
                + charges_since(account, problems))  # fmt: skip
    for problem in problems:
        summary.failed(f"ChargeError: {problem}", account)
    done: set[tuple] = set()
    floor = None  # the end of the latest period a bill run invoiced for this account
    for row in Invoice.select(Invoice.issuer, Invoice.run_period, Invoice.period_end).where(
        (Invoice.account == account.id) & Invoice.run_period.is_null(False)
    ):
        done.add((row.issuer_id, row.run_period))
        if row.period_end and (floor is None or row.period_end > floor):
            floor = row.period_end
    issuer_of = cache.issuer
    periods = closed_periods(since, as_of, account.bill_cycle_day)
    closed = account_status.closed_on(account)
    if closed is not None:  # a closed account's final invoice: nothing after its closing day
        periods = [p for p in periods if p[0] < closed]
    first_open = min((d for d in map(service_range_from, subs) if d is not None), default=None)
    records = None
    for period in periods:
        ask_plugins = bool(account.parent_id) and (floor is None or period[1] > floor)
        billable = [s for s in subs if not currency_refusal(account, s.plan)
                    and service_range(s, period) is not None]  # fmt: skip
        if not billable and not ask_plugins:
            covered = {s.plan.account_id for s in subs if _active(s, period)}
            covered |= {i for (i, p) in done if p == period[0]}
            for i in sorted(covered):
                summary.skipped(account, issuer_of(i), period, "already invoiced")
            continue
        problems: list[str] = []
        try:
            if records is None and billable:
                # the usage of every unbilled day up to the last period, read once
                records = _usage_records(account, first_open, periods[-1][1])
            by_issuer = rate_subscriptions(account, period, billable, records or [])
            extra = plugin_charges(account, period, problems) if ask_plugins else []
        except Exception as exc:  # noqa: BLE001 - one account's failure does not stop the run
            log.exception("rating account %s for %s failed", account.id, period)
            summary.failed(f"{type(exc).__name__}: {exc}", account, period)
            continue
        for problem in problems:
            summary.failed(f"ChargeError: {problem}", account, period)
        if extra:
            by_issuer.setdefault(account.parent_id, []).extend(extra)
        for issuer_id, lines in by_issuer.items():
            if not lines:
                continue
            issuer = issuer_of(issuer_id)
            if scope is not None and not issuer.is_within(scope):
                continue
            reason = issuer_refusal(issuer, account, period)
            options = None if reason else _options(issuer, account, period)
            if options is not None and not options.create:
                reason = options.skip_reason or f"issuer {issuer.name} does not invoice it"
            if reason:
                summary.skipped(account, issuer, period, reason)
                continue
            formats = options.formats if options is not None else None
            try:
                written = write_invoice(account, issuer, period, lines, bill_run_id, actor,
                                        formats)  # fmt: skip
            except AlreadyInvoiced:
                summary.skipped(account, issuer, period, "already invoiced")
                continue
            except NotBillable as exc:
                summary.skipped(account, issuer, period, str(exc))
                return
            except Exception as exc:  # noqa: BLE001
                log.exception("writing the invoice of account %s failed", account.id)
                summary.failed(f"{type(exc).__name__}: {exc}", account, period)
                continue
            done.add((issuer_id, period[0]))
            invoice = written.invoice
            for sub in billable:  # what the next periods bill starts where this one ended
                if sub.id in written.covered:
                    sub.billed_through = written.covered[sub.id][1]
            for error in render(written) or ():
                summary.render_errors.append(error)
            lifecycle.notify_finalized(invoice)  # a plugin's failure is logged, not fatal
            summary.invoiced(invoice, account, issuer)


def _suspended(account: Account, blocker: Account) -> str:
    if blocker.id == account.id:
        return "account suspended"
    return f"account suspended: '{blocker.name}', above it, is suspended"


def service_range_from(sub: Subscription) -> date | None:
    """The first unbilled day of ``sub``, or None when nothing of it is left to bill."""
    if sub.plan.product.kind == "one_off":
        return sub.start if sub.billed_through is None and sub.start != sub.end else None
    begin = sub.billed_through or sub.start
    return begin if sub.end is None or begin < sub.end else None


def run(as_of: date, *, actor=None, scope: Account | None = None, progress=None,
        bill_run: BillRun | None = None) -> dict:  # fmt: skip
    """Run a bill run for ``as_of``; returns the summary (see module doc).

    ``progress(done, total, account)`` is called after each account. ``scope`` restricts the
    run to the accounts below it, invoiced by issuers within it (a reseller's own run).
    ``bill_run`` is updated as accounts complete so the panel can show progress.
    A date after today raises :class:`~core.billing.periods.PeriodError` (field ``date``)
    before anything is written.
    """
    check_run_date(as_of)
    accounts = plan_accounts(scope)
    summary = RunSummary(as_of, len(accounts), bill_run.id if bill_run else None)
    cache = RunCache()
    if bill_run is not None:
        now = (
            utcnow()
        )  # heartbeat_at: see core.billing.runs.records (callers also beat from a thread)
        BillRun.update(status="running", total=len(accounts), started_at=now,
                       heartbeat_at=now).where(BillRun.id == bill_run.id).execute()  # fmt: skip
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
            summary.failed(f"{type(exc).__name__}: {exc}")
            _update_run(bill_run, None, summary, status="failed")
        raise
    summary.finish()
    if bill_run is not None:
        _update_run(bill_run, len(accounts), summary,
                    status="failed" if summary.failures else "done")  # fmt: skip
    return summary.as_dict()


def _update_run(bill_run: BillRun, done, summary: RunSummary, status=None) -> None:
    values = {
        BillRun.created: len(summary.invoices),
        BillRun.skipped: len(summary.invoices_skipped),
        BillRun.failures: summary.failures,
        BillRun.heartbeat_at: utcnow(),
    }
    if done is not None:
        values[BillRun.done] = done
    if status:
        values[BillRun.status] = status
        values[BillRun.finished_at] = utcnow()
        values[BillRun.summary] = summary.as_dict(invoices=False)
    BillRun.update(values).where(BillRun.id == bill_run.id).execute()


def quantity_text(value: Decimal) -> str:
    return canonical_decimal_text(value)
