"""Issue 16 item 6: an Idempotency-Key belongs to (caller, account, method, path). Another
caller, or the same caller on another account or route, never gets someone else's answer."""

from __future__ import annotations

from datetime import date

import pytest

from core.billing.invoicing import lifecycle
from core.billing.models import IdempotencyKey, Payment

app = pytest.fixture(lambda make_app: make_app(plugins=[]), name="app")


def url(account, tail):
    return f"/api/v1/accounts/{account.id}/{tail}"


def issue_invoice(world, account, amount):
    draft = lifecycle.create_draft(None, account, world.provider,
                                   [{"description": "Service", "unit_price": amount}])  # fmt: skip
    return lifecycle.issue(draft)


BODY = {"amount": "10.00", "reference": "bank 77", "date": date.today().isoformat()}


def test_a_customer_refused_without_the_key_is_refused_with_it(world, api):
    """The reproduction: the operator records a payment with key K; the customer, refused
    (403) without the key, must not get 201 Idempotent-Replayed with it."""
    a = world.customer_a
    issue_invoice(world, a, "30.00")
    first = api(world.operator).post(
        url(a, "payments"), json=BODY, headers={"Idempotency-Key": "K"}
    )
    assert first.status_code == 201
    customer = api(world.user_a)
    without = customer.post(url(a, "payments"), json=BODY)
    assert without.status_code == 403, without.get_json()
    with_key = customer.post(url(a, "payments"), json=BODY, headers={"Idempotency-Key": "K"})
    assert with_key.status_code == 403, with_key.get_json()
    assert "Idempotent-Replayed" not in with_key.headers
    assert "allocations" not in with_key.get_json()  # nothing of the operator's answer
    assert Payment.select().count() == 1


def test_another_caller_with_the_same_key_gets_its_own_answer(world, api):
    a = world.customer_a
    second_operator = world.add_user(world.provider, "op2@example.com")
    headers = {"Idempotency-Key": "shared-key"}
    first = api(world.operator).post(url(a, "payments"), json=BODY, headers=headers)
    other = api(second_operator).post(url(a, "payments"), json=BODY, headers=headers)
    assert first.status_code == other.status_code == 201
    assert "Idempotent-Replayed" not in other.headers
    assert other.get_json()["id"] != first.get_json()["id"]
    # another body under the same key is that caller's own business, not a conflict
    third = api(second_operator).post(url(a, "payments"), json={**BODY, "amount": "2.00"},
                                      headers={"Idempotency-Key": "k2"})  # fmt: skip
    assert third.status_code == 201
    assert Payment.select().count() == 3
    # each caller still gets its own replay
    again = api(world.operator).post(url(a, "payments"), json=BODY, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert Payment.select().count() == 3


def test_the_same_key_on_another_route_is_another_key(world, api):
    a = world.customer_a
    op = api(world.operator)
    headers = {"Idempotency-Key": "route-key"}
    pay = op.post(url(a, "payments"), json={"amount": "30.00"}, headers=headers)
    assert pay.status_code == 201
    refund = op.post(url(a, "refunds"), json={"amount": "5.00", "payment_id": pay.get_json()["id"]},
                     headers=headers)  # fmt: skip
    assert refund.status_code == 201, refund.get_json()
    assert "Idempotent-Replayed" not in refund.headers
    assert refund.get_json()["id"] != pay.get_json()["id"]
    assert IdempotencyKey.select().count() == 2


def test_the_stored_key_names_no_caller_in_clear_and_the_scope_is_in_its_digest(world, api):
    from core.billing.ledger.payments import idempotency_scope

    a = world.customer_a
    op = api(world.operator)
    assert (
        op.post(url(a, "payments"), json=BODY, headers={"Idempotency-Key": "K"}).status_code == 201
    )
    row = IdempotencyKey.get()
    assert row.account_id == a.id
    assert row.key == idempotency_scope(
        world.operator, "POST", f"/api/v1/accounts/{a.id}/payments", "K"
    )
    assert row.key != idempotency_scope(
        world.user_a, "POST", f"/api/v1/accounts/{a.id}/payments", "K"
    )
