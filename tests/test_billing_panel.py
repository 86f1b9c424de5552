"""Billing pages of the panel: catalog forms, subscriptions, invoices with filters and
downloads, issued invoices refused edits, bill runs with live progress; a real Chromium logs
in and downloads an invoice PDF."""

from __future__ import annotations

import io
import time
from datetime import date

import pytest
from flask import g
from pypdf import PdfReader

from core.billing.models import BillRun, Invoice, PricePlan, Product, Subscription
from core.billing.runs import engine
from tests.billing_support import set_tax, setup_catalog, subscribe


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"])


@pytest.fixture
def panel(panel):
    """The conftest panel client, forgetting the previous user: the test's app context outlives
    requests, so flask-login's per-context user cache would leak from one client to another."""

    def for_user(user):
        client = panel(user)

        class Client:
            def __getattr__(self, name):
                def call(*args, **kwargs):
                    g.pop("_login_user", None)
                    return getattr(client, name)(*args, **kwargs)

                return call

        return Client()

    return for_user


@pytest.fixture
def billed(world, ctx):
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)
    set_tax(world.provider, "20")
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan, quantity="2")
    engine.run(date(2026, 2, 1))
    return Invoice.get(Invoice.account == world.customer_a.id)


def test_catalog_and_subscription_forms(world, panel):
    op = panel(world.operator)
    page = op.get("/billing/catalog").get_data(as_text=True)
    assert "Catalog" in page and "New product" in page
    resp = op.post("/billing/catalog", data={"form": "product", "code": "VM", "name": "VM",
                                             "unit": "vm", "kind": "recurring"})  # fmt: skip
    assert resp.status_code == 302
    product = Product.get(code="VM")
    resp = op.post("/billing/catalog", data={"form": "plan", "product_id": product.id,
                                             "name": "Small", "currency": "EURO"})  # fmt: skip
    assert resp.status_code == 422 and "currency" in resp.get_data(as_text=True)
    resp = op.post("/billing/catalog", data={"form": "plan", "product_id": product.id,
                                             "name": "Small", "currency": "EUR",
                                             "recurring_price": "5", "tiers": "10:1; *:0.5"})  # fmt: skip
    assert resp.status_code == 302
    plan = PricePlan.get(name="Small")
    assert plan.tiers == [["10", "1"], [None, "0.5"]]
    resp = op.post("/billing/subscriptions", data={"account_id": world.customer_a.id,
                                                   "plan_id": plan.id, "start": "2026-13-01"})  # fmt: skip
    assert resp.status_code == 422 and Subscription.select().count() == 0
    resp = op.post("/billing/subscriptions", data={"account_id": world.customer_a.id,
                                                   "plan_id": plan.id, "start": "2026-01-01"})  # fmt: skip
    assert resp.status_code == 302 and Subscription.select().count() == 1
    assert panel(world.user_a).get("/billing/catalog").status_code == 403


def test_invoices_pages_are_scoped_and_filtered(world, panel, billed):
    a = panel(world.user_a)
    listing = a.get("/billing/invoices").get_data(as_text=True)
    assert "INV-000001" in listing and "86.40 EUR" not in listing  # 60.00 + 20 % = 72.00
    assert "72.00 EUR" in listing
    assert "INV-000001" not in a.get("/billing/invoices?status=paid").get_data(as_text=True)
    detail = a.get(f"/billing/invoices/{billed.id}").get_data(as_text=True)
    assert "Download PDF" in detail and "Download RAW" in detail and "Void" not in detail
    assert panel(world.user_b).get(f"/billing/invoices/{billed.id}").status_code == 404
    pdf = a.get(f"/billing/invoices/{billed.id}/files/PDF")
    assert pdf.status_code == 200, pdf.get_data(as_text=True)[-600:]
    text = PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()
    assert "INV-000001" in text and "€72.00" in text  # Babel, English
    # a customer posting "void" on its own invoice is refused; the operator may
    a.post(f"/billing/invoices/{billed.id}/void")
    assert Invoice.get_by_id(billed.id).status == "issued"
    op = panel(world.operator)
    op.post(f"/billing/invoices/{billed.id}/credit")
    note = Invoice.get(Invoice.kind == "credit_note")
    assert note.total == -7200 and note.credit_for_id == billed.id


def test_bill_runs_page_starts_a_run_and_reports_progress(world, panel):
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan)
    op = panel(world.operator)
    assert "Start bill run" in op.get("/billing/runs").get_data(as_text=True)
    resp = op.post("/billing/runs", data={"date": "2026-02-01"})
    assert resp.status_code == 302 and "watch=" in resp.location
    run = BillRun.select().get()
    for _ in range(200):
        status = op.get(f"/billing/runs/{run.id}.json").get_json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["status"] == "done" and status["created"] == 1
    assert panel(world.user_a).get("/billing/runs").status_code == 403


@pytest.mark.browser
def test_browser_logs_in_and_downloads_the_invoice_pdf(world, billed, live_server, page):
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.user_a.email)
    page.fill("input[name=password]", "secret-pass-1")
    page.click("button[type=submit]")
    page.click("text=Invoices")
    page.click("text=INV-000001")
    with page.expect_download() as info:
        page.click("text=Download PDF")
    download = info.value
    assert download.suggested_filename == "INV-000001.pdf"
    reader = PdfReader(download.path())
    text = reader.pages[0].extract_text()
    assert "INV-000001" in text and "€72.00" in text  # Babel, English
