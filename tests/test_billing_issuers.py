"""Who invoices: the plan owner issues (a seller bills its own customers on its own prefix and
tax rate); an issuer whose account type's plugin is disabled or unlicensed is skipped with a
reason naming plugin and feature; ``invoice_options`` can refuse or pick formats."""

from __future__ import annotations

from datetime import date

import pytest

from core.billing.models import Invoice, InvoiceFile
from core.billing.runs import engine
from core.registry import InvoiceOptions
from tests.billing_support import setup_catalog, subscribe
from tests.plugins import billing_charges, billing_seller

MODULES = {"billing_seller": "tests.plugins.billing_seller",
           "billing_charges": "tests.plugins.billing_charges"}  # fmt: skip


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf"], modules=MODULES)


@pytest.fixture
def seller_world(world, ctx, install_license):
    host = ctx.extensions["billhive"].host
    install_license(["FT-TEST.SELL"])
    host.set_enabled("billing_seller", True)
    billing_seller.OPTIONS = None
    billing_charges.MODE = billing_charges.SINCE = None
    seller = world.add_account(world.provider, "Seller", "seller", invoice_prefix="S-",
                               tax_rate="10")  # fmt: skip
    retail = world.add_account(seller, "Retail customer")
    _, plan = setup_catalog(seller, price="50.00", code="RETAIL")
    subscribe(retail, plan)
    yield seller, retail
    billing_seller.OPTIONS = billing_charges.SINCE = None


def test_the_plan_owner_invoices_on_its_prefix_and_tax_rate(seller_world):
    seller, retail = seller_world
    summary = engine.run(date(2026, 2, 1))
    assert summary["invoices_created"] == 1, summary
    inv = Invoice.get(Invoice.account == retail.id)
    assert inv.issuer_id == seller.id and inv.number == "S-000001"
    assert (inv.subtotal, inv.tax, inv.total) == (5000, 500, 5500)


def test_plugin_charges_go_to_the_parents_invoice(seller_world, ctx):
    seller, retail = seller_world
    ctx.extensions["billhive"].host.set_enabled("billing_charges", True)
    engine.run(date(2026, 2, 1))
    inv = Invoice.get(Invoice.account == retail.id)
    assert [(line.description, line.amount, line.group) for line in inv.lines] == [
        ("Hosting — Standard", 5000, None),
        ("Support", 500, "Services"),
    ]


def test_a_plugin_charging_for_earlier_days_gets_the_account_billed_from_then(
    seller_world, world, ctx
):
    """An account created today, with no subscription: a plugin answering charges_since
    2026-01-01 has its charges billed for January and February; an answer that is not a
    date is reported in the run's failures and bills nothing earlier."""
    seller, _ = seller_world
    ctx.extensions["billhive"].host.set_enabled("billing_charges", True)
    quiet = world.add_account(seller, "Quiet")
    billing_charges.SINCE = "2026-01-01"
    summary = engine.run(date(2026, 3, 1))
    assert {"account_id": quiet.id, "account": "Quiet", "period": None,
            "error": "ChargeError: charges_since answered '2026-01-01', not a date"} in summary["failures"]  # fmt: skip
    assert not Invoice.select().where(Invoice.account == quiet.id).exists()
    billing_charges.SINCE = date(2026, 1, 1)
    summary = engine.run(date(2026, 3, 1))
    billed = Invoice.select().where(Invoice.account == quiet.id).order_by(Invoice.period_start)
    assert [(i.period_start, i.issuer_id, i.total) for i in billed] == [
        (date(2026, 1, 1), seller.id, 550),
        (date(2026, 2, 1), seller.id, 550),
    ]


