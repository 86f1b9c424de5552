"""Cascading billing: the provider invoices a reseller wholesale, the reseller its customers.

One bill run does both:

* **Retail** — a customer subscribed to the reseller's own price plans is invoiced by the
  engine with the reseller as issuer (the account owning the plans), numbered from the
  reseller's own sequence and prefix. ``invoice_options`` answers for a reseller issuer from
  its Reseller Profile: Customer Invoice Creation off -> no invoice (reported skipped with the
  reason), Customer Invoice Type RAW / PDF / Both -> the formats rendered.
* **Wholesale** — a reseller retail plan is linked to a wholesale plan of the reseller's
  parent (:class:`~plugins.reseller_accounts.models.WholesaleLink`, :func:`link_wholesale`).
  ``charges_for_period(account=reseller, period)`` returns, per customer subscription on a
  linked plan, what the customer consumed in the reseller's own period (its bill cycle day)
  priced at the wholesale plan: recurring price x quantity x the active share of the period,
  and the usage in the period at the wholesale usage rate (or tier). The engine puts plugin
  charges on an invoice from the billed account's parent: the provider's wholesale invoice.
* **One level down** — with sub-resellers allowed, a sub-reseller's plan is linked to a plan
  of its reseller, which may itself be linked to the provider's. The reseller then invoices
  the sub-reseller wholesale (its own numbering, the formats of its profile's Customer Invoice
  Type, on the sub-reseller's bill cycle day; Customer Invoice Creation off skips it too, as
  for its other children), and the provider invoices the reseller for the
  same consumption at the plan its chain of links ends on (:func:`wholesale_prices`), the
  lines named "Sub-reseller / Customer".

The engine bills an account's periods from its creation or its own subscriptions' starts; a
reseller holds no subscription, and its customers may have consumed before it was created
(a back-dated start). ``charges_since`` answers the first day anything below the reseller
consumes a plan it pays wholesale for (:func:`first_consumption`), so the reseller is billed
from then on; nothing is written for it (the plugin writes no row into the core's tables).

Disabled plugin: neither hook runs; the engine reports the reseller's customer invoices as
skipped ("plugin 'reseller_accounts' ... disabled" / "needs licence feature FT-3001.007") and
no wholesale lines are produced; re-enabling resumes with the periods not yet invoiced.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from core.kit import (
    Account,
    Charge,
    InvoiceOptions,
    PricePlan,
    Subscription,
    UsageRecord,
    ValidationFailed,
    audit,
    coverage,
    lock_row,
    rating,
    rbac,
    require_licensed,
    write_transaction,
)
from plugins.reseller_accounts.service.profile import formats_for


def options_for(issuer: Account) -> InvoiceOptions | None:
    if issuer.type != "reseller":
        return None
    profile = issuer.profile or {}
    if not profile.get("customer_invoice_creation", False):
        return InvoiceOptions(
            create=False, skip_reason="reseller profile: customer invoice creation is off"
        )
    return InvoiceOptions(create=True, formats=formats_for(profile))


# -- wholesale links -------------------------------------------------------------------------


def link_wholesale(actor, retail_plan: PricePlan, wholesale_plan: PricePlan):
    """Sell ``retail_plan`` (a reseller's) on ``wholesale_plan`` (its parent's)."""
    from plugins.reseller_accounts.models import WholesaleLink

    reseller = retail_plan.account
    errors = {}
    if reseller.type != "reseller":
        errors["retail_plan_id"] = [f"plan '{retail_plan.name}' is not a reseller's plan"]
    elif wholesale_plan.account_id != reseller.parent_id:
        errors["wholesale_plan_id"] = [
            f"plan '{wholesale_plan.name}' does not belong to {reseller.parent.name}, "
            f"the account that sells to {reseller.name}"
        ]
    elif wholesale_plan.currency != reseller.currency:
        errors["wholesale_plan_id"] = [
            f"plan '{wholesale_plan.name}' is in {wholesale_plan.currency} but "
            f"{reseller.name} is billed in {reseller.currency}"
        ]
    if errors:
        field, msgs = next(iter(errors.items()))
        raise ValidationFailed(f"{field}: {msgs[0]}", errors)
    if actor is not None:
        rbac.require(actor, "catalog.manage", wholesale_plan.account)
        rbac.require(actor, "resellers.manage", reseller)
    require_licensed("reseller_accounts")
    with write_transaction():
        lock_row(PricePlan, retail_plan.id)  # concurrent links of one plan: one after the other
        link = WholesaleLink.get_or_none(WholesaleLink.retail_plan == retail_plan.id)
        if link is None:
            link = WholesaleLink.create(
                retail_plan=retail_plan, wholesale_plan=wholesale_plan, reseller=reseller
            )
        else:
            link.wholesale_plan = wholesale_plan
            link.save()
        audit.record(
            actor,
            "reseller.wholesale.link",
            object_type="reseller_wholesale_link",
            object_id=link.id,
            account=reseller,
            after={"retail_plan_id": retail_plan.id, "wholesale_plan_id": wholesale_plan.id},
        )
    return link


def link_by_ids(actor, reseller: Account, retail_plan_id, wholesale_plan_id):
    """:func:`link_wholesale` from submitted ids (the API and the panel form): a plan that is
    not the reseller's, or not one the actor can see, is a field error, never a 404."""

    def plan(value, *where):
        try:
            plan_id = int(value)
        except (TypeError, ValueError):
            return None
        if not 0 < plan_id < 2**63:
            return None
        return PricePlan.get_or_none(PricePlan.id == plan_id, *where)

    errors = {}
    retail = plan(retail_plan_id, PricePlan.account == reseller.id)
    if retail is None:
        errors["retail_plan_id"] = [f"{reseller.name} has no price plan {retail_plan_id!s}"]
    wholesale = plan(wholesale_plan_id)
    if wholesale is None or (actor is not None and not wholesale.account.is_within(actor.account)):
        errors["wholesale_plan_id"] = [f"price plan {wholesale_plan_id!s} not found"]
    if errors:
        field, msgs = next(iter(errors.items()))
        raise ValidationFailed(f"{field}: {msgs[0]}", errors)
    return link_wholesale(actor, retail, wholesale)


