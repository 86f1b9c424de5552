"""The bill run: correct totals, exactly once, proration, tiers, currencies, plugins."""

from __future__ import annotations

from datetime import date

import pytest

from core.billing.models import Invoice, InvoiceFile, InvoiceLine
from core.billing.runs import engine
from core.models import Account
from tests.billing_support import set_tax, setup_catalog, subscribe, usage

app = pytest.fixture(
    lambda make_app: make_app(plugins=["invoice_pdf", "reseller_accounts"]), name="app"
)


def invoices_of(account):
    return list(Invoice.select().where(Invoice.account == account.id).order_by(Invoice.id))


def test_bill_run_creates_one_correctly_totalled_invoice(world):
    provider = set_tax(world.provider, "20")
    _, plan = setup_catalog(provider, tiers=[[100, "0.10"], [None, "0.08"]])
    sub = subscribe(world.customer_a, plan, start="2026-01-01", quantity="2")
    usage(sub, "100", "2026-01-05", "u1")
    usage(sub, "50", "2026-01-31", "u2")
    usage(sub, "999", "2026-02-01", "next-period")  # belongs to February

    summary = engine.run(date(2026, 2, 1))

    assert summary["invoices_created"] == 1 and not summary["failures"]
    (inv,) = invoices_of(world.customer_a)
    lines = list(inv.lines.order_by(InvoiceLine.position))
    # 2 seats x 30.00 = 60.00; 150 units fall in the second tier: 150 x 0.08 = 12.00
    assert [line.amount for line in lines] == [6000, 1200]
    assert (inv.subtotal, inv.tax, inv.total) == (7200, 1440, 8640)  # 20 % of 72.00 = 14.40
    assert inv.status == "issued" and inv.number == "INV-000001"
    assert inv.issuer_id == provider.id
    assert (inv.period_start, inv.period_end) == (date(2026, 1, 1), date(2026, 2, 1))
    assert summary["totals"] == {"EUR": {"minor": 8640, "formatted": "86.40 EUR"}}
    formats = {f.format for f in InvoiceFile.select().where(InvoiceFile.invoice == inv.id)}
    assert formats == {"RAW"}  # invoice_pdf is installed but not enabled here


def test_second_run_creates_nothing(world):
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan, start="2026-01-01")
    first = engine.run(date(2026, 3, 1))
    assert first["invoices_created"] == 2  # January and February
    second = engine.run(date(2026, 3, 1))
    assert second["invoices_created"] == 0
    assert [s["reason"] for s in second["invoices_skipped"]] == ["already invoiced"] * 2
    assert Invoice.select().count() == 2
    assert [i.number for i in invoices_of(world.customer_a)] == ["INV-000001", "INV-000002"]


def test_proration_of_a_partial_first_and_last_period(world):
    _, plan = setup_catalog(world.provider, price="31.00")
    # active 11 Jan .. 15 Feb (exclusive): 21 of 31 January days, 14 of 28 February days
    subscribe(world.customer_a, plan, start="2026-01-11", end="2026-02-15")
    engine.run(date(2026, 4, 1))
    jan, feb = invoices_of(world.customer_a)
    assert jan.total == 2100  # 31.00 x 21/31
    assert feb.total == 1550  # 31.00 x 14/28
    assert "(21 of 31 days)" in jan.lines.get().description
    assert len(invoices_of(world.customer_a)) == 2  # March: nothing active, no invoice


def test_proration_rounds_once_half_up(world):
    _, plan = setup_catalog(world.provider, price="10.00")
    subscribe(world.customer_a, plan, start="2026-01-02")  # 30 of 31 days: 9.677419.. -> 9.68
    engine.run(date(2026, 2, 1))
    assert invoices_of(world.customer_a)[0].total == 968


def test_volume_tiers_bounds(world):
    _, plan = setup_catalog(world.provider, price="0", tiers=[[100, "0.10"], [None, "0.08"]])
    sub = subscribe(world.customer_a, plan)
    usage(sub, "100", "2026-01-03", "a")  # exactly at the bound: first tier
    engine.run(date(2026, 2, 1))
    assert invoices_of(world.customer_a)[0].total == 1000


@pytest.mark.parametrize(
    "currency,price,expected", [("JPY", "1000.5", 1001), ("BHD", "1.2345", 1235)]
)
def test_zero_and_three_decimal_currencies(world, currency, price, expected):
    Account.update(currency=currency).where(Account.id == world.customer_a.id).execute()
    customer = Account.get_by_id(world.customer_a.id)
    _, plan = setup_catalog(world.provider, currency=currency, price=price)
    subscribe(customer, plan)
    summary = engine.run(date(2026, 2, 1))
    (inv,) = invoices_of(customer)
    assert inv.currency == currency and inv.total == expected
    assert summary["totals"][currency]["minor"] == expected


def test_periods_follow_the_cycle_day(world):
    Account.update(bill_cycle_day=15).where(Account.id == world.customer_a.id).execute()
    _, plan = setup_catalog(world.provider, price="30")
    subscribe(world.customer_a, plan, start="2026-01-20")
    assert engine.run(date(2026, 2, 14))["invoices_created"] == 0  # period ends 15 Feb
    engine.run(date(2026, 2, 15))
    (inv,) = invoices_of(world.customer_a)
    assert (inv.period_start, inv.period_end) == (date(2026, 1, 15), date(2026, 2, 15))
    assert inv.total == 2516  # 26 of 31 days of 30.00 = 25.1612.. -> 25.16


def test_one_off_products_are_charged_once_in_the_start_period(world):
    _, plan = setup_catalog(world.provider, price="99.50", kind="one_off", code="SETUP")
    subscribe(world.customer_a, plan, start="2026-01-20", quantity="2")
    engine.run(date(2026, 4, 1))
    (inv,) = invoices_of(world.customer_a)  # February and March have nothing to bill
    assert inv.total == 19900 and inv.period_start == date(2026, 1, 1)


def test_flat_usage_rate_with_more_decimals_than_the_currency(world):
    _, plan = setup_catalog(world.provider, price="0", rate="0.0123", kind="usage")
    sub = subscribe(world.customer_a, plan)
    usage(sub, "1000.5", "2026-01-10", "a")  # 12.30615 -> 12.31
    usage(sub, "0.5", "2026-01-11", "b")  # summed before rating: 1001 x 0.0123 = 12.3123
    engine.run(date(2026, 2, 1))
    (inv,) = invoices_of(world.customer_a)
    assert inv.total == 1231 and inv.lines.get().quantity == 1001
