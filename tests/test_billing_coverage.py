"""Every service day billed exactly once (issue 15): coverage instead of period keys.

Reproductions: a cycle-day change (account edit, reseller profile) re-billed history; a bill
run for a future date issued invoices for periods that had not ended. Also: the database
refuses overlapping coverage, a stale writer is refused by the compare-and-set, a plan in
another currency is never billed, an existing database is migrated.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import peewee as pw
import pytest

from core import clock
from core.billing.models import BillRun, Coverage, Invoice, InvoiceLine, Subscription
from core.billing.periods import PeriodError
from core.billing.runs import engine
from core.models import Account
from tests.billing_support import setup_catalog, subscribe, usage

FEATURE = "FT-3001.007"


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"])


@pytest.fixture
def today(monkeypatch):
    """``today(date)`` freezes the instance's clock (core.clock.today) on that day."""

    def freeze(day: date) -> date:
        monkeypatch.setattr(clock, "today", lambda: day)
        return day

    return freeze


def lines_of(account) -> list[InvoiceLine]:
    return list(
        InvoiceLine.select(InvoiceLine, Invoice)
        .join(Invoice)
        .where(Invoice.account == account.id)
        .order_by(InvoiceLine.service_start, InvoiceLine.id)
    )


def assert_no_overlap(lines):
    """Per subscription (its source), the lines' service ranges follow each other."""
    by_source: dict[str, list] = {}
    for line in lines:
        if line.source.startswith("subscription:"):
            by_source.setdefault(line.source, []).append((line.service_start, line.service_end))
    for ranges in by_source.values():
        ranges.sort()
        for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False):
            assert end <= start, ranges


def billed_sep_oct_nov(world, today, account):
    """A customer on 30.00/month from 2026-09-01, billed for September, October, November."""
    _, plan = setup_catalog(world.provider, price="30.00")
    sub = subscribe(account, plan, start="2026-09-01")
    engine.run(today(date(2026, 12, 1)))
    assert [(i.period_start, i.total) for i in Invoice.select().order_by(Invoice.id)] == [
        (date(2026, 9, 1), 3000),
        (date(2026, 10, 1), 3000),
        (date(2026, 11, 1), 3000),
    ]
    return sub


# -- reproduction 1: a cycle-day change re-billed history ---------------------------------------


def test_cycle_day_change_bills_one_short_period_and_no_history_again(world, api, today):
    customer = world.customer_a
    sub = billed_sep_oct_nov(world, today, customer)
    client = api(world.operator)
    assert client.get(f"/api/v1/subscriptions/{sub.id}").get_json()["billed_through"] == (
        "2026-12-01"
    )

    resp = client.patch(f"/api/v1/accounts/{customer.id}", json={"bill_cycle_day": 15})
    assert resp.status_code == 200, resp.get_json()

    # the same day: nothing has ended on the new cycle yet, nothing is billed again
    summary = engine.run(date(2026, 12, 1))
    assert summary["invoices_created"] == 0 and not summary["failures"]
    assert Invoice.select().count() == 3

    # the new anchor: one short prorated period, 1..15 December, 14 of 30 days
    summary = engine.run(today(date(2026, 12, 15)))
    assert summary["invoices_created"] == 1, summary
    new = Invoice.get(Invoice.id == summary["invoices"][0]["id"])
    (line,) = new.lines
    assert line.description == "Hosting — Standard (14 of 30 days)"
    assert (line.service_start, line.service_end) == (date(2026, 12, 1), date(2026, 12, 15))
    assert new.total == 1400
    assert client.get(f"/api/v1/subscriptions/{sub.id}").get_json()["billed_through"] == (
        "2026-12-15"
    )
    # then whole periods on the new anchor
    summary = engine.run(today(date(2027, 1, 15)))
    assert [i["total_minor"] for i in summary["invoices"]] == [3000]
    lines = lines_of(customer)
    assert_no_overlap(lines)
    assert (lines[0].service_start, lines[-1].service_end) == (date(2026, 9, 1), date(2027, 1, 15))
    assert (
        sum((x.service_end - x.service_start).days for x in lines)
        == (date(2027, 1, 15) - date(2026, 9, 1)).days
    )
    # re-runs at any date bill nothing more
    for day in (date(2026, 12, 15), date(2027, 1, 15)):
        assert engine.run(day)["invoices_created"] == 0
    assert Invoice.select().count() == 5


