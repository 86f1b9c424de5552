"""Input hardening of the REST API (issue 16, items 7-9): one set of shared field types bounds
every amount, quantity, id and text; a body that is not JSON is refused with 415 on every write
operation; errors name the field; the OpenAPI document says what the API requires.

Each test reproduces what a careless or hostile client did, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from core.billing.models import Invoice, InvoiceLine, PricePlan, Product, Subscription, UsageRecord
from core.billing.runs import engine
from core.fields import MAX_PRICE, MAX_QUANTITY
from core.models import Account, Role, User
from tests.billing_support import set_tax, setup_catalog, subscribe
from tests.conftest import BUILTIN_PLUGINS

HUGE = "99999999999999999999"  # 10**20 - 1: beyond any 64-bit amount in minor units
PAN = "4111 1111 1111 1111"  # a test Visa number: passes Luhn
NOT_PAN = "4111 1111 1111 1112"  # the same digits failing Luhn: an ordinary number
PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "BOTH",
    "customer_billing_cycle_day": 1,
}


def _counts():
    return tuple(
        m.select().count()
        for m in (Account, User, Role, Product, PricePlan, Subscription, UsageRecord, Invoice,
                  InvoiceLine)
    )  # fmt: skip


def _refused(resp, field, status=422):
    body = resp.get_json()
    assert resp.status_code == status, (resp.status_code, body)
    assert set(body) == {"code", "message", "errors"}, body
    assert field in body["errors"], body
    assert field in body["message"], body
    return body


@pytest.fixture
def enabled(ctx, install_license):
    install_license(["FT-3001.007", "BH-UNITS", "BH-PSA"])
    host = ctx.extensions["billhive"].host
    for name in BUILTIN_PLUGINS:
        host.set_enabled(name, True)
    return host


# -- 415: a body that is not JSON ------------------------------------------------------------


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_write_operation_of_the_document_refuses_a_body_that_is_not_json(world, api, enabled):
    client = api(world.operator)
    doc = client.get("/api/v1/openapi.json").get_json()
    before = _counts()
    tried = []
    for path, item in doc["paths"].items():
        for method in ("post", "put", "patch", "delete"):
            if method not in item:
                continue
            url = _fill(path)
            for kwargs in (
                {"data": '{"name": "x"}', "content_type": "text/plain"},
                {"data": {"name": "x"}},  # a form body
            ):
                resp = getattr(client, method)(url, **kwargs)
                body = resp.get_json()
                assert resp.status_code == 415, (method, url, kwargs, resp.status_code, body)
                assert set(body) == {"code", "message", "errors"}
                assert body["code"] == "unsupported_media_type"
                assert "Content-Type" in body["errors"] and "application/json" in body["message"]
            tried.append((method, path))
            assert item[method]["responses"]["415"] == {
                "$ref": "#/components/responses/UNSUPPORTED_MEDIA_TYPE"
            }, (method, path)
    assert _counts() == before
    # the document's write operations of the core, billing and every plugin were all tried
    assert len(tried) > 40
    for expected in [("patch", "/api/v1/accounts/{account_id}"),
                     ("put", "/api/v1/accounts/{account_id}/billing-settings"),
                     ("patch", "/api/v1/roles/{role_id}"),
                     ("patch", "/api/v1/billing-units/{unit_id}"),
                     ("post", "/api/v1/invoices")]:  # fmt: skip
        assert expected in tried, sorted(tried)


def test_patch_with_a_text_body_changes_nothing_and_says_why(world, api):
    client = api(world.operator)
    url = f"/api/v1/accounts/{world.customer_a.id}"
    resp = client.patch(url, data='{"name": "Renamed"}', content_type="text/plain")
    assert resp.status_code == 415
    assert Account.get_by_id(world.customer_a.id).name == "Customer A"
    # the same change as JSON (a charset parameter is fine) is applied
    resp = client.patch(url, data='{"name": "Renamed"}',
                        content_type="application/json; charset=utf-8")  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
    assert Account.get_by_id(world.customer_a.id).name == "Renamed"


def test_write_operations_without_a_body_still_work(world, api):
    client = api(world.operator)
    role = client.post(f"/api/v1/accounts/{world.customer_a.id}/roles",
                       json={"name": "Viewer", "description": "reads"}).get_json()  # fmt: skip
    assert client.post(f"/api/v1/roles/{role['id']}/clone").status_code == 201
    assert client.delete(f"/api/v1/roles/{role['id']}").status_code == 204


# -- amounts and quantities bounded by what can be stored and billed --------------------------


def _draft(client, account, lines):
    return client.post("/api/v1/invoices", json={"account_id": account.id, "lines": lines})


def test_a_huge_unit_price_on_a_draft_line_is_a_422_naming_the_field(world, api):
    client = api(world.operator)
    before = _counts()
    resp = _draft(client, world.customer_a, [{"description": "x", "unit_price": HUGE}])
    _refused(resp, "lines.0.unit_price")
    resp = _draft(client, world.customer_a,
                  [{"description": "x", "unit_price": "1", "quantity": HUGE}])  # fmt: skip
    _refused(resp, "lines.0.quantity")
    assert _counts() == before


def test_lines_that_sum_past_the_limit_are_a_422_naming_lines(world, api):
    client = api(world.operator)
    top = {"description": "x", "quantity": str(MAX_QUANTITY), "unit_price": str(MAX_PRICE)}
    before = _counts()
    _refused(_draft(client, world.customer_a, [top, top]), "lines")
    assert _counts() == before
    # one such line is the largest invoice there is: it is stored and totalled exactly
    resp = _draft(client, world.customer_a, [top])
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["subtotal_minor"] == int(MAX_QUANTITY * MAX_PRICE * 100)


@pytest.mark.parametrize("method", ["patch", "put"])
def test_replacing_draft_lines_with_huge_values_is_a_422(world, api, method):
    client = api(world.operator)
    draft = _draft(client, world.customer_a,
                   [{"description": "x", "unit_price": "5"}]).get_json()  # fmt: skip
    url = f"/api/v1/invoices/{draft['id']}"
    call = getattr(client, method)
    _refused(call(url, json={"lines": [{"description": "x", "unit_price": HUGE}]}),
             "lines.0.unit_price")  # fmt: skip
    top = {"description": "x", "quantity": str(MAX_QUANTITY), "unit_price": str(MAX_PRICE)}
    _refused(call(url, json={"lines": [top, top]}), "lines")
    assert client.get(url).get_json()["total_minor"] == 500  # unchanged


@pytest.mark.parametrize(
    "url,payload,field",
    [
        ("/api/v1/plans", {"recurring_price": HUGE}, "recurring_price"),
        ("/api/v1/plans", {"usage_rate": HUGE}, "usage_rate"),
        ("/api/v1/plans", {"tiers": [["10", "1"], [None, HUGE]]}, "tiers"),
        ("/api/v1/plans", {"tiers": [[HUGE, "1"], [None, "1"]]}, "tiers"),
        ("/api/v1/subscriptions", {"quantity": HUGE}, "quantity"),
        ("/api/v1/usage", {"quantity": HUGE}, "quantity"),
    ],
)
def test_catalog_values_that_would_break_every_bill_run_are_refused(world, api, url, payload,
                                                                      field):  # fmt: skip
    product, plan = setup_catalog(world.provider)
    sub = subscribe(world.customer_a, plan)
    base = {
        "/api/v1/plans": {"product_id": product.id, "name": "Big", "currency": "EUR"},
        "/api/v1/subscriptions": {"account_id": world.customer_a.id, "plan_id": plan.id,
                                  "start": "2026-01-01"},
        "/api/v1/usage": {"subscription_id": sub.id, "date": "2026-01-05", "external_id": "u1"},
    }[url]  # fmt: skip
    before = _counts()
    resp = api(world.operator).post(url, json={**base, **payload})
    assert resp.status_code == 422, resp.get_json()
    assert field in str(resp.get_json()["errors"]) and field in resp.get_json()["message"]
    assert _counts() == before
    summary = engine.run(date(2026, 2, 1))
    assert summary["failures"] == [] and summary["invoices_created"] == 1, summary


def test_the_largest_accepted_values_bill_in_the_currency_with_most_decimals(world, api):
    """CLF has 4 decimals: the worst case for minor units. A plan at the largest price and
    usage rate, a subscription and a usage record at the largest quantity, 100 % tax: the
    bill run invoices them exactly."""
    client = api(world.operator)
    set_tax(world.provider, "100")
    big = world.add_account(world.provider, "Big Co", currency="CLF")
    product = client.post("/api/v1/products", json={"code": "BIG", "name": "Big", "unit": "u"})
    price, quantity = str(MAX_PRICE), str(MAX_QUANTITY)
    plan = client.post(
        "/api/v1/plans",
        json={
            "product_id": product.get_json()["id"],
            "name": "Top",
            "currency": "CLF",
            "recurring_price": price,
            "usage_rate": price,
        },
    )
    assert plan.status_code == 201, plan.get_json()
    sub = client.post(
        "/api/v1/subscriptions",
        json={
            "account_id": big.id,
            "plan_id": plan.get_json()["id"],
            "start": "2026-01-01",
            "quantity": quantity,
        },
    )
    assert sub.status_code == 201, sub.get_json()
    used = client.post("/api/v1/usage", json={"subscription_id": sub.get_json()["id"],
                                              "quantity": quantity, "date": "2026-01-05",
                                              "external_id": "max"})  # fmt: skip
    assert used.status_code == 201, used.get_json()
    over = client.post(
        "/api/v1/usage",
        json={
            "subscription_id": sub.get_json()["id"],
            "quantity": str(MAX_QUANTITY + 1),
            "date": "2026-01-06",
            "external_id": "over",
        },
    )
    _refused(over, "quantity")
    summary = engine.run(date(2026, 2, 1))
    assert summary["failures"] == [], summary
    invoice = Invoice.get(Invoice.account == big.id)
    line_minor = int(MAX_QUANTITY * MAX_PRICE * 10**4)
    assert invoice.subtotal == 2 * line_minor and invoice.total == 4 * line_minor


def test_payment_and_topup_amounts_are_bounded(world, api):
    client = api(world.operator)
    url = f"/api/v1/accounts/{world.customer_a.id}"
    _refused(client.post(url + "/payments", json={"amount": HUGE}), "amount")
    _refused(client.post(url + "/prepaid-topups", json={"amount": HUGE}), "amount")


# -- ids ------------------------------------------------------------------------------------------


def test_an_id_beyond_64_bits_is_refused_naming_its_field(world, api):
    client = api(world.operator)
    resp = client.post("/api/v1/accounts",
                       json={"name": "X", "type": "customer", "parent_id": 10**20})  # fmt: skip
    body = _refused(resp, "parent_id")
    assert "_schema" not in body["errors"]
    _refused(client.post("/api/v1/users", json={"email": "n@example.com", "password":
                                                "long-enough-pass-1", "account_id": 10**20}),
             "account_id")  # fmt: skip
    _refused(_draft(client, Account(id=10**20), [{"description": "x", "unit_price": "1"}]),
             "account_id")  # fmt: skip


# -- text: NUL and control characters, lengths, card numbers ---------------------------------


def _text_cases(world):
    return [
        ("post", "/api/v1/accounts",
         {"name": "{}", "type": "customer", "parent_id": world.provider.id}, "name"),
        ("post", "/api/v1/accounts",
         {"name": "Ok", "type": "customer", "parent_id": world.provider.id, "address": "{}"},
         "address"),
        ("patch", f"/api/v1/accounts/{world.customer_a.id}", {"name": "{}"}, "name"),
        ("post", "/api/v1/users",
         {"email": "t@example.com", "password": "long-enough-pass-1",
          "account_id": world.customer_a.id, "name": "{}"}, "name"),
        ("post", f"/api/v1/accounts/{world.customer_a.id}/roles",
         {"name": "{}", "description": "d"}, "name"),
        ("post", "/api/v1/products", {"code": "P1", "name": "{}"}, "name"),
        ("post", "/api/v1/invoices",
         {"account_id": world.customer_a.id,
          "lines": [{"description": "{}", "unit_price": "1"}]}, "lines.0.description"),
        ("put", f"/api/v1/accounts/{world.customer_a.id}/billing-settings",
         {"contact_name": "{}"}, "contact_name"),
    ]  # fmt: skip


def _fill_json(payload, text):
    return {
        k: (v.replace("{}", text) if isinstance(v, str) else
            [{**line, "description": text} for line in v] if k == "lines" else v)
        for k, v in payload.items()
    }  # fmt: skip


@pytest.mark.parametrize(
    "text,why",
    [
        ("Acme\x00Ltd", "NUL"),
        ("Acme\x1b[31mLtd", "escape"),
        ("Acme\x7fLtd", "DEL"),
        ("x" * 2001, "too long"),
        (PAN, "card number"),
        ("Paid with 4111-1111-1111-1111 on Monday", "card number with dashes"),
    ],
)
def test_free_text_refuses_control_characters_overlong_text_and_card_numbers(world, api, text,
                                                                            why):  # fmt: skip
    client = api(world.operator)
    before = _counts()
    for method, url, payload, field in _text_cases(world):
        resp = getattr(client, method)(url, json=_fill_json(payload, text))
        body = _refused(resp, field)
        if "card" in why:
            assert "card number" in body["message"]
    assert _counts() == before
    assert Account.get_by_id(world.customer_a.id).name == "Customer A"


def test_ordinary_text_is_stored_as_given(world, api):
    client = api(world.operator)
    text = f"Zürich Straße 7 — Büro 2\nRef {NOT_PAN}\tTel 0044 20 7946 0000 ✓"
    resp = client.post("/api/v1/accounts", json={"name": "Ørsted A/S", "type": "customer",
                                                 "parent_id": world.provider.id,
                                                 "address": text})  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    assert Account.get_by_id(resp.get_json()["id"]).address == text


def test_a_nul_in_a_query_string_or_path_is_not_a_500(world, api):
    client = api(world.operator)
    assert client.get("/api/v1/invoices?status=issued%00").status_code == 422
    assert client.delete("/api/v1/tokens/bh_%00abc").status_code in (404, 422)


# -- the OpenAPI document says what the API requires -----------------------------------------


def _request_schema(doc, path, method):
    body = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    ref = body.get("$ref", "")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else body


def test_the_openapi_document_says_what_account_creation_requires(world, api):
    doc = api(world.operator).get("/api/v1/openapi.json").get_json()
    account = _request_schema(doc, "/api/v1/accounts", "post")
    assert set(account["required"]) == {"name", "type", "parent_id"}
    assert account["properties"]["name"]["maxLength"] == 200
    assert account["properties"]["parent_id"]["maximum"] == 2**63 - 1
    line = doc["components"]["schemas"]["LineIn"]
    assert "unit_price" in line["required"] and line["properties"]["unit_price"]["type"] == "string"
    # the documented request bodies of payments and usage exist and name their required fields
    usage = _request_schema(doc, "/api/v1/usage", "post")
    assert usage["oneOf"][0]["required"] == ["subscription_id", "quantity", "date",
                                             "external_id"]  # fmt: skip
