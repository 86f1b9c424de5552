"""The Billing page's API: payments with Idempotency-Key (same key and body -> the first answer,
one payment; another body -> refused; two concurrent requests -> one payment), card numbers
refused, other tenants' accounts 404, statements (opening/closing across periods, CSV, PDF
checked with pypdf; no PDF while invoice_pdf is disabled) and activity reports (per month and
product, per child account, CSV), all in the OpenAPI document."""

from __future__ import annotations

import io
import threading
from datetime import date, timedelta

import pytest
from pypdf import PdfReader

from core import roles
from core.billing.invoicing import lifecycle
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments
from core.billing.models import IdempotencyKey, Invoice, Payment, PaymentMethod
from core.billing.runs import engine
from tests.billing_support import setup_catalog, subscribe, usage

app = pytest.fixture(lambda make_app: make_app(plugins=["invoice_pdf"]), name="app")

TODAY = date.today()


@pytest.fixture
def pdf_on(ctx):
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)


def issue_invoice(world, account, amount):
    draft = lifecycle.create_draft(None, account, world.provider,
                                   [{"description": "Service", "unit_price": amount}])  # fmt: skip
    return lifecycle.issue(draft)


def url(account, tail):
    return f"/api/v1/accounts/{account.id}/{tail}"


# -- payments and idempotency ----------------------------------------------------------------


def test_payment_through_the_api_allocates_and_reports_the_balance(world, api):
    a = world.customer_a
    old = issue_invoice(world, a, "30.00")
    new = issue_invoice(world, a, "50.00")
    op = api(world.operator)
    resp = op.post(url(a, "payments"), json={"amount": "40.00", "reference": "TRX-1"})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["amount_minor"] == 4000 and body["payee_id"] == world.provider.id
    assert [(x["number"], x["amount"]) for x in body["allocations"]] == [(old.number, 3000),
                                                                         (new.number, 1000)]  # fmt: skip
    assert Invoice.get_by_id(old.id).status == "paid"
    balance = api(world.user_a).get(url(a, "balance")).get_json()
    assert balance["balances"] == [{
        "currency": "EUR", "balance_minor": 4000, "balance": "40.00 EUR",
        "amount_due_minor": 4000, "prepaid_credit_minor": 0, "prepaid_credit": "0.00 EUR",
        "unallocated_credit_minor": 0, "open_invoices": 1}]  # fmt: skip
    entries = api(world.user_a).get(url(a, "ledger")).get_json()
    assert [e["kind"] for e in entries] == ["payment", "invoice", "invoice"]
    assert sum(e["amount_minor"] for e in entries) == 4000
    open_ = api(world.user_a).get(url(a, "open-invoices")).get_json()
    assert [(i["number"], i["amount_due_minor"], i["overdue"]) for i in open_] == [
        (new.number, 4000, False)
    ]
    # bad input is named, nothing written
    resp = op.post(url(a, "payments"), json={"amount": "1.00", "reference": "4242424242424242"})
    assert resp.status_code == 422 and "reference" in resp.get_json()["errors"]
    resp = op.post(url(a, "payments"), json={"amount": "abc"})
    assert resp.status_code == 422 and "amount" in resp.get_json()["errors"]
    assert Payment.select().count() == 1


def test_same_key_and_body_returns_the_first_answer_and_records_once(world, api):
    a = world.customer_a
    issue_invoice(world, a, "30.00")
    op = api(world.operator)
    body = {"amount": "10.00", "reference": "bank 77", "date": TODAY.isoformat()}
    first = op.post(url(a, "payments"), json=body, headers={"Idempotency-Key": "pay-77"})
    assert first.status_code == 201, first.get_json()
    again = op.post(
        url(a, "payments"), json=dict(reversed(body.items())), headers={"Idempotency-Key": "pay-77"}
    )  # same body, other key order
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert Payment.select().count() == 1 and ledger.balance(a, "EUR") == 2000
    # the same key on another account is another key
    other = op.post(url(world.customer_b, "payments"), json=body,
                    headers={"Idempotency-Key": "pay-77"})  # fmt: skip
    assert other.status_code == 201 and Payment.select().count() == 2


def test_same_key_with_another_body_is_refused(world, api):
    a = world.customer_a
    op = api(world.operator)
    headers = {"Idempotency-Key": "k-1"}
    assert op.post(url(a, "payments"), json={"amount": "10.00"}, headers=headers).status_code == 201
    resp = op.post(url(a, "payments"), json={"amount": "11.00"}, headers=headers)
    assert resp.status_code == 422
    assert "already used with a different request" in resp.get_json()["message"]
    assert "Idempotency-Key" in resp.get_json()["errors"]
    assert Payment.select().count() == 1
    # a replay answers only a user who may record payments
    role = roles.create_role(None, world.customer_a, {"name": "Viewer", "description": "v",
                                                      "privileges": ["billing.view"]})  # fmt: skip
    viewer = world.add_user(world.customer_a, "viewer@a.example", role_code=None, roles=[role])
    resp = api(viewer).post(url(a, "payments"), json={"amount": "10.00"}, headers=headers)
    assert resp.status_code == 403


