"""The Billing page in the panel: an account tab behind "Edit Billing" (403 without it, 404
outside the subtree) with its sub-tabs; forms with CSRF and field errors; the statement's PDF
link only while invoice_pdf is enabled; the activity report's chart is inline SVG."""

from __future__ import annotations

import re
from datetime import date

import pytest

from core import roles
from core.billing.invoicing import lifecycle
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments
from core.billing.models import Invoice, Payment, PaymentMethod
from core.billing.runs import engine
from core.models import Role
from tests.billing_support import setup_catalog, subscribe, usage

app = pytest.fixture(lambda make_app: make_app(plugins=["invoice_pdf"]), name="app")

SUBTABS = ["my-account", "statements", "payment-settings", "prepaid", "payment-methods",
           "transactions", "activity"]  # fmt: skip


def page(account, tail=""):
    return f"/accounts/{account.id}/billing/{tail or 'my-account'}"


def issue_invoice(world, account, amount):
    draft = lifecycle.create_draft(None, account, world.provider,
                                   [{"description": "Service", "unit_price": amount}])  # fmt: skip
    return lifecycle.issue(draft)


def test_every_sub_tab_opens_for_a_user_with_edit_billing(world, panel):
    client = panel(world.user_a)
    home = client.get(f"/accounts/{world.customer_a.id}").get_data(as_text=True)
    tab = f"/accounts/{world.customer_a.id}/billing"
    assert f'href="{tab}"' in home  # the account tab "Billing" opens its first sub-tab
    assert client.get(tab).location.endswith(page(world.customer_a))
    for tail in SUBTABS:
        resp = client.get(page(world.customer_a, tail))
        assert resp.status_code == 200, tail
        html = resp.get_data(as_text=True)
        for label in ("My account", "Statements", "Payment settings", "Prepaid invoices",
                      "Payment methods", "Transactions", "Activity reports"):  # fmt: skip
            assert label in html


def test_without_edit_billing_there_is_no_billing_page(world, panel):
    role = roles.create_role(None, world.customer_a, {"name": "Viewer", "description": "v",
                                                      "privileges": ["billing.view",
                                                                     "accounts.view"]})  # fmt: skip
    viewer = world.add_user(world.customer_a, "viewer@a.example", role_code=None, roles=[role])
    client = panel(viewer)
    for tail in SUBTABS:
        assert client.get(page(world.customer_a, tail)).status_code == 403, tail
    home = client.get(f"/accounts/{world.customer_a.id}").get_data(as_text=True)
    assert f'href="/accounts/{world.customer_a.id}/billing"' not in home
    assert client.get(f"/accounts/{world.customer_a.id}/billing").status_code == 403
    assert client.post(page(world.customer_a, "payment-methods"),
                       data={"type": "card", "description": "x"}).status_code == 403  # fmt: skip
    assert not PaymentMethod.select().exists()


def test_other_accounts_answer_404(world, panel):
    client = panel(world.user_b)
    for tail in SUBTABS + ["statements.csv", "activity.csv"]:
        assert client.get(page(world.customer_a, tail)).status_code == 404, tail


def test_my_account_shows_balance_open_invoices_and_recent_transactions(world, panel):
    inv = issue_invoice(world, world.customer_a, "80.00")
    html = panel(world.user_a).get(page(world.customer_a)).get_data(as_text=True)
    assert "80.00 EUR" in html and inv.number in html
    assert "Nothing is due" not in html and "overdue" not in html
    Invoice.update(due_date=date(2020, 1, 1)).where(Invoice.id == inv.id).execute()
    html = panel(world.user_a).get(page(world.customer_a)).get_data(as_text=True)
    assert "overdue" in html


def test_recording_a_payment_in_the_panel(world, panel):
    a = world.customer_a
    old = issue_invoice(world, a, "30.00")
    new = issue_invoice(world, a, "50.00")
    client = panel(world.operator)
    html = client.get(page(a, "transactions")).get_data(as_text=True)
    assert 'id="payment-form"' in html and old.number in html
    resp = client.post(page(a, "transactions/payment"), data={"amount": "", "currency": "EUR"})
    assert resp.status_code == 422
    assert "amount" in resp.get_data(as_text=True) and 'class="field-error"' in resp.get_data(
        as_text=True
    )
    resp = client.post(page(a, "transactions/payment"),
                       data={"amount": "50.00", "currency": "EUR", "method": "card",
                             "reference": "POS 1", "payee_id": str(world.provider.id),
                             "invoice_ids": [str(new.id)]}, follow_redirects=True)  # fmt: skip
    assert resp.status_code == 200
    assert f"allocated to {new.number}" in resp.get_data(as_text=True)
    assert Invoice.get_by_id(new.id).status == "paid"
    assert Invoice.get_by_id(old.id).status == "issued"
    assert ledger.balance(a, "EUR") == 3000
    # the customer sees the money but records none itself
    own = panel(world.user_a).get(page(a, "transactions")).get_data(as_text=True)
    assert "POS 1" in own and 'id="payment-form"' not in own


def test_reversing_a_payment_in_the_panel(world, panel):
    a = world.customer_a
    client = panel(world.operator)
    client.post(page(a, "transactions/payment"), data={"amount": "5.00", "currency": "EUR",
                                                       "payee_id": str(world.provider.id)})  # fmt: skip
    entry = ledger.entry_of_payment(Payment.get())
    resp = client.post(page(a, f"transactions/{entry.id}/reverse"), data={"memo": "typo"},
                       follow_redirects=True)  # fmt: skip
    assert "Reversal posted" in resp.get_data(as_text=True)
    assert ledger.balance(a, "EUR") == 0


