"""Taking away needs what granting needs (issue 16, item 1): removing a role, deactivating or
deleting a user needs every privilege involved, and an account never loses its last active
Full Access holder (409). Through the services, the API and the panel."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD

LITE = ["roles.manage", "users.manage", "users.view", "billing.view", "accounts.view"]


@pytest.fixture
def app(make_app):
    return make_app(plugins=["role_wizard", "reseller_accounts"])


@pytest.fixture
def reseller(world, ctx, install_license):
    """The issue's scene: a reseller with its main admin (Full Access) and a user holding the
    reseller role "Role Admin Lite"."""
    from core import roles

    install_license(["FT-3001.007"])
    host = ctx.extensions["billhive"].host
    host.set_enabled("reseller_accounts", True)
    host.set_enabled("role_wizard", True)
    acc = world.add_account(
        world.provider,
        "Acme Reseller",
        "reseller",
        profile={
            "customer_invoice_creation": True,
            "customer_invoice_type": "PDF",
            "customer_billing_cycle_day": 15,
        },
    )
    lite_role = roles.create_role(
        None, acc, {"name": "Role Admin Lite", "description": "Roles and users", "privileges": LITE}
    )
    world.reseller = acc
    world.admin = world.add_user(acc, "admin@acme.example")
    world.lite = world.add_user(acc, "lite@acme.example", None, [lite_role])
    world.lite_role = lite_role
    world.full = _full_access(acc)
    return world


def _full_access(account):
    from core.models import Role

    return Role.get(Role.account == account, Role.default_code == "full_access")


def _holds(user, role) -> bool:
    from core.models import UserRole

    return UserRole.select().where(UserRole.user == user.id, UserRole.role == role.id).exists()


def _audited(action):
    from core.models import AuditEntry

    return list(AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.id))


def test_a_weaker_admin_cannot_remove_full_access_through_the_api(reseller, api):
    w = reseller
    client = api(w.lite)
    resp = client.delete(f"/api/v1/roles/{w.full.id}/users/{w.admin.id}")
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert "you cannot remove 'Full Access'" in body["message"]
    assert "billing.edit" in body["message"]  # names what the remover lacks
    assert _holds(w.admin, w.full)
    refused = _audited("role.unassign.refused")
    assert refused and refused[-1].actor_label == "lite@acme.example"
    assert not _audited("role.unassign")
    # a role whose privileges they all hold: removing it works
    assert client.delete(f"/api/v1/roles/{w.lite_role.id}/users/{w.lite.id}").status_code == 200
    assert not _holds(w.lite, w.lite_role)


def test_a_weaker_admin_cannot_deactivate_or_delete_a_stronger_user(reseller, api):
    from core.models import User

    w = reseller
    client = api(w.lite)
    resp = client.post(f"/api/v1/users/{w.admin.id}/deactivate")
    assert resp.status_code == 422 and "billing.edit" in resp.get_json()["message"]
    resp = client.delete(f"/api/v1/users/{w.admin.id}")
    assert resp.status_code == 422 and "billing.edit" in resp.get_json()["message"]
    admin = User.get_by_id(w.admin.id)
    assert admin.is_active
    assert {e.action for e in _audited("user.deactivate.refused") + _audited("user.delete.refused")}


def test_the_last_full_access_holder_cannot_lose_it(reseller, api):
    from core.models import User

    w = reseller
    op = api(w.operator)  # the provider's operator holds everything a reseller role holds
    for resp in (
        op.delete(f"/api/v1/roles/{w.full.id}/users/{w.admin.id}"),
        op.post(f"/api/v1/users/{w.admin.id}/deactivate"),
        op.delete(f"/api/v1/users/{w.admin.id}"),
    ):
        assert resp.status_code == 409, resp.get_json()
        assert "last active user holding 'Full Access'" in resp.get_json()["message"]
        assert "Acme Reseller" in resp.get_json()["message"]
    assert _holds(w.admin, w.full) and User.get_by_id(w.admin.id).is_active

    # with a second active holder, the first can lose it; then the second is the last
    second = w.add_user(w.reseller, "second@acme.example")
    assert op.delete(f"/api/v1/roles/{w.full.id}/users/{w.admin.id}").status_code == 200
    assert not _holds(w.admin, w.full)
    assert op.post(f"/api/v1/users/{second.id}/deactivate").status_code == 409
    # an inactive holder does not count as one
    assert (
        op.post(f"/api/v1/roles/{w.full.id}/users", json={"user_id": w.admin.id}).status_code == 200
    )
    assert op.post(f"/api/v1/users/{w.admin.id}/deactivate").status_code == 200
    assert op.delete(f"/api/v1/roles/{w.full.id}/users/{second.id}").status_code == 409


def test_the_users_page_x_refuses_a_weaker_admin(reseller, panel):
    w = reseller
    client = panel(w.lite)
    resp = client.post(
        f"/accounts/{w.reseller.id}/users/{w.admin.id}/roles",
        data={"role_id": w.full.id, "action": "unassign"},
        follow_redirects=True,
    )
    page = resp.get_data(as_text=True)
    assert "you cannot remove &#39;Full Access&#39;" in page
    assert "removed from" not in page
    assert _holds(w.admin, w.full)


def test_the_role_page_unassign_refuses_a_weaker_admin(reseller, panel):
    w = reseller
    client = panel(w.lite)
    resp = client.post(
        f"/accounts/{w.reseller.id}/roles/{w.full.id}/users",
        data={"user_id": w.admin.id, "action": "unassign"},
        follow_redirects=True,
    )
    assert "you cannot remove &#39;Full Access&#39;" in resp.get_data(as_text=True)
    assert _holds(w.admin, w.full)


def test_deactivating_revokes_tokens_and_sessions_and_blocks_login(reseller, api, panel, ctx):
    from core.models import ApiToken, LoginSession

    w = reseller
    second = w.add_user(w.reseller, "second@acme.example")
    victim_api = api(second)
    victim_panel = panel(second)
    assert victim_api.get("/api/v1/users/me").status_code == 200
    resp = api(w.admin).post(f"/api/v1/users/{second.id}/deactivate")
    assert resp.status_code == 200 and resp.get_json()["is_active"] is False
    assert victim_api.get("/api/v1/users/me").status_code == 401
    assert victim_panel.get(f"/accounts/{w.reseller.id}").status_code == 302  # to /login
    assert (
        not ApiToken.select()
        .where(ApiToken.user == second.id, ApiToken.revoked_at.is_null())
        .exists()
    )
    assert (
        not LoginSession.select()
        .where(LoginSession.user == second.id, LoginSession.revoked_at.is_null())
        .exists()
    )
    entry = _audited("user.deactivate")[-1]
    assert entry.actor_label == "admin@acme.example" and entry.after["is_active"] is False
    again = ctx.test_client().post(
        "/api/v1/tokens", json={"email": second.email, "password": PASSWORD}
    )
    assert again.status_code == 422 and "wrong e-mail or password" in again.get_json()["message"]
    # activated again, the user logs in again
    assert api(w.admin).post(f"/api/v1/users/{second.id}/activate").status_code == 200
    assert api(second).get("/api/v1/users/me").status_code == 200
    assert _audited("user.activate")


def test_deleting_a_user_removes_them_and_is_audited(reseller, api):
    from core.models import User

    w = reseller
    second = w.add_user(w.reseller, "second@acme.example")
    resp = api(w.admin).delete(f"/api/v1/users/{second.id}")
    assert resp.status_code == 204
    assert User.get_or_none(User.id == second.id) is None
    entry = _audited("user.delete")[-1]
    assert entry.before["email"] == "second@acme.example"
    # not in the caller's subtree: 404, as for any object
    assert api(w.user_a).delete(f"/api/v1/users/{w.admin.id}").status_code == 404
