"""The account lifecycle (issue 20, item 3; core.lifecycle): suspend, reactivate, close.

What an attacker or a careless admin would try first: a suspended account's session, token
and login; its bill run (and its customers' below a suspended reseller); suspending one's own
account or an ancestor; a status that does not exist; reactivating a closed account; closing
a reseller with open customers; a suspension racing a bill run on PostgreSQL."""

from __future__ import annotations

import re
import threading
from datetime import date

import pytest

from core import lifecycle
from core.billing.models import Invoice, Subscription
from core.billing.runs import engine
from core.billing.runs.summary import RunSummary
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.models import Account, AccountStatusChange, AuditEntry, LoginSession
from tests.billing_support import reseller_tree, setup_catalog, subscribe
from tests.conftest import PASSWORD, Fresh


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts"])


@pytest.fixture
def tree(world, ctx, install_license):
    """The provider, a reseller (with its admin) owning a customer (with its admin), and the
    world's customers A and B."""
    return reseller_tree(world, ctx, install_license)


def _status(account) -> str:
    return Account.get_by_id(account.id).status


def _actions(name):
    return list(AuditEntry.select().where(AuditEntry.action == name).order_by(AuditEntry.id))


# -- who may ---------------------------------------------------------------------------------


def test_nobody_suspends_their_own_account_or_an_ancestor(tree):
    w = tree
    with pytest.raises(Forbidden, match="your own account"):
        lifecycle.set_account_status(w.reseller, "suspended", w.reseller_admin)
    with pytest.raises(NotFound):  # above the caller: as if it did not exist
        lifecycle.set_account_status(w.provider, "suspended", w.reseller_admin)
    with pytest.raises(NotFound):  # sideways
        lifecycle.set_account_status(w.customer_a, "suspended", w.reseller_admin)
    with pytest.raises(Forbidden, match="provider's own account"):
        lifecycle.set_account_status(w.provider, "suspended", None)
    assert {_status(a) for a in (w.reseller, w.provider, w.customer_a)} == {"active"}


def test_a_customer_admin_without_the_privilege_is_refused(tree):
    w = tree
    with pytest.raises(Forbidden, match="your own account"):
        lifecycle.set_account_status(w.customer_a, "suspended", w.user_a)
    # a reseller user without accounts.lifecycle
    from core import roles

    viewer_role = roles.create_role(
        None, w.reseller, {"name": "Viewer", "description": "Sees", "privileges": ["accounts.view"]}
    )
    viewer = w.add_user(w.reseller, "viewer@acme.example", None, [viewer_role])
    with pytest.raises(Forbidden, match="accounts.lifecycle"):
        lifecycle.set_account_status(w.end_customer, "suspended", viewer)
    assert _status(w.end_customer) == "active"


def test_bad_status_and_reason_name_the_field(tree):
    w = tree
    with pytest.raises(ValidationFailed) as exc:
        lifecycle.set_account_status(w.end_customer, "frozen", w.reseller_admin, "x\x00y")
    assert set(exc.value.errors) == {"status", "reason"}
    assert exc.value.errors["status"][0].startswith("Status must be one of")
    with pytest.raises(ValidationFailed) as exc:
        lifecycle.set_account_status(w.end_customer, "suspended", None, "r" * 501)
    assert "reason" in exc.value.errors
    assert _status(w.end_customer) == "active"
    assert not AccountStatusChange.select().exists()


# -- suspension: no logins, no tokens, no sessions, no bill runs; data kept ------------------