def test_settings_and_methods_forms(world, panel):
    a = world.customer_a
    client = panel(world.user_a)
    resp = client.post(page(a, "payment-settings"), data={"contact_email": "no-at-sign"})
    assert resp.status_code == 422
    assert "must be an e-mail address" in resp.get_data(as_text=True)
    resp = client.post(page(a, "payment-settings"), data={
        "contact_name": "Ann", "contact_email": "ann@a.example", "invoice_email": "inv@a.example"},
        follow_redirects=True)  # fmt: skip
    assert "Payment settings saved" in resp.get_data(as_text=True)
    # payment terms are set by the seller above, on its own form
    operator = panel(world.operator)
    resp = operator.post(page(a, "payment-settings"), data={"payment_terms_days": "x"})
    assert resp.status_code == 422 and "whole number of days" in resp.get_data(as_text=True)
    resp = operator.post(page(a, "payment-settings"), data={
        "contact_name": "Ann", "contact_email": "ann@a.example", "invoice_email": "inv@a.example",
        "payment_terms_days": "30"}, follow_redirects=True)  # fmt: skip
    assert "Payment settings saved" in resp.get_data(as_text=True)
    assert payments.settings_of(a).payment_terms_days == 30
    resp = client.post(
        page(a, "payment-methods"), data={"type": "card", "description": "card 4111111111111111"}
    )
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "PCI DSS" in html and "4111111111111111" not in html
    resp = client.post(page(a, "payment-methods"), data={
        "type": "card", "description": "Mastercard ending 4444, expires 01/29"},
        follow_redirects=True)  # fmt: skip
    assert "Mastercard ending 4444" in resp.get_data(as_text=True)
    method = PaymentMethod.get()
    client.post(page(a, f"payment-methods/{method.id}/delete"))
    assert not PaymentMethod.select().exists()


def test_prepaid_tab_issues_a_topup_for_the_seller_only(world, panel):
    a = world.customer_a
    assert 'id="topup-form"' not in panel(world.user_a).get(page(a, "prepaid")).get_data(
        as_text=True
    )
    client = panel(world.operator)
    resp = client.post(page(a, "prepaid"), data={"amount": "oops", "currency": "EUR"})
    assert resp.status_code == 422 and "amount" in resp.get_data(as_text=True)
    resp = client.post(page(a, "prepaid"), data={"amount": "25.00", "currency": "EUR"},
                       follow_redirects=True)  # fmt: skip
    assert "Top-up invoice" in resp.get_data(as_text=True)
    assert "25.00 EUR" in resp.get_data(as_text=True)


def test_statement_page_csv_and_pdf_link(world, panel, ctx):
    a = world.customer_a
    issue_invoice(world, a, "10.00")
    client = panel(world.user_a)
    html = client.get(page(a, "statements")).get_data(as_text=True)
    assert "Opening balance" in html and "Closing balance" in html and "10.00" in html
    assert 'id="statement-csv"' in html
    assert 'id="statement-pdf"' not in html  # invoice_pdf is disabled
    assert client.get(page(a, "statements.pdf")).status_code == 404
    assert client.get(page(a, "statements.csv")).mimetype == "text/csv"
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)
    html = client.get(page(a, "statements")).get_data(as_text=True)
    assert 'id="statement-pdf"' in html
    resp = client.get(page(a, "statements.pdf"))
    assert resp.status_code == 200 and resp.data.startswith(b"%PDF")
    resp = client.get(page(a, "statements") + "?from=2026-02-30")
    assert resp.status_code == 422 and "from" in resp.get_data(as_text=True)


def test_activity_page_draws_an_inline_svg_chart(world, panel):
    _, plan = setup_catalog(world.provider, price="10.00", rate="1.00")
    sub = subscribe(world.customer_a, plan, start="2026-01-01")
    usage(sub, "3", "2026-01-02", "u1")
    engine.run(date(2026, 3, 1))
    client = panel(world.operator)
    html = client.get(page(world.provider, "activity") + "?from=2026-01&to=2026-02").get_data(
        as_text=True
    )
    assert "<svg" in html and 'data-month="2026-01"' in html
    # drawn on the server: the page's only scripts are the panel's own files, none inline
    assert re.findall(r"<script[^>]*>", html) == re.findall(r'<script src="[^"]+"[^>]*>', html)
    assert "Customer A" in html  # per child account
    own = client.get(page(world.customer_a, "activity") + "?from=2026-01&to=2026-02")
    own_html = own.get_data(as_text=True)
    assert 'data-month="2026-01" data-value="1300"' in own_html  # 10.00 + 3 x 1.00
    resp = client.get(page(world.customer_a, "activity.csv") + "?from=2026-01&to=2026-02")
    assert "2026-01,HOST,Hosting,seat,3,EUR,13.00" in resp.get_data(as_text=True)


def test_forms_need_the_csrf_token(make_app, tmp_path):
    from core.billing.models import BillingSettings
    from tests.conftest import PASSWORD, World

    app = make_app(plugins=[], csrf=True)
    database = app.extensions["billhive"].database
    with app.app_context(), database.connection_context():
        world = World()
        client = app.test_client()
        login = client.get("/login").get_data(as_text=True)
        token = login.split('name="csrf_token" value="')[1].split('"')[0]
        client.post("/login", data={"email": world.user_a.email, "password": PASSWORD,
                                    "csrf_token": token})  # fmt: skip
        target = page(world.customer_a, "payment-settings")
        assert client.post(target, data={"contact_name": "X"}).status_code == 400
        html = client.get(target).get_data(as_text=True)
        token = html.split('name="csrf_token" value="')[1].split('"')[0]
        resp = client.post(target, data={"contact_name": "X", "csrf_token": token})
        assert resp.status_code == 302
        assert BillingSettings.get().contact_name == "X"
        assert Role.select().count() > 0