def test_a_plugin_failing_on_charges_since_is_reported_and_the_run_goes_on(
    seller_world, world, ctx
):
    """A plugin raising in charges_since is a failure of that account on the run (named, with
    the error), not of the run: the other accounts are billed, and the account still gets its
    own invoices."""
    seller, retail = seller_world
    ctx.extensions["billhive"].host.set_enabled("billing_charges", True)
    billing_charges.SINCE = RuntimeError("ledger offline")
    summary = engine.run(date(2026, 2, 1))
    errors = {(f["account_id"], f["error"]) for f in summary["failures"]}
    assert (retail.id, "ChargeError: charges_since failed: RuntimeError: ledger offline") in errors
    assert (seller.id, "ChargeError: charges_since failed: RuntimeError: ledger offline") in errors
    billed = Invoice.get(Invoice.account == retail.id)
    assert billed.issuer_id == seller.id
    assert ("Hosting — Standard", 5000) in [
        (line.description, line.amount) for line in billed.lines
    ]


def test_issuer_of_a_disabled_plugin_is_skipped_with_the_reason(seller_world, ctx):
    seller, retail = seller_world
    ctx.extensions["billhive"].host.set_enabled("billing_seller", False)
    summary = engine.run(date(2026, 2, 1))
    assert summary["invoices_created"] == 0
    (skip,) = summary["invoices_skipped"]
    assert "billing_seller" in skip["reason"] and "disabled" in skip["reason"]
    assert Invoice.select().count() == 0


def test_issuer_of_an_unlicensed_plugin_is_skipped_naming_the_feature(seller_world,
                                                                     install_license):  # fmt: skip
    install_license(["SOMETHING-ELSE"])  # replaces the licence: the feature is gone
    summary = engine.run(date(2026, 2, 1))
    (skip,) = summary["invoices_skipped"]
    assert "FT-TEST.SELL" in skip["reason"] and "billing_seller" in skip["reason"]
    assert Invoice.select().count() == 0


def test_invoice_options_can_refuse_or_choose_formats(seller_world, ctx):
    seller, retail = seller_world
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)
    billing_seller.OPTIONS = InvoiceOptions(create=False, skip_reason="seller invoices itself")
    summary = engine.run(date(2026, 2, 1))
    assert [s["reason"] for s in summary["invoices_skipped"]] == ["seller invoices itself"]
    billing_seller.OPTIONS = InvoiceOptions(formats=("RAW",))
    summary = engine.run(date(2026, 2, 1))
    assert summary["invoices_created"] == 1
    inv = Invoice.get(Invoice.account == retail.id)
    assert [f.format for f in InvoiceFile.select().where(InvoiceFile.invoice == inv.id)] == ["RAW"]


def test_a_render_failure_keeps_the_invoice_and_renders_on_download(seller_world, world, api):
    seller, retail = seller_world
    billing_seller.FAIL_RENDER = True
    try:
        summary = engine.run(date(2026, 2, 1))
        assert summary["invoices_created"] == 1 and not summary["failures"]
        assert "renderer out of ink" in summary["render_errors"][0]
        inv = Invoice.get(Invoice.account == retail.id)
        assert inv.status == "issued"
        assert {f.format for f in InvoiceFile.select()} == {"RAW"}
        op = api(world.operator)
        resp = op.get(f"/api/v1/invoices/{inv.id}/files/FLAKY")
        assert resp.status_code == 503 and "out of ink" in resp.get_json()["message"]
    finally:
        billing_seller.FAIL_RENDER = False
    resp = op.get(f"/api/v1/invoices/{inv.id}/files/FLAKY")
    assert resp.status_code == 200 and resp.data == b"FLAKY S-000001 55.00 EUR"
    assert {f.format for f in InvoiceFile.select()} == {"RAW", "FLAKY"}


def test_openapi_lists_the_billing_endpoints(ctx):
    paths = ctx.test_client().get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/products", "/api/v1/plans", "/api/v1/subscriptions", "/api/v1/usage",
                 "/api/v1/invoices", "/api/v1/invoices/{invoice_id}/files/{fmt}",
                 "/api/v1/invoices/{invoice_id}/credit-note", "/api/v1/bill-runs",
                 "/api/v1/bill-runs/{run_id}"):  # fmt: skip
        assert path in paths, path
