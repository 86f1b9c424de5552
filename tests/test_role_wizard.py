"""The role_wizard plugin: Roles and Privileges tabs, the Add New Role wizard, edit, clone,
delete, assign — and the core roles API it builds on: escalation refused and audited."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD

EXTRA = {
    "rw_extra": "tests.plugins.rw_extra_privileges",
    "rw_branch": "tests.plugins.rw_branch_types",  # a reseller-level account type
}


def fresh_g_per_request(app):
    """The ``ctx`` fixture keeps an app context pushed, so test-client requests share ``g``
    (Flask reuses a pushed context of the same app): the API user, flask-login's user and the
    privilege cache would leak from one request to the next. Give each request a fresh start."""
    from tests.conftest import forget_request_user

    if forget_request_user not in app.before_request_funcs.get(None, []):  # a reused app has it
        app.before_request(forget_request_user)
    return app


@pytest.fixture
def app(make_app):
    return fresh_g_per_request(make_app(plugins=["role_wizard"], modules=EXTRA))


@pytest.fixture
def host(ctx):
    h = ctx.extensions["billhive"].host
    h.set_enabled("role_wizard", True)
    h.set_enabled("rw_extra", True)
    h.set_enabled("rw_branch", True)
    return h


@pytest.fixture
def tree(world, host):
    """The World plus a staff user of customer A who only holds a narrow custom role."""
    from core import roles

    narrow = roles.create_role(
        None,
        world.customer_a,
        {
            "name": "Users only",
            "description": "Views users and manages roles",
            "privileges": ["users.view", "roles.manage", "billing.view"],
        },
    )
    world.narrow_role = narrow
    world.staff_a = world.add_user(world.customer_a, "staff@a.example.com", None, [narrow])
    return world


def audits(action_suffix=".refused"):
    from core.models import AuditEntry

    return [
        e for e in AuditEntry.select().order_by(AuditEntry.id) if e.action.endswith(action_suffix)
    ]


def html(resp) -> str:
    return resp.get_data(as_text=True)


def role_named(account, name):
    from core.models import Role

    return Role.get_or_none(Role.account == account, Role.name == name)


# -- API: escalation refused and audited -------------------------------------------------------


def test_api_refuses_and_audits_a_privilege_the_creator_lacks(tree, api):
    client = api(tree.staff_a)
    resp = client.post(
        f"/api/v1/accounts/{tree.customer_a.id}/roles",
        json={"name": "Sneaky", "description": "x", "privileges": ["users.view", "users.manage"]},
    )
    assert resp.status_code == 422, resp.get_json()
    assert "users.manage" in resp.get_json()["message"]
    assert role_named(tree.customer_a, "Sneaky") is None
    refused = audits()
    assert refused[-1].action == "role.create.refused"
    assert refused[-1].actor_label == "staff@a.example.com"
    assert "users.manage" in str(refused[-1].after)


def test_api_refuses_and_audits_a_privilege_not_at_the_accounts_level(tree, api):
    client = api(tree.user_a)  # Full Access of a customer: holds every customer privilege
    for code in ("catalog.manage", "extra.admin"):
        resp = client.post(
            f"/api/v1/accounts/{tree.customer_a.id}/roles",
            json={"name": "Too much", "description": "x", "privileges": [code]},
        )
        assert resp.status_code == 422
        assert "customer level" in resp.get_json()["message"] or "does not exist" in str(
            resp.get_json()
        )
    assert [e.action for e in audits()] == ["role.create.refused"] * 2
    # even the operator cannot put a provider-only privilege on a customer's role
    resp = api(tree.operator).post(
        f"/api/v1/accounts/{tree.customer_a.id}/roles",
        json={"name": "Ops", "description": "x", "privileges": ["plugins.manage"]},
    )
    assert resp.status_code == 422
    assert len(audits()) == 3


def test_api_refuses_a_role_of_another_account(tree, api):
    from core import roles

    other = roles.create_role(
        None, tree.customer_b, {"name": "B role", "description": "b", "privileges": []}
    )
    client = api(tree.user_a)
    assert client.get(f"/api/v1/roles/{other.id}").status_code == 404
    assert client.patch(f"/api/v1/roles/{other.id}", json={"name": "mine"}).status_code == 404
    assert client.delete(f"/api/v1/roles/{other.id}").status_code == 404
    resp = client.post(
        f"/api/v1/accounts/{tree.customer_b.id}/roles",
        json={"name": "In B", "description": "x", "privileges": []},
    )
    assert resp.status_code == 404
    assert role_named(tree.customer_b, "In B") is None
    from core.models import Role

    assert Role.get_by_id(other.id).name == "B role"
    refused = audits()
    assert refused, "cross-account attempts must be audited"
    assert all(e.actor_label == "a@example.com" for e in refused)
    assert {e.object_type for e in refused} >= {"role", "account"}


def test_api_refuses_and_audits_assigning_a_role_across_accounts(tree, api):
    from core import roles
    from core.models import UserRole

    role_b = roles.create_role(
        None,
        tree.customer_b,
        {"name": "B clerk", "description": "b", "privileges": ["billing.view"]},
    )
    # the operator sees both accounts, yet a role of B cannot go to a user of A
    resp = api(tree.operator).post(
        f"/api/v1/roles/{role_b.id}/users", json={"user_id": tree.user_a.id}
    )
    assert resp.status_code == 422
    assert "another account" in resp.get_json()["message"]
    assert not UserRole.select().where(UserRole.role == role_b.id).exists()
    assert audits()[-1].action == "role.assign.refused"
    # and a customer admin cannot even see the other account's role or user
    resp = api(tree.user_a).post(
        f"/api/v1/roles/{role_b.id}/users", json={"user_id": tree.user_a.id}
    )
    assert resp.status_code == 404, resp.get_json()
    resp = api(tree.user_a).post(
        f"/api/v1/roles/{tree.narrow_role.id}/users", json={"user_id": tree.user_b.id}
    )
    assert resp.status_code == 404
    assert (
        not UserRole.select()
        .where(UserRole.user == tree.user_b.id, UserRole.role == tree.narrow_role.id)
        .exists()
    )


def test_api_refuses_and_audits_assigning_a_role_holding_more_than_the_actor(tree, api):
    from core.models import Role

    full = Role.get(Role.account == tree.customer_a, Role.default_code == "full_access")
    # staff_a lacks users.manage: 403 before anything else
    resp = api(tree.staff_a).post(
        f"/api/v1/roles/{full.id}/users", json={"user_id": tree.staff_a.id}
    )
    assert resp.status_code in (403, 422)
    assert not tree.staff_a.role_links.where(tree.staff_a.role_links.model.role == full.id).exists()


def test_api_role_lifecycle_is_audited(tree, api):
    client = api(tree.user_a)
    resp = client.post(
        f"/api/v1/accounts/{tree.customer_a.id}/roles",
        json={"name": "Clerk", "description": "billing clerk", "privileges": ["billing.view"]},
    )
    assert resp.status_code == 201
    rid = resp.get_json()["id"]
    assert (
        client.patch(
            f"/api/v1/roles/{rid}", json={"privileges": ["billing.view", "billing.edit"]}
        ).status_code
        == 200
    )
    assert (
        client.post(f"/api/v1/roles/{rid}/users", json={"user_id": tree.staff_a.id}).status_code
        == 200
    )
    resp = client.delete(f"/api/v1/roles/{rid}")
    assert resp.status_code == 409 and "staff@a.example.com" in resp.get_json()["message"]
    assert client.delete(f"/api/v1/roles/{rid}/users/{tree.staff_a.id}").status_code == 200
    assert client.post(f"/api/v1/roles/{rid}/clone").status_code == 201
    assert client.delete(f"/api/v1/roles/{rid}").status_code == 204
    from core.models import AuditEntry

    actions = [e.action for e in AuditEntry.select().where(AuditEntry.action.startswith("role."))]
    for action in ("role.create", "role.update", "role.assign", "role.unassign", "role.delete"):
        assert action in actions


def test_privileges_of_a_disabled_plugin_stay_but_grant_nothing(tree, host, api):
    from core import rbac, roles

    role = roles.create_role(
        None, tree.customer_a, {"name": "Extra", "description": "x", "privileges": ["extra.use"]}
    )
    tree.add_user(tree.customer_a, "extra@a.example.com", None, [role])
    from core.models import User

    holder = User.get(User.email == "extra@a.example.com")
    assert rbac.has(holder, "extra.use")
    host.set_enabled("rw_extra", False)
    from flask import g

    g.pop("_billhive_privs", None)
    assert not rbac.has(holder, "extra.use")
    assert rbac.stored_privileges(role) == {"extra.use"}
    body = api(tree.user_a).get(f"/api/v1/roles/{role.id}").get_json()
    assert body["privileges"] == ["extra.use"] and body["inactive_privileges"] == ["extra.use"]
    host.set_enabled("rw_extra", True)
    g.pop("_billhive_privs", None)
    assert rbac.has(holder, "extra.use")


# -- panel: tabs ------------------------------------------------------------------------------


def test_roles_tab_on_every_account_lists_default_then_custom_roles(tree, panel):
    client = panel(tree.operator)
    page = html(client.get(f"/accounts/{tree.provider.id}"))
    assert f"/accounts/{tree.provider.id}/roles" in page  # the Roles tab
    page = html(client.get(f"/accounts/{tree.customer_a.id}/roles"))
    names = re.findall(r'<tr data-role="([^"]+)"', page)
    assert names == ["Full Access", "Users only"]
    assert "staff@a.example.com" in page and "a@example.com" in page
    assert "Add New Role" in page
    # the default role row offers Clone, not Edit
    full_row = page.split('data-role="Full Access"')[1].split("</tr>")[0]
    assert "Clone" in full_row and "Edit" not in full_row


def test_roles_tab_is_404_outside_the_subtree_and_hidden_without_privilege(tree, panel):
    client = panel(tree.user_a)
    assert client.get(f"/accounts/{tree.customer_b.id}/roles").status_code == 404
    assert client.get(f"/accounts/{tree.customer_b.id}/roles/new").status_code == 404
    assert client.get(f"/accounts/{tree.provider.id}/roles").status_code == 404


def test_roles_tab_answers_404_while_the_plugin_is_disabled(tree, panel, host):
    client = panel(tree.operator)
    assert client.get(f"/accounts/{tree.provider.id}/roles").status_code == 200
    host.set_enabled("role_wizard", False)
    assert client.get(f"/accounts/{tree.provider.id}/roles").status_code == 404
    assert f"/accounts/{tree.provider.id}/roles" not in html(
        client.get(f"/accounts/{tree.provider.id}")
    )


def test_menu_item_privilege_tuple_means_any_of_them():
    from core.registry import MenuItem

    either = MenuItem("Roles", "role_wizard.roles", ("users.view", "roles.manage"))
    assert either.privileges == ("users.view", "roles.manage")
    assert either.visible_with({"roles.manage"}.__contains__)
    assert either.visible_with({"users.view"}.__contains__)
    assert not either.visible_with({"billing.view"}.__contains__)
    one = MenuItem("Users", "panel.account_users", "users.view")
    assert one.privileges == ("users.view",)
    assert one.visible_with({"users.view"}.__contains__)
    assert not one.visible_with({"roles.manage"}.__contains__)
    assert MenuItem("Overview", "panel.account").visible_with(lambda code: False)


@pytest.mark.parametrize(
    ("privileges", "sees"),
    [(["roles.manage"], True), (["users.view"], True), (["billing.view"], False)],
    ids=["roles.manage-only", "users.view-only", "neither"],
)
def test_roles_tab_and_pages_open_with_users_view_or_roles_manage(tree, panel, privileges, sees):
    from core import roles

    only = roles.create_role(
        None, tree.customer_a, {"name": "Only", "description": "d", "privileges": privileges}
    )
    user = tree.add_user(tree.customer_a, "only@a.example.com", None, [only])
    client = panel(user)
    acc = tree.customer_a.id
    overview = html(client.get(f"/accounts/{acc}"))
    tabs = re.findall(r'<a href="([^"]+)" class="[^"]*">([^<]+)</a>', overview)
    assert ((f"/accounts/{acc}/roles", "Roles") in tabs) == sees, tabs
    assert ((f"/accounts/{acc}/users", "Users") in tabs) == ("users.view" in privileges)
    for path in ("roles", "roles/privileges", f"roles/{tree.narrow_role.id}"):
        assert client.get(f"/accounts/{acc}/{path}").status_code == (200 if sees else 403), path
    # outside the subtree it stays 404 whatever the user holds
    assert client.get(f"/accounts/{tree.customer_b.id}/roles").status_code == 404
    if privileges == ["roles.manage"]:
        # a role manager without users.view manages roles but is not shown the user list
        page = html(client.get(f"/accounts/{acc}/roles"))
        assert "Add New Role" in page
        assert client.get(f"/accounts/{acc}/roles/new").status_code == 200
        page = html(client.get(f"/accounts/{acc}/roles/{tree.narrow_role.id}"))
        assert 'id="role-users"' not in page and "Clone" in page
        assert client.get(f"/accounts/{acc}/users").status_code == 403
    if privileges == ["users.view"]:
        assert "Add New Role" not in html(client.get(f"/accounts/{acc}/roles"))
        assert client.get(f"/accounts/{acc}/roles/new").status_code == 403


def test_privileges_tab_lists_every_enabled_privilege(tree, panel):
    page = html(panel(tree.user_a).get(f"/accounts/{tree.customer_a.id}/roles/privileges"))
    for code in ("accounts.view", "catalog.manage", "plugins.manage", "extra.use", "extra.admin"):
        assert f"<code>{code}</code>" in page
    assert "Submit service desk tickets" in page and "reseller, customer" in page


# -- panel: the wizard -----------------------------------------------------------------------


def wizard(client, account, data, role=None):
    url = f"/accounts/{account.id}/roles/" + (f"{role.id}/edit" if role else "new")
    return client.post(url, data=data)


def test_wizard_step1_requires_name_and_description_and_a_unique_name(tree, panel):
    client = panel(tree.user_a)
    resp = wizard(
        client, tree.customer_a, {"step": "1", "action": "next", "name": " ", "description": ""}
    )
    assert resp.status_code == 422
    page = html(resp)
    assert 'id="error-name"' in page and 'id="error-description"' in page
    assert 'data-step="1"' in page
    resp = wizard(
        client,
        tree.customer_a,
        {"step": "1", "action": "next", "name": "Users only", "description": "d"},
    )
    assert resp.status_code == 422 and "already exists" in html(resp)
    assert 'value="d"' in html(resp)  # what was typed stays


def test_wizard_back_and_forward_keep_what_was_entered(tree, panel):
    client = panel(tree.user_a)
    resp = wizard(
        client,
        tree.customer_a,
        {"step": "1", "action": "next", "name": "Clerk", "description": "Bills"},
    )
    page = html(resp)
    assert resp.status_code == 200 and 'data-step="2"' in page
    resp = wizard(
        client,
        tree.customer_a,
        {
            "step": "2",
            "action": "back",
            "name": "Clerk",
            "description": "Bills",
            "privileges": ["billing.view", "billing.edit"],
        },
    )
    page = html(resp)
    assert 'data-step="1"' in page and 'value="Clerk"' in page and 'value="Bills"' in page
    assert page.count('type="hidden" name="privileges"') == 2
    resp = wizard(
        client,
        tree.customer_a,
        {
            "step": "1",
            "action": "next",
            "name": "Clerk",
            "description": "Bills",
            "privileges": ["billing.view", "billing.edit"],
        },
    )
    page = html(resp)
    assert 'data-step="2"' in page
    assert re.search(r'value="billing.view" checked', page) and re.search(
        r'value="billing.edit" checked', page
    )
    assert not re.search(r'value="users.view" checked', page)
    resp = wizard(
        client,
        tree.customer_a,
        {
            "step": "2",
            "action": "next",
            "name": "Clerk",
            "description": "Bills",
            "privileges": ["billing.view", "billing.edit"],
        },
    )
    page = html(resp)
    assert 'data-step="3"' in page and "Edit Billing" in page
    assert role_named(tree.customer_a, "Clerk") is None  # nothing saved before Finish
    resp = wizard(
        client,
        tree.customer_a,
        {
            "step": "3",
            "action": "finish",
            "name": "Clerk",
            "description": "Bills",
            "privileges": ["billing.view", "billing.edit"],
        },
    )
    assert resp.status_code == 302
    from core import rbac

    role = role_named(tree.customer_a, "Clerk")
    assert rbac.stored_privileges(role) == {"billing.view", "billing.edit"}
    assert audits("role.create")[-1].actor_label == "a@example.com"


def test_wizard_step2_requires_a_privilege(tree, panel):
    resp = wizard(
        panel(tree.user_a),
        tree.customer_a,
        {"step": "2", "action": "next", "name": "Empty", "description": "x"},
    )
    assert resp.status_code == 422 and 'id="error-privileges"' in html(resp)


def test_wizard_cancel_at_any_step_discards(tree, panel):
    client = panel(tree.user_a)
    for step in ("1", "2", "3"):
        resp = wizard(
            client,
            tree.customer_a,
            {
                "step": step,
                "action": "cancel",
                "name": "Gone",
                "description": "x",
                "privileges": ["billing.view"],
            },
        )
        assert resp.status_code == 302 and resp.headers["Location"].endswith(
            f"/accounts/{tree.customer_a.id}/roles"
        )
    assert role_named(tree.customer_a, "Gone") is None
    assert not [e for e in audits("role.create") if e.actor_label == "a@example.com"]


def test_wizard_offers_only_privileges_at_the_level_that_the_actor_holds(tree, panel):
    # staff_a holds users.view, roles.manage, billing.view only
    page = html(
        wizard(
            panel(tree.staff_a),
            tree.customer_a,
            {"step": "1", "action": "next", "name": "N", "description": "d"},
        )
    )
    offered = set(re.findall(r'name="privileges" value="([^"]+)"', page))
    assert offered == {"users.view", "roles.manage", "billing.view"}
    # the customer's Full Access admin: every customer-level privilege, nothing else
    page = html(
        wizard(
            panel(tree.user_a),
            tree.customer_a,
            {"step": "1", "action": "next", "name": "N", "description": "d"},
        )
    )
    offered = set(re.findall(r'name="privileges" value="([^"]+)"', page))
    assert "extra.use" in offered and "billing.edit" in offered
    assert not offered & {"catalog.manage", "plugins.manage", "extra.admin", "billruns.run"}
    assert "Select all Billing" in page  # select-all per group


def test_wizard_refuses_a_tampered_privilege_and_audits_it(tree, panel):
    resp = wizard(
        panel(tree.staff_a),
        tree.customer_a,
        {
            "step": "3",
            "action": "finish",
            "name": "Forged",
            "description": "x",
            "privileges": ["users.manage"],
        },
    )
    assert resp.status_code == 422 and "users.manage" in html(resp)
    assert role_named(tree.customer_a, "Forged") is None
    assert audits()[-1].action == "role.create.refused"


def test_wizard_needs_csrf_token(tree, make_app):
    app = fresh_g_per_request(make_app(plugins=["role_wizard"], modules=EXTRA, csrf=True))
    client = app.test_client()
    with app.app_context():
        pass
    login = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', html(login))
    assert token  # the login form carries one
    resp = client.post(
        "/login",
        data={"email": tree.user_a.email, "password": PASSWORD, "csrf_token": token.group(1)},
    )
    assert resp.status_code == 302
    url = f"/accounts/{tree.customer_a.id}/roles/new"
    resp = client.post(
        url,
        data={
            "step": "3",
            "action": "finish",
            "name": "NoToken",
            "description": "x",
            "privileges": ["billing.view"],
        },
    )
    assert resp.status_code == 400
    assert role_named(tree.customer_a, "NoToken") is None
    page = html(client.get(url))
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post(
        url,
        data={
            "csrf_token": token,
            "step": "3",
            "action": "finish",
            "name": "WithToken",
            "description": "x",
            "privileges": ["billing.view"],
        },
    )
    assert resp.status_code == 302
    assert role_named(tree.customer_a, "WithToken") is not None


# -- panel: edit, clone, delete, assign ----------------------------------------------------------


def test_edit_is_the_wizard_prefilled(tree, panel):
    client = panel(tree.user_a)
    role = tree.narrow_role
    page = html(client.get(f"/accounts/{tree.customer_a.id}/roles/{role.id}/edit"))
    assert 'value="Users only"' in page and 'data-step="1"' in page
    assert page.count('type="hidden" name="privileges"') == 3
    resp = wizard(
        client,
        tree.customer_a,
        {
            "step": "3",
            "action": "finish",
            "name": "Users and billing",
            "description": "changed",
            "privileges": ["users.view", "billing.edit"],
        },
        role=role,
    )
    assert resp.status_code == 302
    from core import rbac
    from core.models import Role

    role = Role.get_by_id(role.id)
    assert role.name == "Users and billing" and rbac.stored_privileges(role) == {
        "users.view",
        "billing.edit",
    }
    assert audits("role.update")


def test_default_roles_are_read_only_but_clonable(tree, panel):
    from core import rbac
    from core.models import Role

    client = panel(tree.user_a)
    full = Role.get(Role.account == tree.customer_a, Role.default_code == "full_access")
    assert client.get(f"/accounts/{tree.customer_a.id}/roles/{full.id}/edit").status_code == 409
    assert client.post(f"/accounts/{tree.customer_a.id}/roles/{full.id}/delete").status_code == 409
    resp = client.post(f"/accounts/{tree.customer_a.id}/roles/{full.id}/clone")
    assert resp.status_code == 302
    copy = role_named(tree.customer_a, "Full Access (copy)")
    assert copy is not None and not copy.is_default
    assert rbac.stored_privileges(copy) == rbac.role_privileges(full)


def test_delete_of_an_assigned_role_is_refused_listing_its_users(tree, panel):
    client = panel(tree.user_a)
    role = tree.narrow_role
    resp = client.post(f"/accounts/{tree.customer_a.id}/roles/{role.id}/delete")
    assert resp.status_code == 409
    assert "staff@a.example.com" in html(resp) and "still assigned" in html(resp)
    assert role_named(tree.customer_a, "Users only") is not None
    # unassign, then delete works
    resp = client.post(
        f"/accounts/{tree.customer_a.id}/roles/{role.id}/users",
        data={"user_id": tree.staff_a.id, "action": "unassign"},
    )
    assert resp.status_code == 302
    resp = client.post(f"/accounts/{tree.customer_a.id}/roles/{role.id}/delete")
    assert resp.status_code == 302
    assert role_named(tree.customer_a, "Users only") is None
    assert audits("role.delete")


def test_assign_and_unassign_on_the_role_page(tree, panel):
    from core.models import UserRole

    client = panel(tree.user_a)
    role = tree.narrow_role
    page = html(client.get(f"/accounts/{tree.customer_a.id}/roles/{role.id}"))
    assert "Assign a@example.com" in page and "Unassign staff@a.example.com" in page
    resp = client.post(
        f"/accounts/{tree.customer_a.id}/roles/{role.id}/users",
        data={"user_id": tree.user_a.id, "action": "assign"},
    )
    assert resp.status_code == 302
    assert (
        UserRole.select().where(UserRole.user == tree.user_a.id, UserRole.role == role.id).exists()
    )
    assert audits("role.assign")
    # a user of another account: not found
    resp = client.post(
        f"/accounts/{tree.customer_a.id}/roles/{role.id}/users",
        data={"user_id": tree.user_b.id, "action": "assign"},
    )
    assert resp.status_code == 404


def test_disabled_plugin_privileges_are_greyed_with_the_reason(tree, panel, host):
    from core import roles

    role = roles.create_role(
        None,
        tree.customer_a,
        {"name": "Extra user", "description": "x", "privileges": ["extra.use", "billing.view"]},
    )
    host.set_enabled("rw_extra", False)
    client = panel(tree.user_a)
    page = html(client.get(f"/accounts/{tree.customer_a.id}/roles/{role.id}"))
    item = page.split('data-code="extra.use"')[1].split("</li>")[0]
    assert 'class="greyed"' in item and "plugin rw_extra is disabled" in item
    assert "greyed" not in page.split('data-code="billing.view"')[1].split("</li>")[0]
    listing = html(client.get(f"/accounts/{tree.customer_a.id}/roles"))
    assert "(1 inactive)" in listing
    # editing keeps the disabled plugin's privilege on the role, greyed
    page = html(client.get(f"/accounts/{tree.customer_a.id}/roles/{role.id}/edit"))
    resp = wizard(
        client,
        tree.customer_a,
        {
            "step": "1",
            "action": "next",
            "name": "Extra user",
            "description": "x",
            "privileges": ["billing.view"],
        },
        role=role,
    )
    assert "plugin rw_extra is disabled" in html(resp)
    resp = wizard(
        client,
        tree.customer_a,
        {
            "step": "3",
            "action": "finish",
            "name": "Extra user",
            "description": "y",
            "privileges": ["billing.view"],
        },
        role=role,
    )
    assert resp.status_code == 302
    from core import rbac

    assert rbac.stored_privileges(role) == {"extra.use", "billing.view"}


def test_reseller_level_roles_tab_lists_its_three_default_roles(tree, panel):
    branch = tree.add_account(tree.provider, "Reseller R", "rwbranch")
    client = panel(tree.operator)
    page = html(client.get(f"/accounts/{branch.id}/roles"))
    names = re.findall(r'<tr data-role="([^"]+)"', page)
    assert names == ["Customer Full Access", "Full Access", "Service Desk Only"]
    # the operator's wizard for a reseller offers reseller privileges, not provider-only ones
    page = html(
        wizard(
            client,
            branch,
            {"step": "1", "action": "next", "name": "Billing Clerk", "description": "d"},
        )
    )
    offered = set(re.findall(r'name="privileges" value="([^"]+)"', page))
    assert {"catalog.manage", "billruns.run", "billing.edit"} <= offered
    assert not offered & {"plugins.manage", "licenses.manage", "audit.view", "extra.admin"}
    # servicedesk.submit does not exist at the provider level, so the operator cannot hold it,
    # yet manages the reseller roles that carry it (Service Desk Only): it is offered
    assert "servicedesk.submit" in offered


def test_roles_api_is_in_the_openapi_document(tree, ctx):
    spec = ctx.test_client().get("/api/v1/openapi.json").get_json()
    for path in (
        "/api/v1/accounts/{account_id}/roles",
        "/api/v1/roles/{role_id}",
        "/api/v1/roles/{role_id}/clone",
        "/api/v1/roles/{role_id}/users",
        "/api/v1/roles/{role_id}/users/{user_id}",
        "/api/v1/privileges",
    ):
        assert path in spec["paths"], path
