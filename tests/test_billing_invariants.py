"""The coverage invariant as a state machine (issue 15, item 10), on SQLite and PostgreSQL.

Random sequences of: subscribe, change quantity, change plan (end + new subscription),
cancel, cycle-day changes (the account's, and the reseller profile's moving its customers),
usage, currency-change attempts, bill runs at past and present dates, bill runs for the
future (refused), runs killed midway (a process death inside an invoice's transaction), and
the clock moving on. After every step:

* every day of every subscription from its start up to its ``billed_through`` is billed by
  exactly one recurring line, and the prorated fractions of each day sum to 1; no day after
  ``billed_through`` or after its end is billed; coverage rows say the same;
* no invoice covers a day that had not ended when it was issued;
* every invoice is in its account's currency and in the currency of every plan it bills;
* invoice numbers are gap-free per issuer;
* each account's ledger balance equals the sum of its entries and of its invoices.

Each example starts on an empty database (tables emptied, plugin and licence state kept).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from core import clock
from core.billing import catalog
from core.billing.ledger import entries as ledger
from core.billing.models import Coverage, Invoice, InvoiceLine, LedgerEntry, Subscription
from core.billing.periods import PeriodError
from core.billing.runs import engine
from core.db import database, is_postgres
from core.errors import BillhiveError
from core.models import Account
from tests.billing_support import setup_catalog

FEATURE = "FT-3001.007"
KEEP = {"plugin_state", "state_version", "license_record", "schema_migrations"}
START = date(2026, 4, 1)  # the clock's first day; the world's subscriptions start in January


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts"])


class Killed(BaseException):
    """A process dying in the middle of an invoice's transaction (not an Exception: nothing
    in the engine catches it)."""


def empty_database() -> None:
    tables = [t for t in database.get_tables() if t not in KEEP]
    if is_postgres():
        database.execute_sql(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
        )
    else:
        database.pragma("foreign_keys", 0)
        try:
            with database.atomic():
                for table in tables:
                    database.execute_sql(f'DELETE FROM "{table}"')
        finally:
            database.pragma("foreign_keys", 1)
    engine._SEQUENCED.clear()  # the issuers' number sequences went with the tables


def make_world():
    """Provider (EUR) with two customers and a reseller (profile cycle day 1) with one
    customer; provider plans in EUR (recurring + usage) and USD, a reseller plan sold on the
    provider's wholesale plan."""
    from flask import g

    from core import accounts
    from core.bootstrap import initialise
    from plugins.reseller_accounts.service.billing import link_wholesale

    for key in list(g):
        g.pop(key)
    provider, operator, _ = initialise("Provider", "op@example.com", "pw-123456789")

    def account(parent, name, type_code="customer", **extra):
        return accounts.create_account(
            None, {"name": name, "type": type_code, "parent_id": parent.id, **extra}
        )

    reseller = account(
        provider,
        "Reseller",
        "reseller",
        profile={
            "customer_invoice_creation": True,
            "customer_invoice_type": "RAW",
            "customer_billing_cycle_day": 1,
        },
    )
    customers = [account(provider, "Alpha"), account(provider, "Beta", bill_cycle_day=10)]
    customers.append(account(reseller, "Gamma"))
    _, eur = setup_catalog(provider, price="30.00", rate="0.50", code="EUR")
    _, eur_small = setup_catalog(provider, price="7.00", rate="0", code="SMALL")
    _, usd = setup_catalog(provider, currency="USD", price="40.00", code="USD")
    _, wholesale = setup_catalog(provider, price="12.00", rate="0.20", code="WS")
    _, retail = setup_catalog(reseller, price="20.00", rate="0.40", code="RT")
    link_wholesale(None, retail, wholesale)
    for customer, plan, start in zip(
        customers, (eur, eur_small, retail), ("2026-01-01", "2026-01-20", "2026-02-03"), strict=True
    ):
        catalog.create_subscription(None, {"account_id": customer.id, "plan_id": plan.id,
                                           "quantity": "2", "start": start})  # fmt: skip
    return {
        "operator": operator,
        "provider": provider,
        "reseller": reseller,
        "customers": customers,
        "plans": {"provider": [eur, eur_small, usd], "reseller": [retail]},
        "wholesale": {retail.id: wholesale},
    }


