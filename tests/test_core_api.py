"""The REST API of the core: accounts, users, roles, tokens, errors and the OpenAPI document."""

from __future__ import annotations

import pytest

from core.models import Account, AuditEntry, Role, User
from tests.conftest import PASSWORD, World

NOTES = {"notes": "tests.plugins.notes"}


@pytest.fixture
def app(make_app):
    """The core alone: it must work without any add-on."""
    return make_app(plugins=[])


def _counts():
    return (Account.select().count(), User.select().count(), AuditEntry.select().count())


def test_an_operator_creates_a_standard_customer_account(world, api):
    client = api(world.operator)
    resp = client.post(
        "/api/v1/accounts",
        json={"name": "Fabrikam", "type": "customer", "parent_id": world.provider.id,
              "currency": "usd", "bill_cycle_day": 28, "tax_rate": "19.5"},
    )  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["type"] == "customer" and body["parent_id"] == world.provider.id
    assert body["currency"] == "USD" and body["bill_cycle_day"] == 28
    roles = client.get(f"/api/v1/accounts/{body['id']}/roles").get_json()
    assert [r["name"] for r in roles if r["default"]] == ["Full Access"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"type": "planet"}, "type"),
        ({"bill_cycle_day": 0}, "bill_cycle_day"),
        ({"bill_cycle_day": 29}, "bill_cycle_day"),
        ({"bill_cycle_day": "abc"}, "bill_cycle_day"),
        ({"currency": "XYZ"}, "currency"),
        ({"tax_rate": "lots"}, "tax_rate"),
        ({"email": "not-an-email"}, "email"),
        ({"parent_id": 999999}, "parent_id"),
    ],
)
def test_bad_account_input_is_a_422_naming_the_field_and_writes_nothing(world, api, change, field):
    client = api(world.operator)
    payload = {"name": "X", "type": "customer", "parent_id": world.provider.id} | change
    payload = {k: v for k, v in payload.items() if v is not None}
    before = _counts()
    resp = client.post("/api/v1/accounts", json=payload)
    body = resp.get_json()
    assert set(body) == {"code", "message", "errors"}
    if field == "parent_id":  # a parent you cannot see does not exist for you
        assert resp.status_code == 404 and "999999" in body["message"]
    else:
        assert resp.status_code == 422, body
        assert field in body["errors"], body
        assert field in body["message"]
    assert _counts() == before


