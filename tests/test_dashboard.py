"""The dashboard per level (issue 20, item 2; core.dashboard): open and overdue amounts per
currency checked against the ledger, monthly recurring revenue by plan, the last bill runs,
what went wrong elsewhere (the dashboard_alerts hook), and the licence for operators; every
figure scoped to the account's subtree."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import clock, dashboard
from core.billing.invoicing import lifecycle
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments
from core.billing.models import Invoice
from core.billing.money import to_minor
from core.billing.runs import engine
from tests.billing_support import reseller_tree, setup_catalog, subscribe


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts", "role_wizard"])


@pytest.fixture
def tree(world, ctx, install_license):
    w = reseller_tree(world, ctx, install_license)
    w.usd = w.add_account(w.provider, "Dollar Customer", currency="USD")
    return w


def invoice(account, issuer, amount, *, due_in_days):
    draft = lifecycle.create_draft(None, account, issuer,
                                   [{"description": "Service", "unit_price": amount}])  # fmt: skip
    issued = lifecycle.issue(draft)
    due = clock.today() + timedelta(days=due_in_days)
    Invoice.update(due_date=due).where(Invoice.id == issued.id).execute()
    return Invoice.get_by_id(issued.id)


def from_ledger(account, today=None):
    """The same figures, one invoice at a time through the ledger's own rule."""
    today = today or clock.today()
    below = {a.id for a in dashboard.Account.select().where(dashboard.rbac.in_subtree(account))}
    out = {}
    for inv in Invoice.select().where((Invoice.kind == "invoice") & (Invoice.status == "issued")):
        if inv.issuer_id == account.id:
            group = dashboard.OWED_TO_YOU
        elif inv.account_id == account.id:
            group = dashboard.YOU_OWE
        elif inv.issuer_id in below:
            group = dashboard.OWED_BELOW
        else:
            continue
        due = ledger.open_amount(inv)
        if due <= 0:
            continue
        row = out.setdefault((group, inv.currency), [0, 0])
        row[0] += due
        row[1] += due if inv.due_date < today else 0
    return out


def figures(rows):
    return {(r["group"], r["currency"]): [r["due_minor"], r["overdue_minor"]] for r in rows}


def test_owed_per_level_matches_the_ledger(tree):
    w = tree
    late = invoice(w.customer_a, w.provider, "100.00", due_in_days=-5)
    invoice(w.customer_a, w.provider, "40.00", due_in_days=10)
    invoice(w.usd, w.provider, "7.50", due_in_days=-1)
    invoice(w.reseller, w.provider, "300.00", due_in_days=-30)
    invoice(w.end_customer, w.reseller, "25.00", due_in_days=-2)
    invoice(w.end_customer, w.reseller, "5.00", due_in_days=3)
    paid = invoice(w.customer_b, w.provider, "9.99", due_in_days=-9)
    payments.record_payment(None, w.customer_a, {"amount": "30.00", "invoice_ids": [late.id]})
    payments.record_payment(None, w.customer_b, {"amount": "9.99", "invoice_ids": [paid.id]})

    operator = figures(dashboard.owed(w.provider))
    assert operator == {k: v for k, v in from_ledger(w.provider).items()}
    assert operator[(dashboard.OWED_TO_YOU, "EUR")] == [7000 + 4000 + 30000, 7000 + 30000]
    assert operator[(dashboard.OWED_TO_YOU, "USD")] == [750, 750]
    assert operator[(dashboard.OWED_BELOW, "EUR")] == [3000, 2500]
    reseller = figures(dashboard.owed(w.reseller))
    assert reseller == from_ledger(w.reseller)
    assert reseller == {(dashboard.OWED_TO_YOU, "EUR"): [3000, 2500],
                        (dashboard.YOU_OWE, "EUR"): [30000, 30000]}  # fmt: skip
    customer = figures(dashboard.owed(w.end_customer))
    assert customer == {(dashboard.YOU_OWE, "EUR"): [3000, 2500]}
    assert figures(dashboard.owed(w.customer_b)) == {}  # paid in full


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(steps=st.lists(st.tuples(st.sampled_from(["invoice", "pay", "void", "credit"]),
                                st.integers(1, 50000), st.integers(-20, 20)),
                      min_size=1, max_size=8))  # fmt: skip