def test_a_failed_request_stores_no_key(world, api):
    a = world.customer_a
    op = api(world.operator)
    headers = {"Idempotency-Key": "k-2"}
    assert op.post(url(a, "payments"), json={"amount": "-1"}, headers=headers).status_code == 422
    assert not IdempotencyKey.select().exists()
    resp = op.post(url(a, "payments"), json={"amount": "1.00"}, headers=headers)
    assert resp.status_code == 201
    bad = op.post(url(a, "payments"), json={"amount": "1.00"}, headers={"Idempotency-Key": "a b"})
    assert bad.status_code == 422 and "Idempotency-Key" in bad.get_json()["errors"]


def test_two_concurrent_requests_with_one_key_record_one_payment(world, api):
    a = world.customer_a
    issue_invoice(world, a, "100.00")
    clients = [api(world.operator), api(world.operator)]
    barrier = threading.Barrier(2)
    answers = []

    def send(client):
        barrier.wait()
        resp = client.post(url(a, "payments"), json={"amount": "25.00"},
                           headers={"Idempotency-Key": "race-1"})  # fmt: skip
        answers.append((resp.status_code, resp.get_json()))

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [status for status, _ in answers] == [201, 201], answers
    assert answers[0][1] == answers[1][1]
    assert Payment.select().count() == 1
    assert ledger.balance(a, "EUR") == 7500


def test_refunds_and_reversals_through_the_api(world, api):
    a = world.customer_a
    op = api(world.operator)
    payment = op.post(url(a, "payments"), json={"amount": "30.00"}).get_json()
    resp = op.post(url(a, "refunds"), json={"amount": "40.00"})
    assert resp.status_code == 422 and "only 30.00 EUR" in resp.get_json()["message"]
    refund = op.post(url(a, "refunds"), json={"amount": "10.00"},
                     headers={"Idempotency-Key": "r-1"})  # fmt: skip
    assert refund.status_code == 201 and refund.get_json()["kind"] == "refund"
    assert ledger.balance(a, "EUR") == -2000
    resp = op.post(url(a, f"ledger/{refund.get_json()['ledger_entry_id']}/reverse"),
                   json={"memo": "refund bounced"})  # fmt: skip
    assert resp.status_code == 201 and resp.get_json()["amount_minor"] == -1000
    assert ledger.balance(a, "EUR") == -3000
    customer = api(world.user_a)
    resp = customer.post(url(a, f"ledger/{payment['ledger_entry_id']}/reverse"), json={})
    assert resp.status_code == 403  # the seller corrects its own entries


def test_prepaid_topup_through_the_api(world, api):
    a = world.customer_a
    op = api(world.operator)
    resp = op.post(url(a, "prepaid-topups"), json={"amount": "50.00"})
    assert resp.status_code == 201, resp.get_json()
    topup = resp.get_json()
    assert topup["total_minor"] == 5000 and topup["status"] == "issued"
    op.post(url(a, "payments"), json={"amount": "50.00"})
    prepaid = api(world.user_a).get(url(a, "prepaid")).get_json()
    assert prepaid["credit"] == [{"seller_id": world.provider.id, "currency": "EUR",
                                  "available_minor": 5000, "available": "50.00 EUR"}]  # fmt: skip
    assert [t["number"] for t in prepaid["topups"]] == [topup["number"]]
    assert api(world.user_a).post(url(a, "prepaid-topups"),
                                  json={"amount": "5.00"}).status_code == 403  # fmt: skip


# -- settings and payment methods ------------------------------------------------------------


