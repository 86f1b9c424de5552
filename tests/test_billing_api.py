"""The billing API: catalog, subscriptions, usage, invoices (immutable once issued, gap-free
numbers, credit notes, downloads checked with pypdf), bill runs; bad input -> 422 naming the
field with nothing written; other tenants' invoices -> 404."""

from __future__ import annotations

import io
import time
from datetime import date

import pytest
from pypdf import PdfReader

from core.billing.invoicing import raw
from core.billing.models import (
    ImmutableInvoice,
    Invoice,
    InvoiceLine,
    PricePlan,
    Subscription,
    UsageRecord,
)
from core.billing.runs import engine
from core.models import Account
from tests.billing_support import set_tax, setup_catalog, subscribe


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"])


@pytest.fixture
def billed(world, ctx):
    """Customer A billed for January 2026: 2 seats x 30.00 + 20 % tax = 72.00 EUR."""
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)
    set_tax(world.provider, "20")
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan, quantity="2")
    subscribe(world.customer_b, plan, quantity="1")
    summary = engine.run(date(2026, 2, 1))
    assert summary["invoices_created"] == 2
    return Invoice.get(Invoice.account == world.customer_a.id)


def test_catalog_through_the_api(world, api):
    op = api(world.operator)
    resp = op.post("/api/v1/products", json={"code": "VM", "name": "Virtual machine",
                                             "unit": "vm", "kind": "recurring"})  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    product = resp.get_json()
    resp = op.post("/api/v1/plans", json={"product_id": product["id"], "name": "Small",
                                          "currency": "EUR", "recurring_price": "9.99",
                                          "tiers": [[10, "1"], [None, "0.5"]]})  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    plan = resp.get_json()
    assert plan["recurring_price"] == "9.99" and plan["tiers"] == [["10", "1"], [None, "0.5"]]
    resp = op.post("/api/v1/subscriptions", json={"account_id": world.customer_a.id,
                                                  "plan_id": plan["id"], "quantity": "3",
                                                  "start": "2026-01-15"})  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    assert [p["code"] for p in op.get("/api/v1/products").get_json()] == ["VM"]
    customer = api(world.user_a)
    assert customer.get("/api/v1/products").status_code == 403  # no catalog privilege
    assert customer.post("/api/v1/products", json={"code": "X", "name": "X"}).status_code == 403
    assert [s["id"] for s in customer.get("/api/v1/subscriptions").get_json()] == [
        resp.get_json()["id"]
    ]
    assert api(world.user_b).get("/api/v1/subscriptions").get_json() == []