def test_owed_always_equals_the_ledger_over_any_sequence(tree, steps):
    w = tree
    for kind, cents, days in steps:
        amount = str(Decimal(cents) / 100)
        open_ones = list(Invoice.select().where((Invoice.account == w.customer_a.id)
                                                & (Invoice.kind == "invoice")
                                                & (Invoice.status == "issued")))  # fmt: skip
        if kind == "invoice" or not open_ones:
            invoice(w.customer_a, w.provider, amount, due_in_days=days)
        elif kind == "pay":
            payments.record_payment(None, w.customer_a, {"amount": amount})
        elif kind == "void":
            lifecycle.void(open_ones[0])
        else:
            lifecycle.credit_note(open_ones[-1])
        assert figures(dashboard.owed(w.provider)) == from_ledger(w.provider)
        assert figures(dashboard.owed(w.customer_a)) == from_ledger(w.customer_a)


def test_mrr_by_plan_counts_running_subscriptions_only(tree):
    w = tree
    _, plan = setup_catalog(w.provider, price="30.00")
    _, own = setup_catalog(w.reseller, price="12.345", code="RES")
    today = clock.today()
    subscribe(w.customer_a, plan, start="2026-01-01", quantity="2")
    subscribe(w.customer_b, plan, start="2026-01-01", end=str(today))  # ended: not counted
    subscribe(w.customer_b, plan, start=str(today + timedelta(days=1)))  # not started yet
    subscribe(w.reseller, plan, start="2026-01-01", quantity="3")
    subscribe(w.end_customer, own, start="2026-01-01", quantity="1.5")
    sold = {r["plan"] + "@" + r["seller"]: r for r in dashboard.mrr(w.provider)}
    assert sold["Standard@Provider"]["mrr_minor"] == 6000 + 9000
    assert sold["Standard@Provider"]["subscriptions"] == 2
    assert sold["Standard@Acme Reseller"]["mrr_minor"] == to_minor(Decimal("18.5175"), "EUR")
    reseller_sold = dashboard.mrr(w.reseller)
    assert [(r["plan"], r["mrr_minor"]) for r in reseller_sold] == [("Standard", 1852)]
    bought = dashboard.mrr(w.reseller, sold=False)
    assert [(r["seller"], r["mrr_minor"]) for r in bought] == [("Provider", 9000)]
    assert dashboard.mrr(w.end_customer) == []


def test_last_bill_runs_and_scoping_of_the_panel(tree, panel):
    w = tree
    _, plan = setup_catalog(w.provider)
    subscribe(w.customer_a, plan, start="2026-01-01")
    from core.billing.models import BillRun

    engine.run(date(2026, 2, 1), bill_run=BillRun.create(as_of=date(2026, 2, 1),
                                                         scope=w.provider))  # fmt: skip
    page = panel(w.operator).get(f"/accounts/{w.provider.id}").get_data(as_text=True)
    assert 'id="dashboard"' in page and 'id="runs"' in page
    run_row = re.search(r'<tr data-run="(\d+)">.*?</tr>', page, re.S).group(0)
    assert "2026-02-01" in run_row and ">done<" in run_row
    assert 'aria-label="Open and overdue amounts in EUR"' in page  # January's invoice
    assert 'aria-label="Monthly recurring revenue by plan in EUR"' in page
    # a customer's admin: what it owes, no runs, no licence, nothing of other accounts
    mine = panel(w.end_user).get(f"/accounts/{w.end_customer.id}").get_data(as_text=True)
    assert 'id="runs"' not in mine and 'id="licence"' not in mine
    assert "Customer A" not in mine
    assert panel(w.end_user).get(f"/accounts/{w.provider.id}").status_code == 404