def test_payment_settings_and_methods(world, api):
    a = world.customer_a
    customer = api(world.user_a)
    contacts = {"contact_name": "Ann Payer", "contact_email": "ann@a.example",
                "invoice_email": "invoices@a.example"}  # fmt: skip
    resp = customer.put(url(a, "billing-settings"), json=contacts)
    assert resp.status_code == 200, resp.get_json()
    assert customer.get(url(a, "billing-settings")).get_json()["invoice_email"] == (
        "invoices@a.example"
    )
    # payment terms are the seller's: the customer cannot set its own, the operator above can
    resp = customer.put(url(a, "billing-settings"), json=contacts | {"payment_terms_days": 21})
    assert resp.status_code == 403 and "payment_terms_days" in resp.get_json()["errors"]
    operator = api(world.operator)
    resp = operator.put(url(a, "billing-settings"), json=contacts | {"payment_terms_days": 21})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["effective_terms_days"] == 21
    resp = operator.put(url(a, "billing-settings"), json={"payment_terms_days": "soon"})
    assert resp.status_code == 422 and "payment_terms_days" in resp.get_json()["errors"]
    resp = customer.post(
        url(a, "payment-methods"),
        json={"type": "card", "description": "Visa ending 4242, expires 12/28"},
    )
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["is_default"] is True
    method_id = resp.get_json()["id"]
    assert [m["description"] for m in customer.get(url(a, "payment-methods")).get_json()] == [
        "Visa ending 4242, expires 12/28"
    ]
    assert customer.delete(url(a, f"payment-methods/{method_id}")).status_code == 204
    assert not PaymentMethod.select().exists()


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "my card 4111 1111 1111 1111 exp 12/28",
        "5555-5555-5555-4444",
        "378282246310005",
    ],  # fmt: skip
)
def test_a_card_number_is_refused(world, api, text):
    a = world.customer_a
    resp = api(world.user_a).post(url(a, "payment-methods"),
                                  json={"type": "card", "description": text})  # fmt: skip
    assert resp.status_code == 422
    body = resp.get_json()
    assert "card number" in body["message"] and "PCI DSS" in body["message"]
    assert "description" in body["errors"]
    assert not PaymentMethod.select().exists()
    assert text not in resp.get_data(as_text=True)


def test_pan_detection_spares_ordinary_numbers():
    assert payments.looks_like_pan("4242 4242 4242 4242")
    assert not payments.looks_like_pan("Visa ending 4242, expires 12/28")
    assert not payments.looks_like_pan("4242424242424241")  # Luhn fails
    assert not payments.looks_like_pan("IBAN DE89 3704 0044 0532 0130 00")  # 20 digits
    assert not payments.looks_like_pan("order 123456789012")  # 12 digits


# -- tenancy ---------------------------------------------------------------------------------


def test_accounts_outside_the_subtree_answer_404(world, api):
    a = world.customer_a
    other = api(world.user_b)
    for tail in ("balance", "ledger", "payments", "prepaid", "billing-settings",
                 "payment-methods", "open-invoices", "statement", "activity"):  # fmt: skip
        assert other.get(url(a, tail)).status_code == 404, tail
    assert other.post(url(a, "payments"), json={"amount": "1.00"}).status_code == 404
    assert other.post(url(a, "payment-methods"),
                      json={"type": "card", "description": "x"}).status_code == 404  # fmt: skip
    payment = api(world.operator).post(url(a, "payments"), json={"amount": "1.00"}).get_json()
    assert other.get(url(world.customer_b, f"payments/{payment['id']}")).status_code == 404