# -- wholesale charges -----------------------------------------------------------------------


def wholesale_prices(reseller: Account) -> dict[int, PricePlan]:
    """Plan id -> the parent's plan ``reseller`` pays for what is consumed on it: the
    reseller's own linked plans and, one level down and further, its sub-resellers' plans
    linked (through their chain of links) to one of them."""
    from plugins.reseller_accounts.models import WholesaleLink

    below = {
        link.retail_plan_id: link
        for link in WholesaleLink.select(WholesaleLink, Account)
        .join(Account, on=(WholesaleLink.reseller == Account.id))
        .where(rbac.in_subtree(reseller))
    }
    resolved: dict[int, int] = {}
    for plan_id in below:
        current, seen = plan_id, set()
        while current in below and current not in seen:
            seen.add(current)
            link = below[current]
            if link.reseller_id == reseller.id:
                resolved[plan_id] = link.wholesale_plan_id
                break
            current = link.wholesale_plan_id
    if not resolved:
        return {}
    plans = {p.id: p for p in PricePlan.select().where(PricePlan.id.in_(set(resolved.values())))}
    return {plan_id: plans[wholesale_id] for plan_id, wholesale_id in resolved.items()}


def billable_prices(reseller: Account) -> dict:
    """:func:`wholesale_prices` in the reseller's currency: a wholesale plan in another
    currency is never billed."""
    return {k: p for k, p in wholesale_prices(reseller).items() if p.currency == reseller.currency}


def first_consumption(reseller: Account) -> date | None:
    """The first day anything below ``reseller`` consumes a plan it pays its parent for
    (:func:`billable_prices`): its wholesale is billed from then on."""
    links = list(billable_prices(reseller))
    if not links:
        return None
    first = (
        Subscription.select(Subscription.start)
        .join(Account, on=(Subscription.account == Account.id))
        .where(Subscription.plan.in_(links) & rbac.in_subtree(reseller, strict=True))
        .order_by(Subscription.start)
        .first()
    )
    return first.start if first else None