def test_alerts_come_from_the_hook_scoped_to_the_subtree(tree, panel):
    w = tree
    from core.mail.models import MailMessage

    MailMessage.create(event_key="t:1", event="invoice", issuer=w.reseller, account=w.end_customer,
                       status="failed", sender="a@b.c", recipients=["x@y.z"], subject="INV 1",
                       message_id="<1@t>", last_error="550 mailbox unavailable")  # fmt: skip
    with w.app.test_request_context():  # the dashboard asks while it renders a page
        found = dashboard.alerts(w.reseller_admin)
        assert [(a.title, a.count) for a in found] == [("Failed e-mail sends", 1)]
        assert found[0].url.startswith("/mail/messages/")  # no outbox (audit.view) for them
        assert dashboard.alerts(w.user_a) == []  # another subtree
    page = panel(w.reseller_admin).get(f"/accounts/{w.reseller.id}").get_data(as_text=True)
    assert 'data-alert="Failed e-mail sends"' in page and "550 mailbox unavailable" in page
    # shown on one's own account only, not on a child's overview
    child = panel(w.reseller_admin).get(f"/accounts/{w.end_customer.id}").get_data(as_text=True)
    assert "data-alert" not in child


@pytest.mark.parametrize("days,warned", [(10, True), (30, True), (31, False), (200, False)])
def test_the_licence_warns_thirty_days_ahead(tree, install_license, panel, days, warned):
    w = tree
    install_license(["FT-3001.007"], expires=clock.today() + timedelta(days=days))
    board = dashboard.licence()
    assert board["days_left"] == days
    assert (board["warning"] is not None) == warned
    addons = {a["name"]: a for a in board["addons"]}
    assert addons["reseller_accounts"]["license_feature"] == "FT-3001.007"
    assert addons["reseller_accounts"]["licensed"] is True
    page = panel(w.operator).get(f"/accounts/{w.provider.id}").get_data(as_text=True)
    assert ('id="licence-warning"' in page) == warned
    assert 'id="addons"' in page
    for addon in board["addons"]:  # each add-on says in words what licence feature it needs
        needs = addon["license_feature"] or "No licence needed"
        assert re.search(
            rf'data-plugin="{addon["name"]}"><td>[^<]*</td><td>{re.escape(needs)}<', page
        )
    assert 'id="licence"' not in panel(w.reseller_admin).get(
        f"/accounts/{w.reseller.id}").get_data(as_text=True)  # fmt: skip


@pytest.mark.browser
def test_the_dashboard_in_a_browser(tree, live_server, page):
    from tests.conftest import PASSWORD

    w = tree
    invoice(w.customer_a, w.provider, "100.00", due_in_days=-5)
    invoice(w.customer_a, w.provider, "40.00", due_in_days=10)
    _, plan = setup_catalog(w.provider)
    subscribe(w.customer_a, plan, start="2026-01-01", quantity="2")
    errors = []
    page.on("console", lambda m: errors.append((m.text, m.location.get("url", "")))
            if m.type in ("error", "warning") else None)  # fmt: skip
    page.goto(f"{live_server}/login")
    page.fill("#email", w.operator.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))
    board = page.locator("#dashboard")
    assert board.is_visible()
    row = page.locator("#owed tr[data-group='to_you'][data-currency='EUR']")
    assert row.get_attribute("data-due") == "14000" and row.get_attribute("data-overdue") == "10000"
    assert "€100.00" in row.inner_text() or "100.00" in row.inner_text()
    bars = page.locator("svg[aria-label='Open and overdue amounts in EUR'] rect.bar")
    assert bars.count() == 2 and bars.first.is_visible()
    assert (
        page.locator("svg[aria-label='Monthly recurring revenue by plan in EUR'] rect.bar").count()
        == 1
    )
    assert page.locator("#addons tr[data-plugin='reseller_accounts']").is_visible()
    page.click("header nav >> text=Dashboard")
    page.wait_for_url(re.compile(rf".*/accounts/{w.provider.id}$"))
    page.set_viewport_size({"width": 1366, "height": 900})
    page.screenshot(path="/tmp/billhive-dashboard.png", full_page=True)
    assert not [(t, u) for t, u in errors if not u.endswith("/favicon.ico")], errors
