""" "Log in as" (issue 20, item 3; core.impersonation): operators and reseller admins act as a
user of their subtree, never up, never sideways, never an operator, never to gain a
privilege; audited at start and end and for everything done meanwhile; a banner with a way
back; the caller's own session restored; no API token while acting."""

from __future__ import annotations

import re

import pytest

from core import impersonation, lifecycle, roles, users
from core.errors import Conflict, Forbidden, NotFound
from core.models import AuditEntry, Impersonation, LoginSession
from tests.billing_support import reseller_tree
from tests.conftest import PASSWORD, Fresh


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts"])


@pytest.fixture
def tree(world, ctx, install_license):
    world = reseller_tree(world, ctx, install_license)
    world.reseller_staff = world.add_user(world.reseller, "staff@acme.example")
    return world


def _client(w, user):
    client = Fresh(w.app.test_client())
    resp = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 302
    return client


def _log_in_as(client, target):
    return client.post(f"/accounts/{target.account_id}/users/{target.id}/log-in-as")


def _actions(name):
    return list(AuditEntry.select().where(AuditEntry.action == name).order_by(AuditEntry.id))


def test_an_operator_acts_as_a_customer_user_and_returns(tree):
    w = tree
    client = _client(w, w.operator)
    resp = _log_in_as(client, w.end_user)
    assert resp.status_code == 302
    page = client.get(f"/accounts/{w.end_customer.id}").get_data(as_text=True)
    assert 'id="impersonation-banner"' in page
    assert re.search(r"op@example.com</strong> is acting as <strong>end@customer.example", page)
    assert "Return to my account" in page
    # acting as the user: what they see, nothing above them
    assert client.get(f"/accounts/{w.reseller.id}").status_code == 404
    start = _actions("user.impersonate.start")
    assert [(e.actor_label, e.object_id) for e in start] == [("op@example.com",
                                                              str(w.end_user.id))]  # fmt: skip
    # what is done meanwhile carries both names
    edited = client.post(
        f"/accounts/{w.end_customer.id}/users/{w.end_user.id}/edit",
        data={"email": "end@customer.example", "name": "Renamed while acting"},
    )
    assert edited.status_code == 302
    assert _actions("user.update")[-1].actor_label == "op@example.com as end@customer.example"

    acting_session = Impersonation.get().session
    back = client.post("/impersonation/end")
    assert back.status_code == 302
    assert "impersonation-banner" not in client.get(back.headers["Location"]).get_data(as_text=True)
    # the operator's own session again: the provider's pages open
    assert client.get(f"/accounts/{w.reseller.id}").status_code == 200
    assert LoginSession.get_by_id(acting_session.id).revoked_at is not None
    assert [e.actor_label for e in _actions("user.impersonate.end")] == ["op@example.com"]
    assert client.post("/impersonation/end").status_code == 404  # nothing to end


def test_never_up_never_sideways_never_an_operator(tree):
    w = tree
    admin = w.reseller_admin
    with pytest.raises(NotFound):
        impersonation.check(admin, w.operator)  # up
    with pytest.raises(NotFound):
        impersonation.check(admin, w.user_a)  # another tree
    with pytest.raises(Forbidden, match="only users of accounts below yours"):
        impersonation.check(admin, w.reseller_staff)  # sideways, in one's own account
    with pytest.raises(Forbidden, match="only users of accounts below yours"):
        impersonation.check(w.operator, w.operator)
    impersonation.check(admin, w.end_user)  # below: allowed
    # a customer admin holds no 'Log in as' (the privilege has no customer level)
    other = w.add_user(w.end_customer, "other@customer.example")
    with pytest.raises(Forbidden):
        impersonation.check(w.end_user, other)
    # through the panel: outside the subtree is 404, nothing is opened
    client = _client(w, admin)
    assert _log_in_as(client, w.user_a).status_code == 404
    assert _log_in_as(client, w.operator).status_code == 404
    refused = _log_in_as(client, w.reseller_staff)
    assert refused.status_code == 302 and not Impersonation.select().exists()


def test_no_escalation_through_log_in_as(tree):
    w = tree
    helper_role = roles.create_role(
        None, w.reseller,
        {"name": "Helpdesk", "description": "Acts as customers",
         "privileges": ["users.impersonate", "users.view", "accounts.view"]},
    )  # fmt: skip
    helper = w.add_user(w.reseller, "helpdesk@acme.example", None, [helper_role])
    # the customer's Full Access grants what the helpdesk lacks: acting as them would give it
    with pytest.raises(Forbidden, match="holds privileges you lack"):
        impersonation.check(helper, w.end_user)
    viewer_role = roles.create_role(
        None, w.end_customer, {"name": "Viewer", "description": "Sees", "privileges":
                               ["accounts.view"]})  # fmt: skip
    viewer = w.add_user(w.end_customer, "viewer@customer.example", None, [viewer_role])
    impersonation.check(helper, viewer)  # nothing they lack: allowed