@pytest.mark.parametrize(
    "url,payload,field",
    [
        ("/api/v1/plans", {"name": "P", "currency": "XYZ"}, "currency"),
        ("/api/v1/plans", {"name": "P", "currency": "EUR", "recurring_price": "abc"},
         "recurring_price"),
        ("/api/v1/plans", {"name": "P", "currency": "EUR", "tiers": [[10, "1"]]}, "tiers"),
        ("/api/v1/subscriptions", {"quantity": "-1"}, "quantity"),
        ("/api/v1/subscriptions", {"start": "2026-02-30"}, "start"),
        ("/api/v1/subscriptions", {"start": "01/02/2026"}, "start"),
        ("/api/v1/subscriptions", {"plan_id": "USD"}, "plan_id"),
        ("/api/v1/usage", {"quantity": "-5"}, "quantity"),
        ("/api/v1/usage", {"subscription_id": 424242}, "subscription_id"),
        ("/api/v1/usage", {"date": "2026-1-5"}, "date"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field_and_writes_nothing(world, api, url, payload, field):
    product, plan = setup_catalog(world.provider)
    sub = subscribe(world.customer_a, plan)
    before = (PricePlan.select().count(), Subscription.select().count(),
              UsageRecord.select().count())  # fmt: skip
    base = {
        "/api/v1/plans": {"product_id": product.id},
        "/api/v1/subscriptions": {"account_id": world.customer_a.id, "plan_id": plan.id,
                                  "start": "2026-01-01"},
        "/api/v1/usage": {"subscription_id": sub.id, "quantity": "1", "date": "2026-01-05",
                          "external_id": "x1"},
    }[url]  # fmt: skip
    if payload.get("plan_id") == "USD":
        _, usd_plan = setup_catalog(world.provider, currency="USD", code="USDHOST")
        payload = {"plan_id": usd_plan.id}
        before = (before[0] + 1, *before[1:])
    resp = api(world.operator).post(url, json={**base, **payload})
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert field in body["errors"] and field in body["message"], body
    after = (PricePlan.select().count(), Subscription.select().count(),
             UsageRecord.select().count())  # fmt: skip
    assert after == before


def test_usage_one_or_many_idempotent_by_external_id(world, api):
    _, plan = setup_catalog(world.provider)
    sub = subscribe(world.customer_a, plan)
    op = api(world.operator)
    one = {"subscription_id": sub.id, "quantity": "1.5", "date": "2026-01-02",
           "external_id": "a"}  # fmt: skip
    assert op.post("/api/v1/usage", json=one).get_json() == {"inserted": 1, "duplicates": 0}
    many = [one, {**one, "external_id": "b"}, {**one, "external_id": "c"}]
    assert op.post("/api/v1/usage", json=many).get_json() == {"inserted": 2, "duplicates": 1}
    bad = [{**one, "external_id": "d"}, {**one, "external_id": "e", "quantity": "x"}]
    resp = op.post("/api/v1/usage", json=bad)
    assert resp.status_code == 422 and "1" in resp.get_json()["errors"]
    assert UsageRecord.select().count() == 3
    # the customer cannot post usage for its own subscription (the seller records usage)
    assert api(world.user_a).post("/api/v1/usage", json={**one, "external_id": "z"}).status_code \
        in (403,)  # fmt: skip


def test_invoices_are_scoped_to_the_callers_subtree(world, api, billed):
    a, b = api(world.user_a), api(world.user_b)
    assert [i["id"] for i in a.get("/api/v1/invoices").get_json()] == [billed.id]
    assert b.get(f"/api/v1/invoices/{billed.id}").status_code == 404
    assert b.get(f"/api/v1/invoices/{billed.id}/files/RAW").status_code == 404
    op = api(world.operator)
    assert len(op.get("/api/v1/invoices").get_json()) == 2
    assert len(op.get(f"/api/v1/invoices?account_id={world.customer_a.id}").get_json()) == 1
    assert len(op.get("/api/v1/invoices?period=2026-01-01&status=issued").get_json()) == 2
    assert op.get("/api/v1/invoices?period=2026-13-01").status_code == 422
    detail = a.get(f"/api/v1/invoices/{billed.id}").get_json()
    assert detail["total_minor"] == 7200 and detail["total"] == "72.00 EUR"
    assert [line["amount_minor"] for line in detail["lines"]] == [6000]


def test_raw_and_pdf_downloads(world, api, billed):
    a = api(world.user_a)
    resp = a.get(f"/api/v1/invoices/{billed.id}/files/RAW")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    header, lines = raw.parse(resp.data)
    assert header["number"] == "INV-000001" and header["total"] == "72.00"
    assert header["subtotal"] == "60.00" and header["tax"] == "12.00"
    assert [line["amount_minor"] for line in lines] == ["6000"]
    resp = a.get(f"/api/v1/invoices/{billed.id}/files/pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(resp.data)).pages)
    assert "INV-000001" in text and "€72.00" in text  # Babel, English
    assert a.get(f"/api/v1/invoices/{billed.id}/files/UBL").status_code == 404


def test_a_lost_file_is_rendered_again_on_download(world, api, billed, ctx):
    from pathlib import Path

    from core.billing.models import InvoiceFile

    record = InvoiceFile.get(invoice=billed.id, format="RAW")
    path = Path(ctx.config["STORAGE_DIR"]) / record.path
    path.unlink()
    resp = api(world.user_a).get(f"/api/v1/invoices/{billed.id}/files/RAW")
    assert resp.status_code == 200 and b"INV-000001" in resp.data and path.exists()


def test_an_issued_invoice_cannot_be_changed(world, api, billed):
    op = api(world.operator)
    resp = op.patch(f"/api/v1/invoices/{billed.id}",
                    json={"lines": [{"description": "x", "unit_price": "1"}]})  # fmt: skip
    assert resp.status_code == 409, resp.get_json()
    assert op.delete(f"/api/v1/invoices/{billed.id}").status_code == 409
    assert op.post(f"/api/v1/invoices/{billed.id}/issue").status_code == 409
    inv = Invoice.get_by_id(billed.id)
    inv.total = 1
    with pytest.raises(ImmutableInvoice):
        inv.save()
    line = InvoiceLine.get(InvoiceLine.invoice == billed.id)
    line.amount = 1
    with pytest.raises(ImmutableInvoice):
        line.save()
    with pytest.raises(ImmutableInvoice):
        line.delete_instance()
    with pytest.raises(ImmutableInvoice):
        Invoice.get_by_id(billed.id).delete_instance()
    fresh = Invoice.get_by_id(billed.id)
    assert fresh.total == 7200 and InvoiceLine.get_by_id(line.id).amount == 6000
    # a customer cannot void or pay its own invoice: only the issuer can
    assert api(world.user_a).post(f"/api/v1/invoices/{billed.id}/void").status_code == 403


def test_lifecycle_gap_free_numbers_and_credit_notes(world, api, billed):
    op = api(world.operator)
    resp = op.post("/api/v1/invoices", json={"account_id": world.customer_a.id, "lines": [
        {"description": "Setup", "quantity": "3", "unit_price": "0.335"},
        {"description": "Cable", "quantity": "1", "unit_price": "10"}]})  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    draft = resp.get_json()
    assert draft["number"] is None and draft["status"] == "draft"
    assert [line["amount_minor"] for line in draft["lines"]] == [101, 1000]  # 1.005 -> 1.01
    empty = op.post("/api/v1/invoices", json={"account_id": world.customer_a.id, "lines": []})
    assert op.post(f"/api/v1/invoices/{empty.get_json()['id']}/issue").status_code == 422
    resp = op.post(f"/api/v1/invoices/{draft['id']}/issue")
    assert resp.status_code == 200
    issued = resp.get_json()
    # bill run took 000001 and 000002; the failed issue above consumed nothing
    assert issued["number"] == "INV-000003" and issued["total_minor"] == round(1101 * 1.2)
    resp = op.post(f"/api/v1/invoices/{issued['id']}/credit-note", json={"positions": [2]})
    assert resp.status_code == 201, resp.get_json()
    note = resp.get_json()
    assert note["kind"] == "credit_note" and note["credit_for_id"] == issued["id"]
    assert note["number"] == "INV-CN000001"
    assert [line["amount_minor"] for line in note["lines"]] == [-1000]
    assert note["total_minor"] == -1200
    again = op.post(f"/api/v1/invoices/{issued['id']}/credit-note", json={"positions": [2]})
    assert again.status_code == 409
    assert op.post(f"/api/v1/invoices/{billed.id}/pay").get_json()["status"] == "paid"
    assert op.post(f"/api/v1/invoices/{billed.id}/void").status_code == 409
    assert op.post(f"/api/v1/invoices/{issued['id']}/void").get_json()["status"] == "void"
    numbers = sorted(i.number for i in Invoice.select().where(Invoice.kind == "invoice")
                     if i.number)  # fmt: skip
    assert numbers == ["INV-000001", "INV-000002", "INV-000003"]
    from core.models import AuditEntry

    actions = {e.action for e in AuditEntry.select()}
    assert {"invoice.issue", "credit_note.issue", "invoice.pay", "invoice.void"} <= actions


def test_bill_run_through_the_api(world, api):
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan)
    op = api(world.operator)
    assert op.post("/api/v1/bill-runs", json={"date": "2026-02-31"}).status_code == 422
    assert api(world.user_a).post("/api/v1/bill-runs", json={"date": "2026-02-01"}).status_code \
        == 403  # fmt: skip
    resp = op.post("/api/v1/bill-runs", json={"date": "2026-02-01"})
    assert resp.status_code == 202, resp.get_json()
    run_id = resp.get_json()["id"]
    for _ in range(200):
        run = op.get(f"/api/v1/bill-runs/{run_id}").get_json()
        if run["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    # every account below the provider is visited (customers A and B); one has something to bill
    assert run["status"] == "done" and run["created"] == 1 and run["done"] == run["total"] == 2
    assert Invoice.select().count() == 1


def test_plan_of_another_currency_is_refused_at_subscription_time(world):
    from core.billing import catalog
    from core.errors import ValidationFailed

    Account.update(currency="JPY").where(Account.id == world.customer_b.id).execute()
    _, plan = setup_catalog(world.provider, currency="EUR")
    with pytest.raises(ValidationFailed) as err:
        catalog.create_subscription(None, {"account_id": world.customer_b.id,
                                           "plan_id": plan.id, "start": "2026-01-01"})  # fmt: skip
    assert "plan_id" in err.value.errors and "JPY" in err.value.message
    assert Subscription.select().count() == 0