def _wholesale_range(sub, plan, key, through, period):
    """The days of ``sub`` the reseller pays for in ``period``, or None: from what ``key`` is
    billed through (or the subscription's start), never before the period's start, to the
    period's end or the subscription's."""
    start, end = period
    if plan.product.kind == "one_off":
        return None if key in through else rating.one_off_days(sub.start, sub.end, period)
    until = end if sub.end is None else min(end, sub.end)
    begin = max(start, through.get(key) or sub.start)
    return (begin, until) if begin < until else None


def wholesale_charges(reseller: Account, period) -> list[Charge]:
    """What ``reseller`` pays its parent for ``period``: per customer subscription on a linked
    plan, the days not billed yet (coverage key ``wholesale:<reseller>:<subscription>``) at the
    wholesale plan's prices, and the usage of those days. A wholesale plan in another currency
    than the reseller's is never billed."""
    links = billable_prices(reseller)
    if not links:
        return []
    subs = list(
        Subscription.select(Subscription, Account)
        .join(Account, on=(Subscription.account == Account.id))
        .where(
            Subscription.plan.in_(list(links))
            & rbac.in_subtree(reseller, strict=True)
            & (Subscription.start < period[1])
            & (Subscription.end.is_null() | (Subscription.end > period[0]))
        )
        .order_by(Account.path, Subscription.id)
    )
    through = coverage.billed_through(coverage.wholesale_key(reseller.id, s.id) for s in subs)
    ranges = {}
    for sub in subs:
        key = coverage.wholesale_key(reseller.id, sub.id)
        service = _wholesale_range(sub, links[sub.plan_id], key, through, period)
        if service is not None:
            ranges[sub.id] = service
    subs = [s for s in subs if s.id in ranges]
    # a sub-reseller's customer is named with its reseller: "Sub / Customer"
    between = {s.account.parent_id for s in subs} - {reseller.id}
    names = {
        a.id: a.name
        for a in Account.select(Account.id, Account.name).where(Account.id.in_(list(between)))
    } if between else {}  # fmt: skip
    usage: dict[int, Decimal] = defaultdict(Decimal)
    if subs:
        for rec in UsageRecord.select(
            UsageRecord.subscription, UsageRecord.occurred_at, UsageRecord.quantity
        ).where(
            UsageRecord.subscription.in_([s.id for s in subs])
            & (UsageRecord.occurred_at >= min(r[0] for r in ranges.values()))
            & (UsageRecord.occurred_at < period[1])
        ):
            first, until = ranges[rec.subscription_id]
            if first <= rec.occurred_at < until:
                usage[rec.subscription_id] += rec.quantity
    charges = []
    for sub in subs:
        who = sub.account.name
        if sub.account.parent_id in names:
            who = f"{names[sub.account.parent_id]} / {who}"
        plan = links[sub.plan_id]
        charges += wholesale_lines(
            reseller, sub, plan, who, ranges[sub.id], period, usage.get(sub.id)
        )
    return charges


def wholesale_lines(reseller: Account, sub: Subscription, plan: PricePlan, who: str,
                    service, period, used: Decimal | None) -> list[Charge]:  # fmt: skip
    """The charges of ``sub``'s ``service`` days of ``period`` at the wholesale ``plan``,
    rated as its retail lines are (:func:`core.billing.rating.plan_lines`) and named after
    ``who`` consumed them; the usage (``used``) only when something was used at a price.
    "(16 of 31 days)" on every partial period, as on retail lines: a late start, an end, a
    cycle-day change (quantity x unit price x days / period days = amount)."""
    product = plan.product
    rated = rating.plan_lines(rating.Prices.of(plan), sub.quantity, reseller.currency, service,
                              period, label=f"{who}: {product.name} — {plan.name}",
                              usage_label=f"{who}: {product.name} usage", used=used or None,
                              source=f"wholesale:{sub.id}",
                              usage_source=f"wholesale-usage:{sub.id}")  # fmt: skip
    return [
        Charge(r.description, r.quantity, r.unit_price, unit=product.unit,
               product_code=product.code, group=who, fraction=r.fraction, source=r.source,
               coverage=coverage.wholesale_key(reseller.id, sub.id), service_start=service[0],
               service_end=service[1])
        for r in rated
        if r.charge != "usage" or r.unit_price  # usage at no price is not billed
    ]  # fmt: skip