def fraction_of(text) -> Fraction:
    return Fraction(str(text)).limit_denominator(1000)


def check_invariants(world, issued_by: dict):
    subs = {s.id: s for s in Subscription.select()}
    accounts = {a.id: a for a in Account.select()}
    invoices = {i.id: i for i in Invoice.select()}
    lines = list(InvoiceLine.select())
    # every day from start to billed_through: one recurring line, fractions per day sum to 1
    weight: dict[tuple[int, date], Fraction] = defaultdict(Fraction)
    for line in lines:
        kind, _, ident = line.source.partition(":")
        if kind not in ("subscription", "usage"):
            continue
        sub = subs[int(ident)]
        inv = invoices[line.invoice_id]
        assert line.service_start is not None and line.service_end is not None, line.source
        assert line.service_start < line.service_end <= inv.period_end
        assert sub.billed_through is not None and line.service_end <= sub.billed_through
        assert line.service_start >= sub.start
        assert sub.end is None or line.service_end <= sub.end
        if kind == "usage" or not sub.plan.recurring_price:
            continue
        days = (line.service_end - line.service_start).days
        period_days = (inv.period_end - inv.period_start).days
        for n in range(days):
            day = line.service_start + timedelta(days=n)
            weight[sub.id, day] += fraction_of(line.fraction) * period_days / days
    for sub in subs.values():
        rows = list(
            Coverage.select()
            .where(Coverage.key == f"subscription:{sub.id}")
            .order_by(Coverage.start)
        )
        if sub.billed_through is None:
            assert not rows, (sub.id, rows)
            continue
        # coverage: contiguous from the start to billed_through
        assert rows[0].start == sub.start and rows[-1].end == sub.billed_through
        for before, after in zip(rows, rows[1:], strict=False):
            assert before.end == after.start, (sub.id, before.end, after.start)
        if sub.plan.recurring_price:
            end = sub.billed_through if sub.end is None else min(sub.end, sub.billed_through)
            for n in range((end - sub.start).days):
                day = sub.start + timedelta(days=n)
                assert weight.pop((sub.id, day), None) == 1, (sub.id, day)
    assert not weight, sorted(weight)[:5]  # no day billed outside start..billed_through
    # no invoice for a day that had not ended when it was issued
    for inv_id, as_of in issued_by.items():
        assert invoices[inv_id].period_end <= as_of
    # currencies: the invoice's, its account's at issue, its plans'
    for line in lines:
        kind, _, ident = line.source.partition(":")
        inv = invoices[line.invoice_id]
        if kind in ("subscription", "usage"):
            assert subs[int(ident)].plan.currency == inv.currency
        elif kind in ("wholesale", "wholesale-usage"):
            plan = world["wholesale"][subs[int(ident)].plan_id]
            assert plan.currency == inv.currency
    for inv in invoices.values():
        assert inv.currency == accounts[inv.account_id].currency
        assert inv.total == sum(x.amount for x in lines if x.invoice_id == inv.id) + inv.tax
    # numbers: gap-free per issuer
    numbers = defaultdict(list)
    for inv in invoices.values():
        numbers[inv.issuer_id].append(int(inv.number.rsplit("-", 1)[1]))
    for issued in numbers.values():
        assert sorted(issued) == list(range(1, len(issued) + 1))
    # ledgers: the balance is the sum of the entries, which is the sum of the invoices
    entries = defaultdict(int)
    for entry in LedgerEntry.select():
        entries[entry.account_id, entry.currency] += entry.amount
    billed = defaultdict(int)
    for inv in invoices.values():
        billed[inv.account_id, inv.currency] += inv.total
    assert dict(entries) == {k: v for k, v in billed.items()}
    for account_id in accounts:
        for currency, total in ledger.balances(account_id).items():
            assert total == entries[account_id, currency]


