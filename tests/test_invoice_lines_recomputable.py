"""Every line can be recomputed by its reader (issue 19 item 4): a prorated line says which
share of the period it bills, "(16 of 31 days)", and quantity x unit price x days / period
days, rounded half up to the cent, is its amount. Retail lines always did; the provider's
wholesale lines to a reseller now do too, whatever the start, end, month length or cycle day,
from year 1 to year 9999 (the property checks the wholesale line and the reseller's retail
line for the same days)."""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.billing.models import Invoice, InvoiceLine
from core.billing.money import line_amount
from core.billing.periods import period_containing
from tests.billing_support import setup_catalog, subscribe

FEATURE = "FT-3001.007"
NOTE = re.compile(r" \((\d+) of (\d+) days\)$")
_names = itertools.count()


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts"])


@pytest.fixture
def enabled(ctx, install_license):
    install_license([FEATURE])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    return ctx


def as_read(description: str, quantity, unit_price, total_days: int) -> int:
    """The amount a reader computes from what the line says, in cents."""
    note = NOTE.search(description)
    days, of = (int(note[1]), int(note[2])) if note else (total_days, total_days)
    exact = Fraction(Decimal(str(quantity))) * Fraction(Decimal(str(unit_price))) * days / of
    return int((Decimal(exact.numerator) / Decimal(exact.denominator) * 100).quantize(
        Decimal(1), rounding=ROUND_HALF_UP))  # fmt: skip


def reseller_selling(world, price: str, cycle_day: int = 1):
    """A reseller (cycle day ``cycle_day``) with one customer on a retail plan sold on the
    provider's wholesale plan at ``price``."""
    from plugins.reseller_accounts.service.billing import link_wholesale

    n = next(_names)
    reseller = world.add_account(
        world.provider, f"Reseller {n}", "reseller", bill_cycle_day=cycle_day,
        profile={"customer_invoice_creation": True, "customer_invoice_type": "RAW",
                 "customer_billing_cycle_day": cycle_day},
    )  # fmt: skip
    _, wholesale = setup_catalog(world.provider, price=price, rate="0", code=f"W{n}")
    _, retail = setup_catalog(reseller, price="99.00", rate="0", code=f"R{n}")
    customer = world.add_account(reseller, f"Customer {n}")
    return reseller, customer, retail, wholesale, link_wholesale


def test_the_providers_invoice_to_a_reseller_says_16_of_31_days(enabled, world):
    from core.billing.runs import engine

    reseller, customer, retail, wholesale, link = reseller_selling(world, "4.00")
    subscribe(customer, retail, start="2026-01-16", quantity="2")  # 16 of January's 31 days
    link(None, retail, wholesale)
    summary = engine.run(date(2026, 3, 1))
    assert not summary["failures"], summary
    jan, feb = Invoice.select().where(Invoice.account == reseller.id).order_by(Invoice.id)
    (line,) = jan.lines
    assert line.description == f"{customer.name}: Hosting — Standard (16 of 31 days)"
    assert (line.quantity, line.unit_price, line.amount) == (Decimal(2), Decimal(4), 413)
    assert as_read(line.description, line.quantity, line.unit_price, 31) == 413
    (whole,) = feb.lines  # the whole of February: no note, 2 x 4.00
    assert whole.description == f"{customer.name}: Hosting — Standard" and whole.amount == 800
    # and every line of every invoice of the run (retail ones too) reads back to its amount
    for inv in Invoice.select():
        for ln in inv.lines.order_by(InvoiceLine.position):
            days = (inv.period_end - inv.period_start).days
            assert as_read(ln.description, ln.quantity, ln.unit_price, days) == ln.amount, ln


quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100_000), places=3)
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(99_999), places=4)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    day=st.dates(min_value=date(1, 2, 1), max_value=date(9999, 11, 30)),
    cycle_day=st.integers(1, 28),
    start_shift=st.integers(-40, 40),
    length=st.one_of(st.none(), st.integers(1, 70)),
    quantity=quantities,
    price=prices,
)
@example(
    day=date(1, 2, 1),
    cycle_day=1,
    start_shift=15,
    length=None,
    quantity=Decimal(2),
    price=Decimal(4),
)  # the oldest month: 16 of 28 days
@example(
    day=date(9999, 11, 30),
    cycle_day=28,
    start_shift=5,
    length=None,
    quantity=Decimal(100_000),
    price=Decimal(99_999),
)  # the newest period, largest line
@example(
    day=date(2024, 2, 10),
    cycle_day=1,
    start_shift=-9,
    length=20,
    quantity=Decimal(1),
    price=Decimal("0.0001"),
)  # leap February, ends mid-period
def test_every_prorated_wholesale_line_reads_back_to_its_amount(
    enabled, world, day, cycle_day, start_shift, length, quantity, price
):
    from plugins.reseller_accounts.service.billing import wholesale_charges

    period = period_containing(day, cycle_day)
    start = period[0] + timedelta(days=start_shift)
    end = None if length is None else start + timedelta(days=length)
    reseller, customer, retail, wholesale, link = reseller_selling(world, str(price), cycle_day)
    sub = subscribe(customer, retail, start=start.isoformat(), quantity=str(quantity),
                    end=end.isoformat() if end else None)  # fmt: skip
    link(None, retail, wholesale)

    charges = [c for c in wholesale_charges(reseller, period) if c.source == f"wholesale:{sub.id}"]
    first, until = max(period[0], start), min(period[1], end or period[1])
    if first >= until:
        assert charges == []  # not active in this period
        return
    (charge,) = charges
    days, total = (until - first).days, (period[1] - period[0]).days
    assert total in (28, 29, 30, 31)
    note = NOTE.search(charge.description)
    if days == total:
        assert note is None, charge.description
    else:
        assert note and (int(note[1]), int(note[2])) == (days, total), charge.description
    assert (charge.service_start, charge.service_end) == (first, until)
    amount = line_amount(charge.quantity, charge.unit_price, "EUR", charge.fraction)
    assert as_read(charge.description, charge.quantity, charge.unit_price, total) == amount

    # the reseller's retail line to its customer for the same days reads back the same way
    # (its earlier periods taken as billed, as a bill run would have done first)
    from core.billing.runs import engine

    sub.billed_through = max(start, period[0])
    (retail_lines,) = engine.rate_subscriptions(customer, period, [sub], {}).values()
    (line,) = retail_lines
    assert (line["service_start"], line["service_end"]) == (first, until)
    assert (
        as_read(line["description"], line["quantity"], line["unit_price"], total) == line["amount"]
    )
    assert (NOTE.search(line["description"]) is None) == (days == total)
