"""Issue 15, Deliver 3 and 4: billing terms belong to the seller, and a used currency is fixed.

Currency, bill cycle day, tax rate, payment terms and the reseller profile are edited only by
users of an account above (``accounts.billing_terms``, which applies strictly below the
holder's account); nobody edits the terms of their own account. An account's currency cannot
change once it has a subscription, invoice, ledger entry or prepaid top-up. The same rules
hold in the API, the panel and the CLI, and nothing is written when they refuse.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from core.models import Account, AuditEntry
from tests.billing_support import setup_catalog, subscribe
from tests.conftest import Fresh

PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "PDF",
    "customer_billing_cycle_day": 15,
}


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts"])


@pytest.fixture
def api(api):
    return lambda user: Fresh(api(user))


@pytest.fixture
def panel(panel):
    return lambda user: Fresh(panel(user))


@pytest.fixture
def resellers(ctx, install_license):
    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    return ctx


def state(account) -> dict:
    """What a user checks: the account as stored, and its payment terms."""
    from core.billing.ledger.payments import settings_of

    fresh = Account.get_by_id(account.id)
    return {
        "name": fresh.name,
        "currency": fresh.currency,
        "bill_cycle_day": fresh.bill_cycle_day,
        "tax_rate": fresh.tax_rate,
        "profile": fresh.profile,
        "payment_terms_days": settings_of(fresh).payment_terms_days,
    }


def audit_count() -> int:
    return AuditEntry.select().count()


def refusals(action: str) -> list[AuditEntry]:
    return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


# -- reproduction 2: a customer changes its own currency ----------------------------------------


def test_a_customer_cannot_change_its_own_currency_or_tax_rate(world, api):
    client = api(world.user_a)
    before, entries = state(world.customer_a), audit_count()
    resp = client.patch(
        f"/api/v1/accounts/{world.customer_a.id}", json={"currency": "JPY", "tax_rate": "7"}
    )
    assert resp.status_code == 403, resp.get_json()
    body = resp.get_json()
    assert set(body["errors"]) == {"currency", "tax_rate"}
    assert "your own account" in body["message"] and "currency" in body["message"]
    assert state(world.customer_a) == before
    # the refused attempt leaves a trace, and nothing else was written
    [refused] = refusals("account.update.refused")
    assert refused.actor_id == world.user_a.id and refused.object_id == str(world.customer_a.id)
    assert refused.after["attempt"] == {"currency": "JPY", "tax_rate": "7"}
    assert audit_count() == entries + 1


def test_the_issue_payload_is_refused_even_with_an_unchanged_tax_rate(world, api):
    before = state(world.customer_a)
    resp = api(world.user_a).patch(
        f"/api/v1/accounts/{world.customer_a.id}", json={"currency": "JPY", "tax_rate": "0"}
    )
    assert resp.status_code == 403
    assert "currency" in resp.get_json()["errors"]
    assert state(world.customer_a) == before


@pytest.mark.parametrize(
    "change",
    [
        {"bill_cycle_day": 15},
        {"tax_rate": "19"},
        {"bill_cycle_day": "3", "name": "X"},
        {"bill_cycle_day": "abc"},  # not the caller's to set at all: refused as such
        {"currency": "XYZ", "name": "X"},
    ],
)
def test_a_customer_cannot_change_its_own_cycle_day_or_tax_rate(world, api, change):
    before = state(world.customer_a)
    resp = api(world.user_a).patch(f"/api/v1/accounts/{world.customer_a.id}", json=change)
    assert resp.status_code == 403, resp.get_json()
    named = set(resp.get_json()["errors"])
    assert named == set(change) - {"name"}
    assert state(world.customer_a) == before  # the name in the same request was not saved


def test_a_customer_still_edits_its_own_name_contacts_and_address(world, api):
    client = api(world.user_a)
    resp = client.patch(
        f"/api/v1/accounts/{world.customer_a.id}",
        json={
            "name": "A Renamed",
            "email": "billing@a.example",
            "address": "1 Main St",
            "currency": "EUR",
            "bill_cycle_day": 1,
            "tax_rate": "0.00",
        },
    )  # fmt: skip  (terms sent back unchanged are no edit)
    assert resp.status_code == 200, resp.get_json()
    fresh = Account.get_by_id(world.customer_a.id)
    assert (fresh.name, fresh.email, fresh.address) == (
        "A Renamed",
        "billing@a.example",
        "1 Main St",
    )
    resp = client.put(
        f"/api/v1/accounts/{world.customer_a.id}/billing-settings",
        json={"contact_name": "Ann", "contact_email": "ann@a.example"},
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["contact_name"] == "Ann"


def test_a_customer_cannot_change_its_own_payment_terms(world, api):
    from core.billing.ledger import payments

    payments.update_settings(None, world.customer_a, {"payment_terms_days": "30"})
    client = api(world.user_a)
    url = f"/api/v1/accounts/{world.customer_a.id}/billing-settings"
    before = state(world.customer_a)
    resp = client.put(url, json={"contact_name": "Ann", "payment_terms_days": 90})
    assert resp.status_code == 403, resp.get_json()
    assert set(resp.get_json()["errors"]) == {"payment_terms_days"}
    assert state(world.customer_a) == before
    assert payments.settings_of(world.customer_a).contact_name == ""
    # leaving the terms out keeps them (they are not reset to the default)
    resp = client.put(url, json={"contact_name": "Ann"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["payment_terms_days"] == 30
    # the operator above sets them
    resp = api(world.operator).put(url, json={"contact_name": "Ann", "payment_terms_days": 45})
    assert resp.status_code == 200, resp.get_json()
    assert state(world.customer_a)["payment_terms_days"] == 45


# -- the currency is fixed once used -----------------------------------------------------------


def test_the_provider_cannot_change_a_used_customers_currency(world, api):
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan)
    client = api(world.operator)
    before, entries = state(world.customer_a), audit_count()
    resp = client.patch(f"/api/v1/accounts/{world.customer_a.id}", json={"currency": "USD"})
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert list(body["errors"]) == ["currency"]
    assert "currency cannot change: the account already has subscriptions" in body["message"]
    assert state(world.customer_a) == before
    [refused] = refusals("account.update.refused")
    assert refused.after["errors"] == body["errors"]
    assert audit_count() == entries + 1
    # the same currency, other letters: no change, no refusal
    resp = client.patch(
        f"/api/v1/accounts/{world.customer_a.id}", json={"currency": "eur", "name": "A2"}
    )
    assert resp.status_code == 200 and resp.get_json()["currency"] == "EUR"


def test_the_provider_changes_an_unused_customers_currency(world, api):
    resp = api(world.operator).patch(
        f"/api/v1/accounts/{world.customer_b.id}", json={"currency": "usd", "tax_rate": "19"}
    )
    assert resp.status_code == 200, resp.get_json()
    assert (resp.get_json()["currency"], resp.get_json()["tax_rate"]) == ("USD", "19")
    assert state(world.customer_b)["currency"] == "USD"


def test_invoices_ledger_entries_and_top_ups_fix_the_currency(world, api):
    from core.billing.ledger import payments
    from core.errors import ValidationFailed

    payments.create_topup(None, world.customer_b, {"amount": "50.00"})
    with pytest.raises(ValidationFailed) as err:
        from core import accounts

        accounts.update_account(None, world.customer_b, {"currency": "GBP"})
    message = err.value.errors["currency"][0]
    assert message.startswith("currency cannot change: the account already has ")
    for reason in ("invoices", "ledger entries", "prepaid top-ups"):
        assert reason in message
    assert state(world.customer_b)["currency"] == "EUR"


# -- the seller edits the terms of accounts below it -------------------------------------------


def test_a_reseller_admin_edits_its_customers_terms(resellers, world, api):
    reseller = world.add_account(world.provider, "Reseller", "reseller", profile=PROFILE)
    admin = world.add_user(reseller, "admin@reseller.example")
    customer = world.add_account(reseller, "Its customer")
    client = api(admin)
    resp = client.patch(
        f"/api/v1/accounts/{customer.id}", json={"bill_cycle_day": 15, "tax_rate": "20"}
    )
    assert resp.status_code == 200, resp.get_json()
    resp = client.put(
        f"/api/v1/accounts/{customer.id}/billing-settings", json={"payment_terms_days": 10}
    )
    assert resp.status_code == 200, resp.get_json()
    assert {
        k: state(customer)[k] for k in ("bill_cycle_day", "tax_rate", "payment_terms_days")
    } == {
        "bill_cycle_day": 15,
        "tax_rate": "20",
        "payment_terms_days": 10,
    }


def test_a_reseller_admin_cannot_edit_its_own_profile_or_terms(resellers, world, api):
    reseller = world.add_account(world.provider, "Reseller", "reseller", profile=PROFILE)
    admin = world.add_user(reseller, "admin@reseller.example")
    client = api(admin)
    before = state(reseller)
    resp = client.patch(
        f"/api/v1/resellers/{reseller.id}/profile", json={"customer_billing_cycle_day": 10}
    )
    assert resp.status_code == 403, resp.get_json()
    assert "profile" in resp.get_json()["errors"]
    resp = client.patch(
        f"/api/v1/accounts/{reseller.id}", json={"profile": {"customer_invoice_type": "RAW"}}
    )
    assert resp.status_code == 403, resp.get_json()
    resp = client.patch(f"/api/v1/accounts/{reseller.id}", json={"bill_cycle_day": 9})
    assert resp.status_code == 403, resp.get_json()
    resp = client.put(
        f"/api/v1/accounts/{reseller.id}/billing-settings", json={"payment_terms_days": 60}
    )
    assert resp.status_code == 403, resp.get_json()
    assert state(reseller) == before
    resp = client.patch(
        f"/api/v1/accounts/{reseller.id}", json={"profile": {"customer_invoice_type": "XML"}}
    )
    assert resp.status_code == 403 and "profile" in resp.get_json()["errors"]
    assert state(reseller) == before
    # its own name is its own, and its profile sent back unchanged is no change
    resp = client.patch(
        f"/api/v1/accounts/{reseller.id}",
        json={"name": "Reseller Ltd", "profile": {"customer_billing_cycle_day": "15"}},
    )
    assert resp.status_code == 200, resp.get_json()
    # the provider above edits the profile
    resp = api(world.operator).patch(
        f"/api/v1/resellers/{reseller.id}/profile", json={"customer_billing_cycle_day": 10}
    )
    assert resp.status_code == 200, resp.get_json()


def test_the_operator_does_not_edit_the_providers_own_terms(world, api):
    resp = api(world.operator).patch(
        f"/api/v1/accounts/{world.provider.id}", json={"tax_rate": "21"}
    )
    assert resp.status_code == 403
    assert list(resp.get_json()["errors"]) == ["tax_rate"]


# -- the privilege -----------------------------------------------------------------------------


def test_full_access_of_providers_and_resellers_holds_the_privilege(resellers, world):
    from core import rbac

    privilege = rbac.host().privileges()["accounts.billing_terms"]
    assert set(privilege.levels) == {"provider", "reseller"}
    reseller = world.add_account(world.provider, "Reseller", "reseller", profile=PROFILE)
    admin = world.add_user(reseller, "admin@reseller.example")
    assert rbac.has(world.operator, "accounts.billing_terms")
    assert rbac.has(admin, "accounts.billing_terms")
    assert not rbac.has(world.user_a, "accounts.billing_terms")


def test_accounts_manage_alone_does_not_edit_terms(world, api):
    from core import roles

    role = roles.create_role(
        None,
        world.provider,
        {"name": "Account clerks", "description": "edit accounts",
         "privileges": ["accounts.view", "accounts.manage"]},
    )  # fmt: skip
    clerk = world.add_user(world.provider, "clerk@example.com", role_code=None, roles=[role])
    client = api(clerk)
    before = state(world.customer_a)
    resp = client.patch(f"/api/v1/accounts/{world.customer_a.id}", json={"bill_cycle_day": 20})
    assert resp.status_code == 403
    assert "accounts.billing_terms" in resp.get_json()["message"]
    assert state(world.customer_a) == before
    resp = client.patch(f"/api/v1/accounts/{world.customer_a.id}", json={"name": "Clerked"})
    assert resp.status_code == 200


def test_the_privilege_follows_the_no_escalation_rules(resellers, world, api):
    from core import roles

    reseller = world.add_account(world.provider, "Reseller", "reseller", profile=PROFILE)
    manager = roles.create_role(
        None,
        reseller,
        {"name": "Role managers", "description": "roles",
         "privileges": ["roles.manage", "accounts.view"]},
    )  # fmt: skip
    user = world.add_user(reseller, "roles@reseller.example", role_code=None, roles=[manager])
    wanted = {"name": "Terms", "description": "x", "privileges": ["accounts.billing_terms"]}
    resp = api(user).post(f"/api/v1/accounts/{reseller.id}/roles", json=wanted)
    assert resp.status_code == 422
    assert "you do not hold it yourself" in resp.get_json()["message"]
    resp = api(world.operator).post(f"/api/v1/accounts/{reseller.id}/roles", json=wanted)
    assert resp.status_code == 201, resp.get_json()
    resp = api(world.operator).post(f"/api/v1/accounts/{world.customer_a.id}/roles", json=wanted)
    assert resp.status_code == 422
    assert "does not exist at the customer level" in resp.get_json()["message"]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [0, 29, "abc", "0", 3.5, True])
def test_a_bad_cycle_day_is_a_422_with_its_label(world, api, day):
    client = api(world.operator)
    before, entries = state(world.customer_b), audit_count()
    resp = client.patch(
        f"/api/v1/accounts/{world.customer_b.id}", json={"bill_cycle_day": day, "name": "Y"}
    )
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert list(body["errors"]) == ["bill_cycle_day"]
    assert "Bill cycle day" in body["errors"]["bill_cycle_day"][0]
    assert "1 to 28" in body["errors"]["bill_cycle_day"][0]
    assert "bill_cycle_day" in body["message"]
    assert state(world.customer_b) == before and audit_count() == entries


def test_the_panel_shows_a_bad_cycle_day_under_its_field(world, panel):
    before = state(world.customer_b)
    resp = panel(world.operator).post(
        f"/accounts/{world.customer_b.id}/edit",
        data={"name": "B", "currency": "EUR", "bill_cycle_day": "29", "tax_rate": "0",
              "invoice_prefix": "INV-"},
    )  # fmt: skip
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    # the summary names the field as the form labels it; the message sits under the field
    assert "Bill cycle day: must be a whole number from 1 to 28" in page
    assert (
        '<div class="field-error" id="e-bill_cycle_day">must be a whole number from 1 to 28</div>'
        in page
    )
    assert "bill_cycle_day must" not in page
    assert state(world.customer_b) == before


# -- the panel ---------------------------------------------------------------------------------


def test_the_panel_shows_own_terms_read_only(world, panel):
    client = panel(world.user_a)
    page = client.get(f"/accounts/{world.customer_a.id}/edit").get_data(as_text=True)
    for name in ("currency", "bill_cycle_day", "tax_rate"):
        assert f'name="{name}"' not in page
    assert "set by Provider" in page and "EUR" in page
    assert 'name="name"' in page and 'name="address"' in page
    resp = client.post(
        f"/accounts/{world.customer_a.id}/edit",
        data={"name": "A via panel", "email": "", "address": "2 Side St",
              "invoice_prefix": "INV-"},
    )  # fmt: skip
    assert resp.status_code == 302, resp.get_data(as_text=True)
    fresh = Account.get_by_id(world.customer_a.id)
    assert (fresh.name, fresh.address) == ("A via panel", "2 Side St")
    # a forged field is refused and shown, nothing saved
    before = state(world.customer_a)
    resp = client.post(
        f"/accounts/{world.customer_a.id}/edit",
        data={"name": "Forged", "currency": "JPY", "invoice_prefix": "INV-"},
    )
    assert resp.status_code == 403 or resp.status_code == 422
    assert "Currency: is set by the account above yours" in resp.get_data(as_text=True)
    assert state(world.customer_a) == before
    # the operator above gets the fields
    page = panel(world.operator).get(f"/accounts/{world.customer_a.id}/edit")
    assert 'name="currency"' in page.get_data(as_text=True)


def test_the_panel_payment_settings_keep_own_terms_read_only(world, panel):
    from core.billing.ledger import payments

    payments.update_settings(None, world.customer_a, {"payment_terms_days": "30"})
    client = panel(world.user_a)
    url = f"/accounts/{world.customer_a.id}/billing/payment-settings"
    page = client.get(url).get_data(as_text=True)
    assert 'name="payment_terms_days"' not in page and "30 days" in page
    resp = client.post(url, data={"contact_name": "Ann", "contact_email": "ann@a.example"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    assert state(world.customer_a)["payment_terms_days"] == 30
    assert payments.settings_of(world.customer_a).contact_name == "Ann"
    page = panel(world.operator).get(url).get_data(as_text=True)
    assert 'name="payment_terms_days"' in page


def test_the_reseller_panel_offers_no_edit_of_its_own_profile(resellers, world, panel):
    reseller = world.add_account(world.provider, "Reseller", "reseller", profile=PROFILE)
    admin = world.add_user(reseller, "admin@reseller.example")
    client = panel(admin)
    page = client.get(f"/resellers/{reseller.id}").get_data(as_text=True)
    assert f"/resellers/{reseller.id}/profile" not in page
    resp = client.post(
        f"/resellers/{reseller.id}/profile",
        data={"profile.customer_invoice_type": "RAW", "profile.customer_billing_cycle_day": "3"},
    )
    assert resp.status_code == 403
    assert state(reseller)["profile"] == PROFILE


# -- the CLI -----------------------------------------------------------------------------------


def test_the_cli_edits_terms_and_refuses_a_used_currency(world, ctx, monkeypatch):
    """The operator's shell is above every account: it edits any account's terms, and the
    currency rule and the field checks hold there too."""
    import hostapp.cli

    monkeypatch.setattr(hostapp.cli, "_app", ctx)
    _, plan = setup_catalog(world.provider)
    subscribe(world.customer_a, plan)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(hostapp.cli.main, ["accounts", "edit", *args])

    result = run(str(world.customer_a.id), "--currency", "USD")
    assert result.exit_code != 0
    assert "currency cannot change: the account already has subscriptions" in result.output
    assert state(world.customer_a)["currency"] == "EUR"
    result = run(str(world.customer_b.id), "--bill-cycle-day", "29", "--name", "B2")
    assert result.exit_code != 0 and "Bill cycle day" in result.output
    assert state(world.customer_b)["name"] == "Customer B"
    result = run(str(world.customer_b.id), "--bill-cycle-day", "12", "--currency", "USD",
                 "--payment-terms-days", "20")  # fmt: skip
    assert result.exit_code == 0, result.output
    after = state(world.customer_b)
    assert (after["bill_cycle_day"], after["currency"], after["payment_terms_days"]) == (
        12,
        "USD",
        20,
    )
    result = run("999999", "--name", "Nobody")
    assert result.exit_code != 0 and "999999" in result.output


def test_the_rule_itself_never_reaches_above_the_caller(world):
    """``require_billing_terms`` is the one check every path calls: above the caller's own
    account it answers 404 like the scoping does, on its own account 403, below it (with the
    privilege) it lets the change through, and the operator's shell (None) may always."""
    from core.accounts import can_edit_billing_terms, require_billing_terms
    from core.errors import Forbidden, NotFound

    with pytest.raises(NotFound):
        require_billing_terms(world.user_a, world.provider, ["currency"])
    with pytest.raises(Forbidden):
        require_billing_terms(world.user_a, world.customer_a, ["currency"], record=False)
    require_billing_terms(world.operator, world.customer_a, ["currency", "bill_cycle_day"])
    require_billing_terms(None, world.provider, ["currency"])
    require_billing_terms(world.user_a, world.customer_a, [])  # nothing changes: nothing to judge
    assert [
        can_edit_billing_terms(u, world.customer_a) for u in (world.operator, world.user_a)
    ] == [
        True,
        False,
    ]
    assert not can_edit_billing_terms(world.user_a, world.provider)
    assert not refusals("account.update.refused")  # record=False writes nothing