def test_no_nesting_no_deactivated_no_suspended_targets(tree):
    w = tree
    client = _client(w, w.operator)
    assert _log_in_as(client, w.reseller_admin).status_code == 302
    again = _log_in_as(client, w.end_user)  # acting as the reseller admin now
    assert again.status_code == 302
    assert Impersonation.select().count() == 1
    assert "already acting as another user" in client.get(
        f"/accounts/{w.end_customer.id}/users"
    ).get_data(as_text=True)
    client.post("/impersonation/end")

    users.deactivate(None, w.add_user(w.end_customer, "gone@customer.example"))
    from core.models import User

    gone = User.get(User.email == "gone@customer.example")
    with pytest.raises(Conflict, match="deactivated"):
        impersonation.check(w.operator, gone)
    lifecycle.set_account_status(w.reseller, "suspended", None)
    with pytest.raises(Conflict, match="suspended"):
        impersonation.check(w.operator, w.end_user)


def test_no_api_token_while_acting_and_cookies_never_reach_the_api(tree):
    w = tree
    client = _client(w, w.operator)
    _log_in_as(client, w.end_user)
    acting = users.load_session(Impersonation.get().session.token)
    assert acting.email == w.end_user.email and acting.impersonation is not None
    with pytest.raises(Forbidden, match="no API token"):
        users.issue_token(acting)
    assert client.get("/api/v1/users/me").status_code == 401  # the session cookie is no token
    token = client.post("/api/v1/tokens", json={"email": w.end_user.email, "password": ""})
    assert token.status_code == 422


def test_the_acting_session_ends_with_the_callers_own(tree):
    w = tree
    client = _client(w, w.operator)
    _log_in_as(client, w.end_user)
    assert client.get(f"/accounts/{w.end_customer.id}").status_code == 200
    original = Impersonation.get().original_token
    users.end_session(original)  # the operator's own session ends elsewhere (logged out)
    assert client.get(f"/accounts/{w.end_customer.id}").status_code == 302  # to the login
    # and logging out while acting ends both sessions
    client = _client(w, w.reseller_admin)
    _log_in_as(client, w.end_user)
    imp = Impersonation.select().order_by(Impersonation.id.desc()).get()
    client.post("/logout")
    own = LoginSession.get(LoginSession.token == imp.original_token)
    assert own.revoked_at is not None
    assert LoginSession.get_by_id(imp.session_id).revoked_at is not None
    assert Impersonation.get_by_id(imp.id).ended_at is not None


@pytest.mark.browser
def test_log_in_as_in_a_browser_with_a_banner_on_every_page(tree, live_server, page):
    w = tree
    errors = []
    page.on("console", lambda m: errors.append((m.text, m.location.get("url", "")))
            if m.type in ("error", "warning") else None)  # fmt: skip
    page.on("pageerror", lambda e: errors.append((str(e), "")))
    page.goto(f"{live_server}/login")
    page.fill("#email", w.reseller_admin.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))
    # the reseller's landing page: its dashboard, its bill runs, no operator's licence
    assert page.locator("#dashboard").is_visible()
    assert "No bill runs yet" in page.locator("#runs").inner_text()
    assert page.locator("#licence").count() == 0
    page.goto(f"{live_server}/accounts/{w.end_customer.id}/users")
    with page.expect_navigation():
        page.click("button[aria-label='Log in as end@customer.example']")
    banner = page.locator("#impersonation-banner")
    assert "admin@acme.example is acting as end@customer.example" in banner.inner_text()
    for path in (f"/accounts/{w.end_customer.id}", f"/accounts/{w.end_customer.id}/users",
                 "/password"):  # fmt: skip
        page.goto(f"{live_server}{path}")
        assert page.locator("#impersonation-banner").is_visible(), path
    assert "end@customer.example" in page.locator("header .who").inner_text()
    page.screenshot(path="/tmp/billhive-log-in-as.png", full_page=True)
    with page.expect_navigation():
        page.click("#impersonation-banner button:has-text('Return to my account')")
    assert page.locator("#impersonation-banner").count() == 0
    assert "admin@acme.example" in page.locator("header .who").inner_text()
    assert "back in your account" in page.locator(".flash").first.inner_text()
    assert not [(t, u) for t, u in errors if not u.endswith("/favicon.ico")], errors