@pytest.fixture
def reseller_enabled(ctx, install_license):
    host = ctx.extensions["billhive"].host
    install_license([FEATURE])
    host.set_enabled("reseller_accounts", True)
    return ctx


def test_cycle_day_change_through_the_reseller_profile(world, api, today, reseller_enabled):
    from plugins.reseller_accounts.service.billing import link_wholesale

    reseller = world.add_account(
        world.provider,
        "Reseller",
        "reseller",
        bill_cycle_day=1,
        profile={
            "customer_invoice_creation": True,
            "customer_invoice_type": "RAW",
            "customer_billing_cycle_day": 1,
        },
    )
    _, wholesale = setup_catalog(world.provider, price="18.00", code="WS")
    _, retail = setup_catalog(reseller, price="30.00", code="RT")
    customer = world.add_account(reseller, "Retail customer", bill_cycle_day=1)
    subscribe(customer, retail, start="2026-09-01")
    link_wholesale(None, retail, wholesale)
    engine.run(today(date(2026, 12, 1)))
    assert Invoice.select().where(Invoice.account == customer.id).count() == 3
    assert Invoice.select().where(Invoice.account == reseller.id).count() == 3

    resp = api(world.operator).patch(
        f"/api/v1/resellers/{reseller.id}/profile", json={"customer_billing_cycle_day": 10}
    )
    assert resp.status_code == 200, resp.get_json()
    assert Account.get_by_id(customer.id).bill_cycle_day == 10

    summary = engine.run(today(date(2026, 12, 10)))
    assert not summary["failures"], summary
    retail_invoices = list(Invoice.select().where(Invoice.account == customer.id))
    assert len(retail_invoices) == 4  # was 6: Aug 10 - Nov 10 billed again
    (line,) = retail_invoices[-1].lines
    assert line.description == "Hosting — Standard (9 of 30 days)"
    assert (line.service_start, line.service_end) == (date(2026, 12, 1), date(2026, 12, 10))
    assert_no_overlap(lines_of(customer))
    # the reseller's own cycle did not move: nothing more for it until 1 January
    assert Invoice.select().where(Invoice.account == reseller.id).count() == 3

    # the reseller's own cycle day moves too: its wholesale invoice bills 1..5 January once
    engine.run(today(date(2027, 1, 1)))
    Account.update(bill_cycle_day=5).where(Account.id == reseller.id).execute()
    summary = engine.run(today(date(2027, 1, 5)))
    (short,) = [i for i in summary["invoices"] if i["account_id"] == reseller.id]
    (line,) = Invoice.get_by_id(short["id"]).lines
    assert (line.service_start, line.service_end) == (date(2027, 1, 1), date(2027, 1, 5))
    assert line.description.endswith("(4 of 31 days)")
    keys = [c.key for c in Coverage.select().order_by(Coverage.start)]
    assert len(keys) == len(set((c.key, c.start) for c in Coverage.select()))


# -- reproduction 3: bill runs for the future -----------------------------------------------------


