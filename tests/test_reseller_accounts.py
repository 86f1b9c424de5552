"""reseller_accounts (FT-3001.007): the Reseller account type, its profile, sub-resellers,
privileges, scoping, licence and disable behaviour, the panel pages and the API."""

from __future__ import annotations

import pytest

from tests.conftest import Fresh

PLUGINS = ["invoice_pdf", "reseller_accounts"]
FEATURE = "FT-3001.007"
PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "PDF",
    "customer_billing_cycle_day": 15,
}
EMAIL = {"email": "someone@example.com"}


@pytest.fixture
def app(make_app):
    return make_app(plugins=PLUGINS)


@pytest.fixture
def api(api):
    return lambda user: Fresh(api(user))


@pytest.fixture
def panel(panel):
    return lambda user: Fresh(panel(user))


def host_of(ctx):
    return ctx.extensions["billhive"].host


@pytest.fixture
def enabled(ctx, install_license):
    install_license([FEATURE])
    host_of(ctx).set_enabled("reseller_accounts", True)
    return ctx


def make_reseller(world, name="Reseller One", parent=None, account=None, **profile):
    return world.add_account(
        parent or world.provider, name, "reseller", profile=PROFILE | profile, **(account or {})
    )


# -- the type and its profile ----------------------------------------------------------------


def test_the_reseller_type_is_declared_with_its_profile(enabled):
    from core.panel.jinja import schema_fields

    atype = host_of(enabled).account_types()["reseller"]
    assert (atype.title, atype.level) == ("Reseller", "reseller")
    assert atype.parent_types == ("provider", "reseller")
    assert atype.child_types == ("customer", "reseller")
    described = {f["name"]: f for f in schema_fields(atype.profile_schema)}
    assert described["customer_invoice_creation"]["label"] == "Customer Invoice Creation"
    assert described["customer_invoice_creation"]["kind"] == "checkbox"
    assert described["customer_invoice_type"]["choices"] == [
        ("RAW", "RAW"),
        ("PDF", "PDF"),
        ("BOTH", "Both (RAW & PDF)"),
    ]
    cycle = described["customer_billing_cycle_day"]
    assert cycle["label"] == "Billing Cycle" and cycle["kind"] == "number"
    assert "different from" in cycle["help"]
    assert all(f["required"] for f in described.values())


def test_a_reseller_is_created_through_the_core_api_with_its_profile(enabled, world, api):
    resp = api(world.operator).post(
        "/api/v1/accounts",
        json={
            "name": "Reseller API",
            "type": "reseller",
            "parent_id": world.provider.id,
            "email": "api@reseller.example",
            "bill_cycle_day": 3,
            "profile": {**PROFILE, "customer_billing_cycle_day": "15"},
        },
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["type"] == "reseller" and body["bill_cycle_day"] == 3
    assert body["profile"] == PROFILE


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"customer_billing_cycle_day": 0}, "profile.customer_billing_cycle_day"),
        ({"customer_billing_cycle_day": 29}, "profile.customer_billing_cycle_day"),
        ({"customer_billing_cycle_day": "x"}, "profile.customer_billing_cycle_day"),
        ({"customer_invoice_type": "XML"}, "profile.customer_invoice_type"),
        ({"customer_invoice_creation": "maybe"}, "profile.customer_invoice_creation"),
    ],
)
def test_invalid_profiles_are_refused_with_field_errors(enabled, world, api, change, field):
    resp = api(world.operator).post(
        "/api/v1/accounts",
        json={
            "name": "Bad",
            "type": "reseller",
            "email": "bad@reseller.example",
            "parent_id": world.provider.id,
            "profile": PROFILE | change,
        },
    )
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert list(body["errors"]) == [field]
    assert field in body["message"]


def test_every_profile_field_is_required_on_create(enabled, world):
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        world.add_account(world.provider, "No profile", "reseller")
    assert set(err.value.errors) == {
        "profile.customer_invoice_creation",
        "profile.customer_invoice_type",
        "profile.customer_billing_cycle_day",
    }


def test_a_standard_account_has_no_profile(enabled, world):
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        world.add_account(world.provider, "Std", "customer", profile=PROFILE)
    assert "profile" in err.value.errors


# -- billing cycle ---------------------------------------------------------------------------