def test_a_plugin_account_type_validates_its_profile_on_create_and_update(make_app):
    app = make_app(plugins=[], modules=NOTES)
    db = app.extensions["billhive"].database
    with app.app_context(), db.connection_context():
        world = World()
        app.extensions["billhive"].host.set_enabled("notes", True)
        op = world.operator
    client = app.test_client()
    token = client.post("/api/v1/tokens", json={"email": op.email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.get_json()['token']}"}
    base = {"name": "Agency One", "type": "agency", "parent_id": world.provider.id}
    with app.app_context(), db.connection_context():
        before = _counts()
    bad = client.post(
        "/api/v1/accounts", json=base | {"profile": {"agency_code": "lowercase"}}, headers=headers
    )
    assert bad.status_code == 422
    assert "profile.agency_code" in bad.get_json()["errors"]
    missing = client.post("/api/v1/accounts", json=base, headers=headers)
    assert missing.status_code == 422
    assert "profile.agency_code" in missing.get_json()["errors"]
    with app.app_context(), db.connection_context():
        assert _counts() == before

    good = client.post(
        "/api/v1/accounts", json=base | {"profile": {"agency_code": "AGY"}}, headers=headers
    )
    assert good.status_code == 201, good.get_json()
    agency = good.get_json()
    assert agency["profile"] == {"agency_code": "AGY", "discount_percent": 0}
    roles = client.get(f"/api/v1/accounts/{agency['id']}/roles", headers=headers).get_json()
    assert {r["name"] for r in roles if r["default"]} == {
        "Full Access",
        "Customer Full Access",
        "Service Desk Only",
    }

    url = f"/api/v1/accounts/{agency['id']}"
    bad_patch = client.patch(url, json={"profile": {"discount_percent": 90}}, headers=headers)
    assert bad_patch.status_code == 422
    assert "profile.discount_percent" in bad_patch.get_json()["errors"]
    ok = client.patch(url, json={"profile": {"discount_percent": 10}}, headers=headers)
    assert ok.status_code == 200
    assert ok.get_json()["profile"] == {"agency_code": "AGY", "discount_percent": 10}

    # a customer (no profile schema) refuses a profile
    resp = client.post(
        "/api/v1/accounts",
        json={"name": "C", "type": "customer", "parent_id": agency["id"], "profile": {"x": 1}},
        headers=headers,
    )
    assert resp.status_code == 422 and "profile" in resp.get_json()["errors"]


def test_default_roles_exist_for_provider_and_customer(world, api):
    client = api(world.operator)
    provider_roles = client.get(f"/api/v1/accounts/{world.provider.id}/roles").get_json()
    assert [r["name"] for r in provider_roles if r["default"]] == ["Full Access"]
    full = next(r for r in provider_roles if r["name"] == "Full Access")
    assert {"plugins.manage", "licenses.manage", "audit.view"} <= set(full["privileges"])
    customer_roles = client.get(f"/api/v1/accounts/{world.customer_a.id}/roles").get_json()
    assert [r["name"] for r in customer_roles if r["default"]] == ["Full Access"]
    assert "plugins.manage" not in customer_roles[0]["privileges"]


def test_users_are_created_and_a_duplicate_email_is_a_409(world, api):
    client = api(world.operator)
    payload = {"email": "New.User@Example.com", "password": "long-enough-1", "name": "New",
               "account_id": world.customer_a.id}  # fmt: skip
    resp = client.post("/api/v1/users", json=payload)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["email"] == "new.user@example.com"
    before = _counts()
    dup = client.post("/api/v1/users", json=payload | {"email": "new.user@example.com"})
    assert dup.status_code == 409
    assert dup.get_json()["code"] == "conflict" and "email" in dup.get_json()["errors"]
    short = client.post("/api/v1/users", json=payload | {"email": "x@example.com", "password": "1"})
    assert short.status_code == 422 and "password" in short.get_json()["errors"]
    assert _counts() == before


def test_a_customer_user_cannot_create_users_in_another_customer(world, api):
    resp = api(world.user_a).post(
        "/api/v1/users",
        json={
            "email": "x@example.com",
            "password": "long-enough-1",
            "account_id": world.customer_b.id,
        },
    )
    assert resp.status_code == 404


def _limited_admin(world):
    """A provider admin who manages roles and users but lacks audit.view."""
    from core import roles

    role = roles.create_role(
        None,
        world.provider,
        {
            "name": "Role admin",
            "description": "manages roles",
            "privileges": ["roles.manage", "users.manage", "users.view", "accounts.view"],
        },
    )
    return world.add_user(world.provider, "admin@example.com", role_code=None, roles=[role])


def test_a_role_holding_a_privilege_its_creator_lacks_cannot_be_created(world, api):
    admin = _limited_admin(world)
    client = api(admin)
    url = f"/api/v1/accounts/{world.provider.id}/roles"
    before = Role.select().count()
    resp = client.post(
        url, json={"name": "Auditor", "description": "d", "privileges": ["audit.view"]}
    )
    assert resp.status_code == 422
    assert "audit.view" in resp.get_json()["message"]
    assert Role.select().count() == before
    ok = client.post(url, json={"name": "Viewer", "description": "d", "privileges": ["users.view"]})
    assert ok.status_code == 201


def test_a_role_holding_a_privilege_the_assigner_lacks_cannot_be_assigned(world, api):
    from core import roles

    admin = _limited_admin(world)
    auditor = roles.create_role(
        None, world.provider, {"name": "Auditor", "description": "d", "privileges": ["audit.view"]}
    )
    colleague = world.add_user(world.provider, "colleague@example.com", role_code=None)
    resp = api(admin).post(f"/api/v1/roles/{auditor.id}/users", json={"user_id": colleague.id})
    assert resp.status_code == 422
    assert "audit.view" in resp.get_json()["message"]
    assert api(world.operator).get(f"/api/v1/roles/{auditor.id}").get_json()["users"] == []


def test_a_privilege_of_another_level_cannot_be_put_on_a_role(world, api):
    resp = api(world.operator).post(
        f"/api/v1/accounts/{world.customer_a.id}/roles",
        json={"name": "Ops", "description": "d", "privileges": ["plugins.manage"]},
    )
    assert resp.status_code == 422
    assert "customer level" in resp.get_json()["message"]


def test_the_openapi_document_lists_the_core_paths(world, ctx):
    resp = ctx.test_client().get("/api/v1/openapi.json")
    assert resp.status_code == 200
    paths = resp.get_json()["paths"]
    for path in (
        "/api/v1/tokens",
        "/api/v1/accounts",
        "/api/v1/accounts/{account_id}",
        "/api/v1/users",
        "/api/v1/roles/{role_id}",
        "/api/v1/privileges",
        "/api/v1/plugins",
        "/api/v1/license",
        "/api/v1/audit",
    ):
        assert path in paths, path


def test_the_api_without_a_token_is_a_401_json(world, ctx):
    client = ctx.test_client()
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
        resp = client.get("/api/v1/accounts", headers=headers)
        assert resp.status_code == 401
        assert resp.get_json()["code"] == "unauthorized"


def test_a_wrong_password_gets_no_token(world, ctx):
    resp = ctx.test_client().post(
        "/api/v1/tokens", json={"email": world.operator.email, "password": "wrong-password"}
    )
    assert resp.status_code == 422
    assert resp.get_json()["message"] == "wrong e-mail or password"


def test_a_revoked_token_stops_working_at_once(world, api):
    client = api(world.user_a)
    assert client.get("/api/v1/users/me").status_code == 200
    prefix = client.headers["Authorization"].split()[1][:10]
    assert client.delete(f"/api/v1/tokens/{prefix}").status_code == 204
    assert client.get("/api/v1/users/me").status_code == 401


def test_malformed_json_is_a_4xx_json_not_a_500(world, api):
    resp = api(world.operator).post(
        "/api/v1/accounts", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert 400 <= resp.status_code < 500
    assert "code" in resp.get_json()