def test_a_future_bill_run_is_refused_everywhere(world, api, panel, today, ctx, monkeypatch):
    from click.testing import CliRunner

    import hostapp.cli

    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan, start="2026-01-01")
    now = today(date(2026, 12, 2))
    tomorrow = (now + timedelta(days=1)).isoformat()

    resp = api(world.operator).post("/api/v1/bill-runs", json={"date": tomorrow})
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert list(body["errors"]) == ["date"] and "after today" in body["errors"]["date"][0]

    page = panel(world.operator).post("/billing/runs", data={"date": "2028-01-01"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "date 2028-01-01 is after today (2026-12-02" in html
    assert 'max="2026-12-02"' in html and 'aria-invalid="true"' in html

    monkeypatch.setattr(hostapp.cli, "_app", ctx)
    result = CliRunner().invoke(hostapp.cli.main, ["bill-run", "--date", tomorrow, "--json"])
    assert result.exit_code != 0
    assert "--date" in result.output and "is after today" in result.output

    with pytest.raises(PeriodError) as refused:
        engine.run(date(2028, 1, 1))
    assert refused.value.field == "date"

    assert Invoice.select().count() == 0 and BillRun.select().count() == 0
    # today itself is fine
    client = api(world.operator)
    resp = client.post("/api/v1/bill-runs", json={"date": now.isoformat()})
    assert resp.status_code == 202, resp.get_json()
    run_id = resp.get_json()["id"]
    for _ in range(200):  # the run bills in a thread of this process
        status = client.get(f"/api/v1/bill-runs/{run_id}").get_json()["status"]
        if status not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert status == "done"


def test_today_follows_the_configured_time_zone(make_app):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):  # UTC+14 and UTC-12: never the same day
        app = make_app(plugins=[], TIMEZONE=zone)
        with app.app_context():
            assert clock.timezone_name() == zone
            assert clock.today() == datetime.now(ZoneInfo(zone)).date()


# -- the database's guard -------------------------------------------------------------------------


def test_the_database_refuses_overlapping_coverage(world, today):
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan, start="2026-01-01")
    engine.run(today(date(2026, 2, 1)))
    invoice = Invoice.get()
    (row,) = Coverage.select()
    assert (row.start, row.end) == (date(2026, 1, 1), date(2026, 2, 1))
    for start, end in [("2026-01-31", "2026-02-02"), ("2025-12-01", "2026-01-02")]:
        with pytest.raises(pw.IntegrityError), Coverage._meta.database.atomic():
            Coverage.create(key=row.key, start=start, end=end, invoice=invoice)
    # next to it, or another key: accepted
    with Coverage._meta.database.atomic() as tx:
        Coverage.create(key=row.key, start="2026-02-01", end="2026-03-01", invoice=invoice)
        Coverage.create(key="other", start="2026-01-01", end="2026-02-01", invoice=invoice)
        tx.rollback()


def test_a_stale_writer_is_refused_and_nothing_is_left(world, today):
    """Two runs rated the same days; the second to write loses the compare-and-set."""
    _, plan = setup_catalog(world.provider)
    sub = subscribe(world.customer_a, plan, start="2026-01-01")
    today(date(2026, 2, 1))
    account = Account.get_by_id(world.customer_a.id)
    cache = engine.RunCache()
    period = (date(2026, 1, 1), date(2026, 2, 1))
    stale = engine.rate_subscriptions(account, period, cache.subscriptions(account), [])
    first = engine.rate_subscriptions(account, period, cache.subscriptions(account), [])
    provider = Account.get_by_id(world.provider.id)
    engine.write_invoice(account, provider, period, first[provider.id])
    with pytest.raises(engine.AlreadyInvoiced):
        engine.write_invoice(account, provider, period, stale[provider.id])
    assert Invoice.select().count() == 1 and Coverage.select().count() == 1
    assert Subscription.get_by_id(sub.id).billed_through == date(2026, 2, 1)
    # a writer that read billed_through right but whose days are covered: the database says no
    Subscription.update(billed_through=None).where(Subscription.id == sub.id).execute()
    with pytest.raises(engine.AlreadyInvoiced):
        engine.write_invoice(account, provider, period, stale[provider.id])
    assert Invoice.select().count() == 1
    assert Subscription.get_by_id(sub.id).billed_through is None  # rolled back with it


def test_usage_is_billed_for_the_days_covered(world, today):
    _, plan = setup_catalog(world.provider, price="30.00", rate="1.00")
    sub = subscribe(world.customer_a, plan, start="2026-09-01")
    usage(sub, "5", "2026-09-10", "sep")
    engine.run(today(date(2026, 10, 1)))
    usage(sub, "7", "2026-10-03", "oct-early")
    usage(sub, "11", "2026-10-20", "oct-late")
    Account.update(bill_cycle_day=15).where(Account.id == world.customer_a.id).execute()
    engine.run(today(date(2026, 10, 15)))
    last = Invoice.select().order_by(Invoice.id.desc()).get()
    amounts = {x.source.split(":")[0]: x for x in last.lines}
    assert amounts["usage"].quantity == 7  # 1..15 October; the 20th is the next period's
    assert amounts["usage"].service_start == date(2026, 10, 1)
    engine.run(today(date(2026, 11, 15)))
    last = Invoice.select().order_by(Invoice.id.desc()).get()
    assert [x.quantity for x in last.lines if x.source.startswith("usage:")] == [11]


# -- item 3 at bill time: a plan is billed only in its own currency ------------------------------