def test_customers_follow_the_profile_billing_cycle(enabled, world, api):
    reseller = make_reseller(world, customer_billing_cycle_day=15, account={"bill_cycle_day": 1})
    assert reseller.bill_cycle_day == 1  # the reseller's own cycle may differ
    first = world.add_account(reseller, "C1")
    assert first.bill_cycle_day == 15
    world.add_user(world.provider, "prof@example.com")
    resp = api(world.operator).patch(
        f"/api/v1/resellers/{reseller.id}/profile", json={"customer_billing_cycle_day": 20}
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["customer_billing_cycle_day"] == 20
    first = type(first).get_by_id(first.id)
    assert first.bill_cycle_day == 20
    assert type(reseller).get_by_id(reseller.id).bill_cycle_day == 1


def test_a_cycle_day_other_than_the_profile_is_refused_by_name_not_replaced(enabled, world, api):
    """The API never silently replaces a value it was given: a reseller's customers bill on
    the profile's Billing Cycle, so another day is a 422 naming the field and the reason."""
    from core.models import Account

    reseller = make_reseller(world, customer_billing_cycle_day=15, account={"bill_cycle_day": 1})
    admin = world.add_user(reseller, "cycle@r.example")
    client = api(admin)
    new = {"name": "Own", "type": "customer", "parent_id": reseller.id}
    resp = client.post("/api/v1/accounts", json={**new, "bill_cycle_day": 3})
    assert resp.status_code == 422, resp.get_json()
    message = resp.get_json()["errors"]["bill_cycle_day"][0]
    assert "Bill cycle day is 15 here" in message and "Billing Cycle" in message
    assert not Account.select().where(Account.name == "Own").exists()  # nothing half-written
    resp = client.post("/api/v1/accounts", json={**new, "bill_cycle_day": 15})
    assert resp.status_code == 201 and resp.get_json()["bill_cycle_day"] == 15
    own = Account.get(Account.name == "Own")
    resp = api(world.operator).patch(f"/api/v1/accounts/{own.id}", json={"bill_cycle_day": 20})
    assert resp.status_code == 422 and "bill_cycle_day" in resp.get_json()["errors"]
    assert Account.get_by_id(own.id).bill_cycle_day == 15
    # an edit that repeats the day it has (a whole form sent back) is no change: accepted
    resp = api(world.operator).patch(
        f"/api/v1/accounts/{own.id}", json={"bill_cycle_day": 15, "name": "Own Ltd"}
    )
    assert resp.status_code == 200 and Account.get_by_id(own.id).name == "Own Ltd"


def test_the_core_account_edit_moves_customers_to_a_new_billing_cycle(enabled, world, api, panel):
    from core.models import Account, AuditEntry
    from plugins.reseller_accounts.service.resellers import set_allow_sub_resellers

    set_allow_sub_resellers(None, world.provider, True)
    reseller = make_reseller(world, customer_billing_cycle_day=15, account={"bill_cycle_day": 1})
    first, second = world.add_account(reseller, "C1"), world.add_account(reseller, "C2")
    sub = make_reseller(world, "Sub", parent=reseller, account={"bill_cycle_day": 9})

    def days():
        return {
            a.name: a.bill_cycle_day for a in Account.select().where(Account.parent == reseller)
        }

    assert days() == {"C1": 15, "C2": 15, "Sub": 9}
    # the API's generic PATCH with a profile
    resp = api(world.operator).patch(
        f"/api/v1/accounts/{reseller.id}", json={"profile": {"customer_billing_cycle_day": 20}}
    )
    assert resp.status_code == 200, resp.get_json()
    assert days() == {"C1": 20, "C2": 20, "Sub": 9}  # a sub-reseller keeps its own day
    assert Account.get_by_id(reseller.id).bill_cycle_day == 1
    moved = AuditEntry.select().where(AuditEntry.action == "reseller.customers.cycle")
    assert [e.after["customers_moved"] for e in moved] == [2]
    # an edit that leaves the Billing Cycle alone moves nobody
    Account.update(bill_cycle_day=3).where(Account.id == second.id).execute()
    resp = api(world.operator).patch(f"/api/v1/accounts/{reseller.id}", json={"name": "Renamed"})
    assert resp.status_code == 200 and days()["C2"] == 3
    # the panel's Edit form
    resp = panel(world.operator).post(
        f"/accounts/{reseller.id}/edit",
        data={
            "type": "reseller",
            "name": "Renamed",
            "currency": "EUR",
            "bill_cycle_day": "1",
            "tax_rate": "0",
            "invoice_prefix": "INV-",
            "profile.customer_invoice_creation": "on",
            "profile.customer_invoice_type": "PDF",
            "profile.customer_billing_cycle_day": "7",
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    assert days() == {"C1": 7, "C2": 7, "Sub": 9}
    assert Account.get_by_id(first.id).bill_cycle_day == 7
    assert Account.get_by_id(sub.id).bill_cycle_day == 9


# -- sub-resellers ---------------------------------------------------------------------------


def test_sub_resellers_need_the_provider_setting(enabled, world, api):
    from core.errors import ValidationFailed

    top = make_reseller(world)
    with pytest.raises(ValidationFailed) as err:
        make_reseller(world, "Sub", parent=top)
    assert "sub-resellers are switched off" in err.value.errors["type"][0]

    op = api(world.operator)
    assert op.get("/api/v1/resellers/settings").get_json() == {"allow_sub_resellers": False}
    resp = op.put("/api/v1/resellers/settings", json={"allow_sub_resellers": True})
    assert resp.status_code == 200, resp.get_json()
    sub = make_reseller(world, "Sub", parent=top)
    assert sub.parent_id == top.id
    # a reseller cannot change the provider's setting
    admin = world.add_user(top, "top@example.com")
    resp = api(admin).put("/api/v1/resellers/settings", json={"allow_sub_resellers": False})
    assert resp.status_code == 404


# -- privileges and scoping ------------------------------------------------------------------


def test_privileges_are_declared_at_provider_and_reseller_level(enabled):
    privs = host_of(enabled).privileges()
    for code in ("resellers.view", "resellers.manage", "resellers.profile"):
        assert set(privs[code].levels) == {"provider", "reseller"}


def test_a_resellers_user_gets_404_for_another_resellers_customers(enabled, world, api, panel):
    r1, r2 = make_reseller(world, "R1"), make_reseller(world, "R2")
    c2 = world.add_account(r2, "C2")
    user1 = world.add_user(r1, "r1@example.com")
    client = api(user1)
    assert client.get(f"/api/v1/accounts/{c2.id}").status_code == 404
    assert client.get(f"/api/v1/resellers/{r2.id}").status_code == 404
    assert client.get(f"/api/v1/resellers/{r2.id}/profile").status_code == 404
    resp = client.patch(f"/api/v1/resellers/{r2.id}/profile", json={"customer_invoice_type": "RAW"})
    assert resp.status_code == 404
    assert client.get("/api/v1/resellers").get_json() == []
    web = panel(user1)
    assert web.get(f"/accounts/{c2.id}").status_code == 404
    assert web.get(f"/resellers/{r2.id}").status_code == 404
    assert web.get(f"/resellers/{r2.id}/profile").status_code == 404
    assert web.get(f"/resellers/{r1.id}").status_code == 200


def test_a_reseller_admin_creates_their_own_customer(enabled, world, api):
    r1 = make_reseller(world, "R1")
    admin = world.add_user(r1, "r1@example.com")
    resp = api(admin).post(
        "/api/v1/accounts",
        json={"name": "Own", "type": "customer", "parent_id": r1.id, "email": "o@c.example"},
    )
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["bill_cycle_day"] == 15
    # ...but not a reseller (sub-resellers off) nor a customer elsewhere
    resp = api(admin).post(
        "/api/v1/accounts",
        json={"name": "Sub", "type": "reseller", "parent_id": r1.id, "profile": PROFILE, **EMAIL},
    )
    assert resp.status_code == 422 and "sub-resellers" in resp.get_json()["message"]
    resp = api(admin).post(
        "/api/v1/accounts",
        json={"name": "X", "type": "customer", "parent_id": world.provider.id, **EMAIL},
    )
    assert resp.status_code == 404  # the provider is outside the reseller's subtree


def test_a_reseller_does_not_edit_its_own_profile(enabled, world, api):
    r1 = make_reseller(world, "R1")
    admin = world.add_user(r1, "r1@example.com")
    client = api(admin)
    assert client.get(f"/api/v1/resellers/{r1.id}/profile").get_json() == PROFILE
    resp = client.patch(f"/api/v1/resellers/{r1.id}/profile", json={"customer_invoice_type": "RAW"})
    assert resp.status_code == 403


def test_managing_resellers_needs_the_privileges(enabled, world, api):
    from core import roles

    r1 = make_reseller(world)
    role = roles.create_role(
        None,
        world.provider,
        {
            "name": "Accounts only",
            "description": "no reseller privileges",
            "privileges": ["accounts.view", "accounts.manage"],
        },
    )
    clerk = world.add_user(world.provider, "clerk@example.com", role_code=None, roles=[role])
    client = api(clerk)
    assert client.get("/api/v1/resellers").status_code == 403
    assert client.get(f"/api/v1/resellers/{r1.id}/profile").status_code == 403
    resp = client.patch(f"/api/v1/resellers/{r1.id}/profile", json={"customer_invoice_type": "RAW"})
    assert resp.status_code == 403
    resp = client.post(
        "/api/v1/accounts",
        json={
            "name": "R",
            "type": "reseller",
            "parent_id": world.provider.id,
            "profile": PROFILE,
            **EMAIL,
        },
    )
    assert resp.status_code == 422
    assert "resellers.manage" in resp.get_json()["message"]


def test_profile_patch_validates_each_field(enabled, world, api):
    r1 = make_reseller(world)
    client = api(world.operator)
    for bad, field in (
        ({"customer_billing_cycle_day": 29}, "customer_billing_cycle_day"),
        ({"customer_billing_cycle_day": "x"}, "customer_billing_cycle_day"),
        ({"customer_invoice_type": "XML"}, "customer_invoice_type"),
    ):
        resp = client.patch(f"/api/v1/resellers/{r1.id}/profile", json=bad)
        assert resp.status_code == 422, resp.get_json()
        assert any(field in k for k in resp.get_json()["errors"]), resp.get_json()
    resp = client.patch(
        f"/api/v1/resellers/{r1.id}/profile", json={"customer_invoice_type": "BOTH"}
    )
    assert resp.get_json() == PROFILE | {"customer_invoice_type": "BOTH"}


def test_the_api_is_in_the_openapi_document(enabled):
    spec = enabled.test_client().get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/resellers", "/api/v1/resellers/{account_id}/profile"):
        assert path in spec["paths"], sorted(spec["paths"])
    assert "patch" in spec["paths"]["/api/v1/resellers/{account_id}/profile"]


# -- licence and disable ---------------------------------------------------------------------


def test_enabling_without_a_licence_listing_the_feature_is_refused(ctx, install_license):
    from core.errors import LicenseRequired

    host = host_of(ctx)
    with pytest.raises(LicenseRequired) as err:
        host.set_enabled("reseller_accounts", True)
    assert FEATURE in err.value.message
    install_license(["FT-9999.001"])
    with pytest.raises(LicenseRequired) as err:
        host.set_enabled("reseller_accounts", True)
    assert FEATURE in err.value.message and "does not list it" in err.value.message
    assert not host.is_enabled("reseller_accounts")


def test_licence_expiry_keeps_data_and_refuses_new_resellers(enabled, world, api, install_license):
    r1 = make_reseller(world, "R1")
    c1 = world.add_account(r1, "C1")
    install_license(["FT-9999.001"])  # the new licence no longer lists FT-3001.007
    op = api(world.operator)
    resp = op.post(
        "/api/v1/accounts",
        json={
            "name": "R2",
            "type": "reseller",
            "parent_id": world.provider.id,
            "profile": PROFILE,
            **EMAIL,
        },
    )
    assert resp.status_code == 403
    assert FEATURE in resp.get_json()["message"]
    assert op.get(f"/api/v1/resellers/{r1.id}/profile").get_json() == PROFILE
    assert op.get(f"/api/v1/accounts/{c1.id}").status_code == 200


def test_disabling_keeps_data_readable_and_refuses_creation(enabled, world, api, panel):
    r1 = make_reseller(world, "R1")
    c1 = world.add_account(r1, "C1")
    admin = world.add_user(r1, "r1@example.com")
    host_of(enabled).set_enabled("reseller_accounts", False)
    op = api(world.operator)
    resp = op.post(
        "/api/v1/accounts",
        json={
            "name": "R2",
            "type": "reseller",
            "parent_id": world.provider.id,
            "profile": PROFILE,
            **EMAIL,
        },
    )
    assert resp.status_code == 422 and "disabled" in resp.get_json()["message"]
    # the plugin's routes are gone, the data stays readable through the core
    assert op.get("/api/v1/resellers").status_code == 404
    body = op.get(f"/api/v1/accounts/{r1.id}").get_json()
    assert body["type"] == "reseller" and body["profile"] == PROFILE
    assert api(admin).get(f"/api/v1/accounts/{c1.id}").status_code == 200
    assert panel(world.operator).get(f"/accounts/{r1.id}").status_code == 200
    # re-enabling resumes
    host_of(enabled).set_enabled("reseller_accounts", True)
    assert [r["name"] for r in op.get("/api/v1/resellers").get_json()] == ["R1"]


# -- panel -----------------------------------------------------------------------------------


def test_the_panel_account_form_offers_standard_and_reseller(enabled, world, panel):
    web = panel(world.operator)
    html = web.get(f"/accounts/{world.provider.id}/new").get_data(as_text=True)
    assert ">Standard<" in html and ">Reseller<" in html
    assert "Customer Invoice Creation" in html and "Both (RAW &amp; PDF)" in html
    resp = web.post(
        f"/accounts/{world.provider.id}/new",
        data={
            "type": "reseller",
            "name": "Panel Reseller",
            "currency": "EUR",
            "bill_cycle_day": "1",
            "tax_rate": "0",
            "invoice_prefix": "PR-",
            "profile.customer_invoice_type": "BOTH",
            "profile.customer_billing_cycle_day": "29",
        },
    )
    assert resp.status_code == 422
    assert "profile.customer_billing_cycle_day" in resp.get_data(as_text=True)
    resp = web.post(
        f"/accounts/{world.provider.id}/new",
        data={
            "type": "reseller",
            "name": "Panel Reseller",
            "currency": "EUR",
            "bill_cycle_day": "1",
            "tax_rate": "0",
            "invoice_prefix": "PR-",
            "profile.customer_invoice_creation": "on",
            "profile.customer_invoice_type": "BOTH",
            "profile.customer_billing_cycle_day": "12",
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    from core.models import Account

    made = Account.get(Account.name == "Panel Reseller")
    assert made.profile == {
        "customer_invoice_creation": True,
        "customer_invoice_type": "BOTH",
        "customer_billing_cycle_day": 12,
    }


def test_the_resellers_pages(enabled, world, panel):
    r1 = make_reseller(world, "R1")
    world.add_account(r1, "Customer of R1")
    web = panel(world.operator)
    home = web.get(f"/accounts/{world.provider.id}").get_data(as_text=True)
    assert 'href="/resellers"' in home
    listing = web.get("/resellers").get_data(as_text=True)
    assert "R1" in listing and "Allow resellers to own sub-resellers" in listing
    detail = web.get(f"/resellers/{r1.id}").get_data(as_text=True)
    assert "Customer of R1" in detail and "Billing Cycle" in detail and "Edit profile" in detail
    resp = web.post(
        f"/resellers/{r1.id}/profile",
        data={"profile.customer_invoice_type": "RAW", "profile.customer_billing_cycle_day": "0"},
    )
    assert resp.status_code == 422
    assert "profile.customer_billing_cycle_day" in resp.get_data(as_text=True)
    resp = web.post(
        f"/resellers/{r1.id}/profile",
        data={"profile.customer_invoice_type": "RAW", "profile.customer_billing_cycle_day": "7"},
    )
    assert resp.status_code == 302
    r1 = type(r1).get_by_id(r1.id)
    assert r1.profile == PROFILE | {
        "customer_invoice_creation": False,
        "customer_invoice_type": "RAW",
        "customer_billing_cycle_day": 7,
    }
    assert r1.children.get().bill_cycle_day == 7
    resp = web.post("/resellers/settings", data={"allow_sub_resellers": "on"})
    assert resp.status_code == 302
    assert make_reseller(world, "Sub", parent=r1).parent_id == r1.id


def test_a_reseller_admin_sees_its_own_page_but_cannot_edit_its_profile(enabled, world, panel):
    r1 = make_reseller(world, "R1")
    admin = world.add_user(r1, "r1@example.com")
    web = panel(admin)
    page = web.get(f"/resellers/{r1.id}").get_data(as_text=True)
    assert "Edit profile" not in page
    assert web.get(f"/resellers/{r1.id}/profile").status_code in (403, 404)
    new = web.get(f"/accounts/{r1.id}/new").get_data(as_text=True)
    assert ">Standard<" in new and ">Reseller<" not in new  # sub-resellers are off


def test_the_reseller_page_links_plans_to_wholesale_plans(enabled, world, panel):
    import re

    from plugins.reseller_accounts.models import WholesaleLink
    from tests.billing_support import setup_catalog

    r1, r2 = make_reseller(world, "R1"), make_reseller(world, "R2")
    _, wholesale = setup_catalog(world.provider, price="6.00", rate="0.05", code="W")
    _, dollars = setup_catalog(world.provider, currency="USD", code="USD")
    _, retail = setup_catalog(r1, price="10.00", rate="0.10", code="R")
    _, foreign = setup_catalog(r2, price="9.00", code="R2")
    web = panel(world.operator)
    page = web.get(f"/resellers/{r1.id}").get_data(as_text=True)
    form = re.search(r'<form[^>]*id="wholesale-link-form".*?</form>', page, re.S).group(0)
    assert f'action="/resellers/{r1.id}/wholesale-links"' in form
    assert f'<option value="{retail.id}"' in form and f'<option value="{wholesale.id}"' in form
    assert f'<option value="{foreign.id}"' not in form  # neither R2's plans...
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)

    enabled.config["WTF_CSRF_ENABLED"] = True
    url = f"/resellers/{r1.id}/wholesale-links"
    good = {"retail_plan_id": str(retail.id), "wholesale_plan_id": str(wholesale.id)}
    assert web.post(url, data=good).status_code == 400  # no token
    assert WholesaleLink.select().count() == 0

    def errors_of(data):
        resp = web.post(url, data={**data, "csrf_token": token})
        assert resp.status_code == 422, resp.get_data(as_text=True)
        html = resp.get_data(as_text=True)
        return dict(re.findall(r'class="field-error" data-field="(\w+)">([^<]*)<', html))

    assert set(errors_of({"retail_plan_id": "", "wholesale_plan_id": ""})) == {
        "retail_plan_id",
        "wholesale_plan_id",
    }
    got = errors_of({"retail_plan_id": str(retail.id), "wholesale_plan_id": str(dollars.id)})
    assert list(got) == ["wholesale_plan_id"] and "USD" in got["wholesale_plan_id"]
    got = errors_of({"retail_plan_id": str(retail.id), "wholesale_plan_id": str(foreign.id)})
    assert (
        list(got) == ["wholesale_plan_id"]
        and "does not belong to Provider" in got["wholesale_plan_id"]
    )
    got = errors_of({"retail_plan_id": str(foreign.id), "wholesale_plan_id": str(wholesale.id)})
    assert list(got) == ["retail_plan_id"]  # ...nor, posted, another reseller's plan
    got = errors_of({"retail_plan_id": "x", "wholesale_plan_id": str(10**30)})
    assert set(got) == {"retail_plan_id", "wholesale_plan_id"}
    assert WholesaleLink.select().count() == 0

    resp = web.post(url, data={**good, "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    link = WholesaleLink.get()
    assert (link.retail_plan_id, link.wholesale_plan_id, link.reseller_id) == (
        retail.id,
        wholesale.id,
        r1.id,
    )
    page = web.get(f"/resellers/{r1.id}").get_data(as_text=True)
    assert re.search(r"Standard \(6(\.00)? / 0\.05\)", page), page

    # the reseller's own admin sees its page without the form and cannot post it
    admin = world.add_user(r1, "r1@example.com")
    enabled.config["WTF_CSRF_ENABLED"] = False
    own = panel(admin)
    assert 'id="wholesale-link-form"' not in own.get(f"/resellers/{r1.id}").get_data(as_text=True)
    resp = own.post(
        url, data={"retail_plan_id": str(retail.id), "wholesale_plan_id": str(dollars.id)}
    )
    # the provider's plans are outside its subtree: answered like a missing plan
    assert resp.status_code == 422
    assert f"price plan {dollars.id} not found" in resp.get_data(as_text=True)
    assert WholesaleLink.get().wholesale_plan_id == wholesale.id
