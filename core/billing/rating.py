"""Rating: the only place proration, volume tiers and one-off charges are computed.

Public. The bill-run engine (:mod:`core.billing.runs.engine`) rates its subscriptions and plugin
charges here, and the reseller_accounts plugin its wholesale lines, so a retail line and the
wholesale line for the same days at the same prices come out the same. Rating reads plain
values (quantities, prices, dates) and returns :class:`RatedLine` values: no database, no
app. Which days are still to be billed (coverage, ``billed_through``) is the caller's
question; rating answers what those days cost.

The rules (DESIGN.md "Money and billing"):

* **recurring**: quantity x price x the days billed / the period's days, as an exact ratio
  (:class:`~core.billing.money.ExactRatio`); a line billing less than the whole period says
  so in its text, "(14 of 30 days)" (:func:`~core.billing.periods.prorated_label`), so its
  reader can recompute it;
* **usage**: the summed quantity x the plan's usage rate, or, with volume tiers, the unit
  price of the tier the whole quantity falls in (:func:`~core.billing.money.tiered_unit_price`);
* **one-off**: quantity x price, never prorated, billed once: in the period containing the
  subscription's start (:func:`one_off_days`).

Every amount is rounded once, ROUND_HALF_UP to the currency's minor unit, by
:func:`~core.billing.money.line_amount`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from core.billing.money import ExactRatio, line_amount, tiered_unit_price
from core.billing.periods import PeriodError, prorated_label

__all__ = [
    "Prices",
    "RatedLine",
    "line",
    "one_off",
    "one_off_days",
    "plan_lines",
    "recurring",
    "usage",
    "usage_price",
]

Days = tuple[date, date]  # [start, end): the end is the first day not included


@dataclass(frozen=True)
class RatedLine:
    """One rated line: what it bills (``charge``: ``"recurring"``, ``"usage"``,
    ``"one_off"`` or ``"charge"`` for a plugin's charge) for which ``service`` days of which
    ``source``, and its ``amount`` in integer minor units, rounded once from quantity x
    ``unit_price`` x ``fraction`` (the share of the period billed)."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    fraction: Decimal
    amount: int
    service: Days | None
    source: str
    charge: str


@dataclass(frozen=True)
class Prices:
    """What rating reads of a price plan: its product's kind (``"one_off"`` bills once; the
    other kinds bill the recurring price per period and the usage) and its prices."""

    kind: str
    recurring_price: Decimal = Decimal(0)
    usage_rate: Decimal = Decimal(0)
    tiers: list | None = None

    @classmethod
    def of(cls, plan) -> Prices:
        """The prices of a :class:`~core.billing.models.PricePlan` (with its product)."""
        return cls(plan.product.kind, plan.recurring_price, plan.usage_rate, plan.tiers)


def _days(span: Days, field: str) -> int:
    start, end = span
    if end <= start:
        raise PeriodError(f"{field} {start}..{end} holds no day", field=field)
    return (end - start).days


def line(description: str, quantity: Decimal, unit_price: Decimal, currency: str, *,
         fraction: Decimal = Decimal(1), service: Days | None = None, source: str = "",
         charge: str = "charge") -> RatedLine:  # fmt: skip
    """A line as given, its amount rounded once (quantity x unit price x fraction)."""
    amount = line_amount(quantity, unit_price, currency, fraction)
    return RatedLine(description, quantity, unit_price, fraction, amount, service, source, charge)


def recurring(description: str, quantity: Decimal, unit_price: Decimal, currency: str,
              service: Days, period: Days, *, fraction: Decimal = Decimal(1), source: str = "",
              charge: str = "recurring") -> RatedLine:  # fmt: skip
    """A price per period for the ``service`` days of ``period``: prorated by their share of
    the period's days (times ``fraction``, the share of a period a plugin's charge already
    stands for), "(d of n days)" in the text when not the whole period."""
    days, total = _days(service, "service"), _days(period, "period")
    if fraction == 1:  # a subscription's price: no Fraction arithmetic on the hot path
        ratio = ExactRatio(days, total)
    else:
        exact = Fraction(fraction) * Fraction(days, total)
        ratio = ExactRatio(exact.numerator, exact.denominator)
    text = prorated_label(description, days, total)
    return line(text, quantity, unit_price, currency, fraction=ratio, service=service,
                source=source, charge=charge)  # fmt: skip


def usage_price(quantity: Decimal, rate: Decimal, tiers: list | None) -> Decimal:
    """The unit price of ``quantity`` used: the tier it falls in when the plan has volume
    tiers (the whole quantity at that price), else ``rate``."""
    return tiered_unit_price(quantity, tiers) if tiers else rate


def usage(description: str, quantity: Decimal, currency: str, *, rate: Decimal,
          tiers: list | None = None, service: Days | None = None,
          source: str = "") -> RatedLine:  # fmt: skip
    """The usage of the ``service`` days (``quantity``, summed) at :func:`usage_price`."""
    price = usage_price(quantity, rate, tiers)
    return line(description, quantity, price, currency, service=service, source=source,
                charge="usage")  # fmt: skip


def one_off(description: str, quantity: Decimal, price: Decimal, currency: str, *,
            service: Days | None = None, source: str = "") -> RatedLine:  # fmt: skip
    """A one-off charge: quantity x price, whatever the days (never prorated)."""
    return line(description, quantity, price, currency, service=service, source=source,
                charge="one_off")  # fmt: skip


def one_off_days(start: date, end: date | None, period: Days) -> Days | None:
    """The days a one-off subscription from ``start`` (to ``end``, exclusive, or open) is
    billed in ``period``: only the period containing its start, from the start to the
    period's end or its own; None in any other period or when it holds no day. Whether it
    was billed already is the caller's to know."""
    if not period[0] <= start < period[1]:
        return None
    until = period[1] if end is None else min(period[1], end)
    return (start, until) if start < until else None


def plan_lines(prices: Prices, quantity: Decimal, currency: str, service: Days, period: Days,
               *, label: str, usage_label: str, used: Decimal | None = None,
               source: str = "", usage_source: str = "") -> list[RatedLine]:  # fmt: skip
    """The lines of ``quantity`` of one plan for its ``service`` days of ``period``: a
    one-off plan its price once (the caller bills it only in :func:`one_off_days`); another
    its recurring price prorated (none when the price is zero) and, when ``used`` is not
    None, the usage of those days. ``label`` names the priced lines, ``usage_label`` the
    usage line."""
    lines = []
    if prices.kind == "one_off":
        if prices.recurring_price:
            lines.append(one_off(label, quantity, prices.recurring_price, currency,
                                 service=service, source=source))  # fmt: skip
        return lines
    if prices.recurring_price:
        lines.append(recurring(label, quantity, prices.recurring_price, currency, service,
                               period, source=source))  # fmt: skip
    if used is not None:
        lines.append(usage(usage_label, used, currency, rate=prices.usage_rate,
                           tiers=prices.tiers, service=service, source=usage_source))  # fmt: skip
    return lines