def test_a_currency_change_waits_for_a_subscription_being_created(world, api, monkeypatch):
    """The attacker's timing: a subscription is being created (its transaction not committed
    yet) while the operator changes the account's currency. Both take the account's row lock,
    so the change waits, then sees the subscription and is refused; without the lock it would
    find no use of the currency and leave a EUR subscription on a USD account."""
    import threading

    from core import audit

    _, plan = setup_catalog(world.provider, price="10.00")
    customer = world.customer_a
    inside, release = threading.Event(), threading.Event()
    record = audit.record

    def paused(actor, action, *args, **kwargs):
        result = record(actor, action, *args, **kwargs)
        if action == "subscription.create":  # inside the subscription's transaction
            inside.set()
            release.wait(30)
        return result

    monkeypatch.setattr(audit, "record", paused)
    # the plain token clients: each thread's request has its own context (no Fresh needed)
    subscriber, changer = api(world.operator).client, api(world.operator).client
    answers = {}

    def subscribe_it():
        answers["subscription"] = subscriber.post(
            "/api/v1/subscriptions",
            json={"account_id": customer.id, "plan_id": plan.id, "start": "2026-11-01"},
        )

    def change_currency():
        answers["currency"] = changer.patch(
            f"/api/v1/accounts/{customer.id}", json={"currency": "USD"}
        )

    first = threading.Thread(target=subscribe_it)
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=change_currency)
    second.start()
    second.join(0.5)  # unguarded, the change would have answered by now
    release.set()
    first.join(30)
    second.join(30)
    assert answers["subscription"].status_code == 201, answers["subscription"].get_json()
    refused = answers["currency"]
    assert refused.status_code == 422, refused.get_json()
    assert "subscriptions" in refused.get_json()["errors"]["currency"][0]
    assert Account.get_by_id(customer.id).currency == "EUR"