def test_openapi_lists_the_billing_page_resources(ctx):
    spec = ctx.test_client().get("/api/v1/openapi.json").get_json()
    for path in ("balance", "ledger", "payments", "refunds", "prepaid-topups", "statement",
                 "statement.csv", "statement.pdf", "activity", "activity.csv",
                 "payment-methods", "billing-settings"):  # fmt: skip
        assert f"/api/v1/accounts/{{account_id}}/{path}" in spec["paths"], path
    params = spec["paths"]["/api/v1/accounts/{account_id}/payments"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" for p in params)
    csv_doc = spec["paths"]["/api/v1/accounts/{account_id}/statement.csv"]["get"]
    assert "text/csv" in csv_doc["responses"]["200"]["content"]


# -- statements ------------------------------------------------------------------------------


def statement(client, account, start, end, fmt="json"):
    name = "statement" if fmt == "json" else f"statement.{fmt}"
    return client.get(url(account, f"{name}?from={start}&to={end}"))


def test_statement_balances_across_periods_csv_and_pdf(world, api, pdf_on):
    a = world.customer_a
    op = api(world.operator)
    p1 = (TODAY - timedelta(days=60), TODAY - timedelta(days=31))
    p2 = (TODAY - timedelta(days=30), TODAY)
    op.post(url(a, "payments"), json={"amount": "50.00", "reference": "early",
                                      "date": (TODAY - timedelta(days=45)).isoformat()})  # fmt: skip
    op.post(url(a, "payments"), json={"amount": "20.00", "reference": "later",
                                      "date": (TODAY - timedelta(days=10)).isoformat()})  # fmt: skip
    inv = issue_invoice(world, a, "120.00")
    client = api(world.user_a)
    first = statement(client, a, *p1).get_json()["currencies"][0]
    second = statement(client, a, *p2).get_json()["currencies"][0]
    assert (first["opening_minor"], first["closing_minor"]) == (0, -5000)
    assert second["opening_minor"] == first["closing_minor"]
    assert [line["type"] for line in second["lines"]] == ["Payment", "Invoice"]
    assert [line["balance_minor"] for line in second["lines"]] == [-7000, 5000]
    assert second["closing_minor"] == 5000 == ledger.balance(a, "EUR")
    whole = statement(client, a, p1[0], p2[1]).get_json()["currencies"][0]
    assert whole["opening_minor"] == 0 and whole["closing_minor"] == 5000
    assert len(whole["lines"]) == 3

    resp = statement(client, a, *p2, fmt="csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = resp.get_data(as_text=True).splitlines()
    assert rows[0] == "currency,date,type,reference,description,debit,credit,balance"
    assert rows[1] == f"EUR,{p2[0].isoformat()},Opening balance,,,,,-50.00"
    assert rows[-1] == f"EUR,{p2[1].isoformat()},Closing balance,,,,,50.00"
    assert f"EUR,{TODAY.isoformat()},Invoice,{inv.number}" in rows[3]

    resp = statement(client, a, *p2, fmt="pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(resp.data)).pages)
    assert "STATEMENT OF ACCOUNT" in text and "Customer A" in text
    assert "Opening balance" in text and "-50.00" in text
    assert "Closing balance" in text and inv.number in text and "later" in text
    bad = statement(client, a, p2[1], p2[0])
    assert bad.status_code == 422 and "to" in bad.get_json()["errors"]
    bad = client.get(url(a, "statement?currency=XYZ"))
    assert bad.status_code == 422 and "currency" in bad.get_json()["errors"]
    usd = client.get(url(a, "statement?currency=usd")).get_json()["currencies"]
    assert [(c["currency"], c["lines"]) for c in usd] == [("USD", [])]


def test_no_statement_pdf_while_invoice_pdf_is_disabled(world, api):
    resp = statement(api(world.user_a), world.customer_a, TODAY, TODAY, fmt="pdf")
    assert resp.status_code == 404
    assert "invoice_pdf" in resp.get_json()["message"]


# -- activity reports ------------------------------------------------------------------------


def test_activity_report_by_month_and_product_and_per_child(world, api):
    a, b = world.customer_a, world.customer_b
    _, plan = setup_catalog(world.provider, price="10.00", rate="0.50", kind="recurring")
    sub_a = subscribe(a, plan, start="2026-01-01")
    sub_b = subscribe(b, plan, start="2026-02-01", quantity="2")
    usage(sub_a, "4", "2026-01-10", "a1")
    usage(sub_a, "6", "2026-02-03", "a2")
    usage(sub_b, "1.5", "2026-02-20", "b1")
    engine.run(date(2026, 3, 1))
    report = api(world.user_a).get(url(a, "activity?from=2026-01&to=2026-03")).get_json()
    assert report["months"] == ["2026-01", "2026-02", "2026-03"]
    assert [(r["month"], r["product"], r["usage"], r["charges_minor"]) for r in report["rows"]] == [
        ("2026-01", "HOST", "4", 1200),  # 10.00 + 4 x 0.50
        ("2026-02", "HOST", "6", 1300),
    ]
    assert report["by_month"]["EUR"] == [
        {"month": "2026-01", "charges_minor": 1200, "charges": "12.00 EUR"},
        {"month": "2026-02", "charges_minor": 1300, "charges": "13.00 EUR"},
        {"month": "2026-03", "charges_minor": 0, "charges": "0.00 EUR"},
    ]
    assert report["children"] == []  # a customer has no child accounts view
    provider = api(world.operator).get(url(world.provider, "activity?from=2026-01&to=2026-03"))
    children = {c["account"]: c for c in provider.get_json()["children"]}
    assert children["Customer A"]["totals"][0]["charges_minor"] == 2500
    assert children["Customer B"]["totals"][0]["charges_minor"] == 2075  # 20.00 + 0.75
    assert [(r["month"], r["usage"]) for r in children["Customer B"]["rows"]] == [
        ("2026-02", "1.5")
    ]
    csv_text = (
        api(world.operator)
        .get(url(world.provider, "activity.csv?from=2026-01&to=2026-03"))
        .get_data(as_text=True)
    )
    lines = csv_text.splitlines()
    assert lines[0] == "account_id,account,month,product,product_name,unit,usage,currency,charges"
    assert f"{b.id},Customer B,2026-02,HOST,Hosting,seat,1.5,EUR,20.75" in lines
    bad = api(world.user_a).get(url(a, "activity?from=2026-13"))
    assert bad.status_code == 422 and "from" in bad.get_json()["errors"]