def machine_for(monkeypatch, seen):
    class Billing(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            empty_database()
            self.now = START
            monkeypatch.setattr(clock, "today", lambda: self.now)
            self.world = make_world()
            self.issued_by: dict[int, date] = {}
            self.usage_ids = 0

        # -- helpers ------------------------------------------------------------------------

        def customer(self, index):
            return Account.get_by_id(self.world["customers"][index % 3].id)

        def open_subs(self):
            return list(
                Subscription.select()
                .where(
                    Subscription.end.is_null()
                    & Subscription.account.in_([c.id for c in self.world["customers"]])
                )
                .order_by(Subscription.id)
            )

        def plan_for(self, customer, choice):
            plans = self.world["plans"]["reseller" if customer.parent_id == self.world[
                "reseller"].id else "provider"]  # fmt: skip
            return plans[choice % len(plans)]

        def subscribe(self, customer, plan, start, quantity):
            try:
                return catalog.create_subscription(
                    None,
                    {"account_id": customer.id, "plan_id": plan.id, "quantity": str(quantity),
                     "start": start.isoformat()},
                )  # fmt: skip
            except BillhiveError:  # e.g. a plan in another currency than the account's
                assert plan.currency != customer.currency
                return None

        def bill(self, as_of):
            before = set(self.issued_by)
            summary = engine.run(as_of)
            assert not summary["failures"], summary["failures"]
            seen["invoices"] += summary["invoices_created"]
            seen["short"] += sum(
                1 for inv in summary["invoices"]
                for line in Invoice.get_by_id(inv["id"]).lines
                if line.service_start > Invoice.get_by_id(inv["id"]).period_start
                and line.source.startswith("subscription:")
                and line.service_start != Subscription.get_by_id(int(line.source[13:])).start
            )  # fmt: skip
            for inv in Invoice.select(Invoice.id).where(Invoice.id.not_in(list(before) or [0])):
                self.issued_by[inv.id] = as_of
            return summary

        # -- rules --------------------------------------------------------------------------

        @rule(who=st.integers(0, 2), choice=st.integers(0, 3), offset=st.integers(-45, 20),
              quantity=st.integers(1, 3))  # fmt: skip
        def subscribe_rule(self, who, choice, offset, quantity):
            customer = self.customer(who)
            self.subscribe(customer, self.plan_for(customer, choice),
                           self.now + timedelta(days=offset), quantity)  # fmt: skip

        @precondition(lambda self: self.open_subs())
        @rule(pick=st.integers(0, 100), quantity=st.integers(0, 5))
        def change_quantity(self, pick, quantity):
            subs = self.open_subs()
            sub = subs[pick % len(subs)]
            Subscription.update(quantity=str(quantity)).where(Subscription.id == sub.id).execute()

        @precondition(lambda self: self.open_subs())
        @rule(pick=st.integers(0, 100), choice=st.integers(0, 3))
        def change_plan(self, pick, choice):
            subs = self.open_subs()
            sub = subs[pick % len(subs)]
            end = max(self.now, sub.start + timedelta(days=1))
            with database.atomic():
                Subscription.update(end=end).where(Subscription.id == sub.id).execute()
                customer = Account.get_by_id(sub.account_id)
                self.subscribe(customer, self.plan_for(customer, choice), end, sub.quantity)

        @precondition(lambda self: self.open_subs())
        @rule(pick=st.integers(0, 100))
        def cancel(self, pick):
            subs = self.open_subs()
            sub = subs[pick % len(subs)]
            end = max(self.now, sub.start + timedelta(days=1))
            Subscription.update(end=end).where(Subscription.id == sub.id).execute()

        @rule(who=st.integers(0, 1), day=st.integers(1, 28))
        def cycle_day_of_the_account(self, who, day):
            from core import accounts

            customer = self.customer(who)
            accounts.update_account(self.world["operator"], customer, {"bill_cycle_day": day})
            assert Account.get_by_id(customer.id).bill_cycle_day == day

        @rule(day=st.integers(1, 28))
        def cycle_day_of_the_reseller_profile(self, day):
            from plugins.reseller_accounts.service import resellers as service

            reseller = Account.get_by_id(self.world["reseller"].id)
            service.update_profile(
                self.world["operator"], reseller, {"customer_billing_cycle_day": day}
            )
            assert self.customer(2).bill_cycle_day == day

        @precondition(lambda self: self.open_subs())
        @rule(pick=st.integers(0, 100), quantity=st.integers(0, 50), back=st.integers(0, 40))
        def record_usage(self, pick, quantity, back):
            subs = self.open_subs()
            sub = subs[pick % len(subs)]
            day = max(sub.start, self.now - timedelta(days=back))
            self.usage_ids += 1
            good, bad = catalog.check_usage(
                [{"subscription_id": sub.id, "quantity": str(quantity), "date": day.isoformat(),
                  "external_id": f"u{self.usage_ids}"}]
            )  # fmt: skip
            assert not bad, bad
            catalog.insert_usage(good)

        @rule(who=st.integers(0, 2), currency=st.sampled_from(["USD", "JPY", "EUR"]))
        def currency_change_attempt(self, who, currency):
            from core import accounts

            customer = self.customer(who)
            used = bool(accounts.currency_uses(customer))
            try:
                accounts.update_account(self.world["operator"], customer, {"currency": currency})
            except BillhiveError as exc:
                assert used and "currency" in (exc.errors or {}), exc
                assert Account.get_by_id(customer.id).currency == customer.currency
            else:
                assert not used or currency == customer.currency

        @rule(back=st.sampled_from([0, 0, 0, 1, 5, 20, 45]))
        def bill_run(self, back):
            self.bill(self.now - timedelta(days=back))

        @rule(ahead=st.integers(1, 400))
        def future_bill_run(self, ahead):
            count = Invoice.select().count()
            with pytest.raises(PeriodError):
                engine.run(self.now + timedelta(days=ahead))
            assert Invoice.select().count() == count

        @rule(after=st.integers(0, 3), back=st.integers(0, 30))
        def killed_run(self, after, back):
            calls = {"n": 0}
            real = ledger.post_issued

            def dying(invoice, actor=None):
                calls["n"] += 1
                if calls["n"] > after:
                    raise Killed()
                return real(invoice, actor)

            count = Invoice.select().count()
            monkeypatch.setattr(ledger, "post_issued", dying)
            try:
                self.bill(self.now - timedelta(days=back))
            except Killed:
                # what died was rolled back with its transaction; what committed stays
                assert Invoice.select().count() == count + after
                for inv in Invoice.select(Invoice.id).order_by(Invoice.id.desc()).limit(after):
                    self.issued_by.setdefault(inv.id, self.now - timedelta(days=back))
            finally:
                monkeypatch.setattr(ledger, "post_issued", real)

        @rule(days=st.integers(5, 70))
        def time_passes(self, days):
            self.now += timedelta(days=days)

        @invariant()
        def billed_exactly_once(self):
            check_invariants(self.world, self.issued_by)

    return Billing


def test_every_day_is_billed_exactly_once_whatever_happens(ctx, install_license, monkeypatch):
    host = ctx.extensions["billhive"].host
    install_license([FEATURE])
    host.set_enabled("reseller_accounts", True)
    seen = {"invoices": 0, "short": 0}
    run_state_machine_as_test(
        machine_for(monkeypatch, seen),
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
            derandomize=True,  # the same examples in every run (CI)
        ),
    )
    # not vacuous: many invoices, some of them the short stretch after a cycle-day change
    assert seen["invoices"] > 30 and seen["short"] > 0, seen