def test_a_plan_in_another_currency_is_never_billed(world, today):
    _, eur = setup_catalog(world.provider, price="25.00")
    _, usd = setup_catalog(world.provider, currency="USD", price="40.00", code="USD")
    subscribe(world.customer_a, eur, start="2026-01-01")
    subscribe(world.customer_b, eur, start="2026-01-01")
    # data from before the currency rule: customer B's currency changed after it subscribed
    Account.update(currency="USD").where(Account.id == world.customer_b.id).execute()
    # and a subscription to a USD plan made before the catalog checked currencies
    Subscription.create(
        account=world.customer_a.id, plan=usd.id, quantity="1", start=date(2026, 1, 1)
    )
    summary = engine.run(today(date(2026, 2, 1)))
    assert not summary["failures"]
    (inv,) = Invoice.select()
    assert (inv.account_id, inv.currency, inv.total) == (world.customer_a.id, "EUR", 2500)
    reasons = {(s["account_id"], s["reason"]) for s in summary["invoices_skipped"]}
    assert (
        world.customer_a.id,
        "plan 'Standard' is priced in USD but Customer A is billed in EUR: the subscription "
        "is not billed",
    ) in reasons
    assert any(a == world.customer_b.id and "priced in EUR" in r for a, r in reasons)
    assert Invoice.select().where(Invoice.account == world.customer_b.id).count() == 0


# -- existing data is migrated ---------------------------------------------------------------------


def test_an_existing_database_is_migrated(make_app, world, today, backend):
    """Tables from before coverage (no billed_through, no service dates, no coverage table, the
    old unique period index): the next start adds them and fills them from the invoices."""
    from core.db import database

    _, plan = setup_catalog(world.provider, price="30.00")
    sub = subscribe(world.customer_a, plan, start="2026-09-15")
    ended = subscribe(world.customer_b, plan, start="2026-09-01", end="2026-10-11")
    engine.run(today(date(2026, 12, 1)))
    before = [(i.id, i.total) for i in Invoice.select().order_by(Invoice.id)]
    # back to the old schema
    database.execute_sql('DROP TABLE "billing_coverage"')
    database.execute_sql('ALTER TABLE "subscription" DROP COLUMN "billed_through"')
    database.execute_sql('ALTER TABLE "invoice_line" DROP COLUMN "service_start"')
    database.execute_sql('ALTER TABLE "invoice_line" DROP COLUMN "service_end"')
    database.execute_sql('DROP INDEX "invoice_account_id_issuer_id_run_period"')
    database.execute_sql(
        'CREATE UNIQUE INDEX "invoice_account_id_issuer_id_run_period_kind" '
        'ON "invoice" ("account_id", "issuer_id", "run_period", "kind")'
    )
    database.execute_sql("DELETE FROM schema_migrations WHERE plugin = 'core'")

    app = make_app(plugins=["invoice_pdf", "reseller_accounts"])
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        assert Subscription.get_by_id(sub.id).billed_through == date(2026, 12, 1)
        assert Subscription.get_by_id(ended.id).billed_through == date(2026, 10, 11)
        assert {(c.key, c.start, c.end) for c in Coverage.select()} == {
            (f"subscription:{sub.id}", date(2026, 9, 15), date(2026, 10, 1)),
            (f"subscription:{sub.id}", date(2026, 10, 1), date(2026, 11, 1)),
            (f"subscription:{sub.id}", date(2026, 11, 1), date(2026, 12, 1)),
            (f"subscription:{ended.id}", date(2026, 9, 1), date(2026, 10, 1)),
            (f"subscription:{ended.id}", date(2026, 10, 1), date(2026, 10, 11)),
        }
        assert [(i.id, i.total) for i in Invoice.select().order_by(Invoice.id)] == before
        # the guard is in place and billing goes on from there
        with pytest.raises(pw.IntegrityError), Coverage._meta.database.atomic():
            Coverage.create(key=f"subscription:{sub.id}", start="2026-11-30", end="2026-12-02",
                            invoice=before[0][0])  # fmt: skip
        Account.update(bill_cycle_day=15).where(Account.id == world.customer_a.id).execute()
        summary = engine.run(today(date(2026, 12, 15)))
        assert [i["total_minor"] for i in summary["invoices"]] == [1400]