def test_suspending_ends_sessions_refuses_logins_and_tokens_of_the_subtree(tree, api, panel):
    w = tree
    end_panel = panel(w.end_user)
    end_api = api(w.end_user)
    reseller_api = api(w.reseller_admin)
    assert end_panel.get("/").status_code == 302  # logged in: home redirects to the account
    assert end_api.get("/api/v1/users/me").status_code == 200

    answer = api(w.operator).post(
        f"/api/v1/accounts/{w.reseller.id}/status",
        json={"status": "suspended", "reason": "unpaid invoices"},
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["status"] == "suspended"

    # below the suspended reseller too: sessions ended, tokens answer 401, logins refused
    assert (
        LoginSession.select()
        .where(
            LoginSession.user.in_([w.end_user.id, w.reseller_admin.id])
            & LoginSession.revoked_at.is_null()
        )
        .count()
        == 0
    )
    page = end_panel.get(f"/accounts/{w.end_customer.id}")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    assert end_api.get("/api/v1/users/me").status_code == 401
    assert reseller_api.get("/api/v1/users/me").status_code == 401
    client = Fresh(w.app.test_client())
    refused = client.post("/login", data={"email": w.end_user.email, "password": PASSWORD})
    assert refused.status_code == 401
    assert "Acme Reseller" in refused.get_data(as_text=True)
    assert "suspended" in refused.get_data(as_text=True)
    token = client.post("/api/v1/tokens", json={"email": w.end_user.email, "password": PASSWORD})
    assert token.status_code == 422 and "suspended" in token.get_json()["message"]
    # a wrong password says nothing about the account
    wrong = client.post("/login", data={"email": w.end_user.email, "password": "wrong" * 3})
    assert "suspended" not in wrong.get_data(as_text=True)
    # the other customers are untouched
    assert api(w.user_a).get("/api/v1/users/me").status_code == 200

    # reactivated: the old tokens work again, sessions stay ended (log in again)
    lifecycle.set_account_status(w.reseller, "active", w.operator, "paid")
    assert end_api.get("/api/v1/users/me").status_code == 200
    assert end_panel.get(f"/accounts/{w.end_customer.id}").status_code == 302
    assert panel(w.end_user).get(f"/accounts/{w.end_customer.id}").status_code == 200
    assert [e.after["reason"] for e in _actions("account.suspend")] == ["unpaid invoices"]
    assert [e.after["reason"] for e in _actions("account.reactivate")] == ["paid"]


@pytest.fixture
def billed(tree):
    """A subscription of the provider's plan for customer A and one of the reseller."""
    _, plan = setup_catalog(tree.provider)
    tree.sub_a = subscribe(tree.customer_a, plan, start="2026-01-01")
    tree.sub_r = subscribe(tree.reseller, plan, start="2026-01-01")
    return tree


def _invoiced(account) -> int:
    return Invoice.select().where(Invoice.account == account.id).count()


def test_a_suspended_account_gets_no_bill_run_and_its_days_are_billed_after(billed):
    w = billed
    lifecycle.set_account_status(w.customer_a, "suspended", w.operator, "fraud check")
    summary = engine.run(date(2026, 3, 1))
    assert _invoiced(w.customer_a) == 0
    assert _invoiced(w.reseller) == 2  # January and February
    assert not [s for s in summary["invoices"] if s["account_id"] == w.customer_a.id]
    assert Subscription.get_by_id(w.sub_a.id).billed_through is None  # data kept, untouched
    lifecycle.set_account_status(w.customer_a, "active", w.operator)
    engine.run(date(2026, 3, 1))
    # the suspended days are not lost: every day billed once, after reactivation
    assert _invoiced(w.customer_a) == 2
    assert Subscription.get_by_id(w.sub_a.id).billed_through == date(2026, 3, 1)


def test_a_suspended_reseller_takes_its_subtree_out_of_bill_runs(billed):
    w = billed
    _, own_plan = setup_catalog(w.reseller, code="RES")
    subscribe(w.end_customer, own_plan, start="2026-01-01")
    lifecycle.set_account_status(w.reseller, "suspended", w.operator)
    engine.run(date(2026, 2, 1))
    assert _invoiced(w.reseller) == 0 and _invoiced(w.end_customer) == 0
    assert _invoiced(w.customer_a) == 1


def test_a_suspension_after_planning_is_seen_by_the_account_being_billed(billed):
    """A queued run planned before the suspension: bill_account checks again."""
    w = billed
    summary = RunSummary(date(2026, 2, 1), 1)
    account = Account.get_by_id(w.customer_a.id)
    lifecycle.set_account_status(w.customer_a, "suspended", w.operator)
    engine.bill_account(account, date(2026, 2, 1), summary)
    assert _invoiced(w.customer_a) == 0
    assert summary.invoices_skipped[0]["reason"] == "account suspended"


# -- closing: final, the last invoice up to the closing day ----------------------------------


def test_closing_is_final_and_bills_up_to_the_closing_day(billed, monkeypatch):
    w = billed
    from core import clock

    monkeypatch.setattr(clock, "today", lambda: date(2026, 2, 15))
    lifecycle.set_account_status(w.customer_a, "closed", w.operator, "moved away")
    assert Subscription.get_by_id(w.sub_a.id).end == date(2026, 2, 15)
    with pytest.raises(Conflict, match="closing is final"):
        lifecycle.set_account_status(w.customer_a, "active", w.operator)
    # dunning's final notice may still ask to suspend it: nothing changes, nothing recorded
    lifecycle.set_account_status(w.customer_a, "suspended", None, "final notice")
    assert _status(w.customer_a) == "closed"
    assert AccountStatusChange.select().count() == 1
    monkeypatch.setattr(clock, "today", lambda: date(2026, 5, 1))
    engine.run(date(2026, 5, 1))
    invoices = list(Invoice.select().where(Invoice.account == w.customer_a.id)
                    .order_by(Invoice.period_start))  # fmt: skip
    # January in full, February up to the closing day, nothing after
    assert [(i.period_start, i.period_end) for i in invoices] == [
        (date(2026, 1, 1), date(2026, 2, 1)),
        (date(2026, 2, 1), date(2026, 3, 1)),
    ]
    assert invoices[1].total < invoices[0].total  # 14 of 28 days
    # nothing new is added to a closed account
    from core import users
    from core.billing import catalog

    with pytest.raises(Conflict, match="closed"):
        users.create_user(None, {"email": "late@a.example", "password": PASSWORD,
                                 "account_id": w.customer_a.id})  # fmt: skip
    with pytest.raises(Conflict, match="closed"):
        catalog.create_subscription(None, {"account_id": w.customer_a.id,
                                           "plan_id": w.sub_a.plan_id, "start": "2026-06-01"})  # fmt: skip
    # its users cannot log in; its invoices stay visible to the seller
    assert "closed" in Fresh(w.app.test_client()).post(
        "/login", data={"email": w.user_a.email, "password": PASSWORD}
    ).get_data(as_text=True)


def test_a_reseller_with_open_customers_cannot_be_closed(tree):
    w = tree
    with pytest.raises(Conflict, match="End Customer"):
        lifecycle.set_account_status(w.reseller, "closed", w.operator)
    assert _status(w.reseller) == "active"
    lifecycle.set_account_status(w.end_customer, "closed", w.reseller_admin)
    lifecycle.set_account_status(w.reseller, "closed", w.operator)
    assert _status(w.reseller) == "closed"


def test_the_same_status_twice_records_once(tree):
    w = tree
    lifecycle.set_account_status(w.end_customer, "suspended", None, "dunning level 3")
    lifecycle.set_account_status(w.end_customer, "suspended", None, "dunning level 3")
    assert AccountStatusChange.select().count() == 1
    assert len(_actions("account.suspend")) == 1
    assert _actions("account.suspend")[0].actor_label == "cli"


# -- API, panel, CLI --------------------------------------------------------------------------


def test_api_status_endpoint_scoped_and_documented(tree, api):
    w = tree
    client = api(w.reseller_admin)
    assert client.post(f"/api/v1/accounts/{w.customer_a.id}/status",
                       json={"status": "suspended"}).status_code == 404  # fmt: skip
    assert client.post(f"/api/v1/accounts/{w.reseller.id}/status",
                       json={"status": "suspended"}).status_code == 403  # fmt: skip
    bad = client.post(f"/api/v1/accounts/{w.end_customer.id}/status", json={"status": "gone"})
    assert bad.status_code == 422 and "status" in bad.get_json()["errors"]
    ok = client.post(f"/api/v1/accounts/{w.end_customer.id}/status",
                     json={"status": "suspended", "reason": "late"})  # fmt: skip
    assert ok.status_code == 200 and ok.get_json()["status"] == "suspended"
    history = client.get(f"/api/v1/accounts/{w.end_customer.id}/status").get_json()
    assert history[0]["status"] == "suspended" and history[0]["reason"] == "late"
    assert history[0]["actor"] == "admin@acme.example"
    doc = Fresh(w.app.test_client()).get("/api/v1/openapi.json").get_json()
    operation = doc["paths"]["/api/v1/accounts/{account_id}/status"]["post"]
    assert {"200", "403", "404", "409", "422"} <= set(operation["responses"])


def test_panel_buttons_ask_first_and_refuse_own_account(tree, panel):
    w = tree
    client = panel(w.reseller_admin)
    own = client.get(f"/accounts/{w.reseller.id}").get_data(as_text=True)
    assert "Suspend" not in own  # no button on one's own account
    page = client.get(f"/accounts/{w.end_customer.id}").get_data(as_text=True)
    assert 'data-confirm="Suspend End Customer?' in page
    assert 'data-confirm="Close End Customer for good?' in page
    resp = client.post(f"/accounts/{w.end_customer.id}/status",
                       data={"status": "suspended", "reason": "test"})  # fmt: skip
    assert resp.status_code == 302
    assert _status(w.end_customer) == "suspended"
    shown = client.get(f"/accounts/{w.end_customer.id}").get_data(as_text=True)
    assert "Reactivate" in shown and "This account is suspended" in shown
    # a hand-made post on one's own account is refused with a message, nothing changes
    client.post(f"/accounts/{w.reseller.id}/status", data={"status": "suspended"})
    assert _status(w.reseller) == "active"
    assert client.post(f"/accounts/{w.customer_a.id}/status",
                       data={"status": "suspended"}).status_code == 404  # fmt: skip


# -- the race: a suspension and a bill run's invoice of the same account ---------------------


def test_a_suspension_racing_the_invoice_being_written_waits_for_it(billed):
    """The suspension's transaction holds the account's row lock (PostgreSQL; SQLite: the
    write lock); the bill run, started meanwhile and past its first check (the suspension is
    not committed yet), must wait at the invoice's write and then see the suspension: no
    invoice for a suspended account."""
    w = billed
    from core.db import database

    locked, release, done = threading.Event(), threading.Event(), threading.Event()
    summary = RunSummary(date(2026, 2, 1), 1)
    app = w.app

    def suspend():
        with app.app_context(), database.connection_context():
            with database.atomic():
                lifecycle.set_account_status(w.customer_a, "suspended", None, "race")
                locked.set()
                release.wait(30)

    def bill():
        with app.app_context(), database.connection_context():
            account = Account.get_by_id(w.customer_a.id)
            locked.wait(30)  # the account still reads 'active' here: uncommitted
            engine.bill_account(account, date(2026, 2, 1), summary)
            done.set()

    threads = [threading.Thread(target=suspend), threading.Thread(target=bill)]
    for t in threads:
        t.start()
    assert not done.wait(2), "the invoice was written while the suspension held the lock"
    release.set()
    for t in threads:
        t.join(60)
    assert done.is_set()
    assert _invoiced(w.customer_a) == 0
    assert summary.invoices_skipped[-1]["reason"] == "account suspended"
    assert Subscription.get_by_id(w.sub_a.id).billed_through is None


def test_the_cli_suspends_reactivates_and_closes(tree, monkeypatch):
    """``billhive accounts status``: the operator's shell, the same rules and messages."""
    from click.testing import CliRunner

    import hostapp.cli

    w = tree
    monkeypatch.setattr(hostapp.cli, "_app", w.app)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(hostapp.cli.main, ["accounts", "status", *args])

    result = run(str(w.end_customer.id), "suspended", "--reason", "unpaid")
    assert result.exit_code == 0, result.output
    assert "End Customer: suspended" in result.output
    assert AccountStatusChange.get().reason == "unpaid"
    listed = runner.invoke(hostapp.cli.main, ["accounts", "list"]).output
    assert re.search(r"End Customer \(customer\).*\[suspended\]", listed)
    result = run(str(w.reseller.id), "closed")
    assert result.exit_code != 0 and "End Customer" in result.output  # open child
    result = run(str(w.provider.id), "suspended")
    assert result.exit_code != 0 and "provider's own account" in result.output
    result = run(str(w.end_customer.id), "frozen")
    assert result.exit_code != 0 and "frozen" in result.output
    result = run("999999", "active")
    assert result.exit_code != 0 and "999999" in result.output
    assert run(str(w.end_customer.id), "active").exit_code == 0
    assert _status(w.end_customer) == "active"
