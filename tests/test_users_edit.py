"""Editing users (issue 20, item 3): name and e-mail through the API and the panel, with the
taking-away rule (a weaker admin cannot change a stronger one's login), e-mails unique even
when two edits race, every refusal writing nothing."""

from __future__ import annotations

import pytest

from core import roles
from core.models import AuditEntry, User
from tests.test_billing_races import race

LITE = ["users.manage", "users.view", "accounts.view"]


@pytest.fixture
def scene(world):
    lite_role = roles.create_role(
        None, world.customer_a, {"name": "Lite", "description": "Users only", "privileges": LITE}
    )
    world.lite = world.add_user(world.customer_a, "lite@a.example", None, [lite_role])
    world.plain = world.add_user(world.customer_a, "plain@a.example", None, [])
    return world


def _user(user) -> User:
    return User.get_by_id(user.id)


def test_edit_own_and_others_through_the_api(scene, api):
    w = scene
    own = api(w.lite).patch(f"/api/v1/users/{w.lite.id}", json={"name": "Lite Admin"})
    assert own.status_code == 200 and own.get_json()["name"] == "Lite Admin"
    other = api(w.user_a).patch(
        f"/api/v1/users/{w.plain.id}", json={"email": "Plain.New@A.example", "name": "P"}
    )
    assert other.status_code == 200, other.get_json()
    assert (_user(w.plain).email, _user(w.plain).name) == ("plain.new@a.example", "P")
    entry = AuditEntry.select().where(AuditEntry.action == "user.update").order_by(
        AuditEntry.id.desc()).get()  # fmt: skip
    assert entry.before["email"] == "plain@a.example"
    assert entry.after["email"] == "plain.new@a.example"
    # the new e-mail logs in
    assert api(_user(w.plain)).get("/api/v1/users/me").get_json()["name"] == "P"


def test_a_weaker_admin_cannot_change_a_stronger_ones_login(scene, api):
    w = scene
    resp = api(w.lite).patch(f"/api/v1/users/{w.user_a.id}", json={"email": "mine@a.example"})
    assert resp.status_code == 422
    assert "you cannot edit a@example.com" in resp.get_json()["message"]
    assert _user(w.user_a).email == "a@example.com"
    assert AuditEntry.select().where(AuditEntry.action == "user.update.refused").exists()


def test_bad_input_names_the_field_and_writes_nothing(scene, api):
    w = scene
    client = api(w.user_a)
    taken = client.patch(f"/api/v1/users/{w.plain.id}", json={"email": "LITE@a.example"})
    assert taken.status_code == 409 and "email" in taken.get_json()["errors"]
    bad = client.patch(f"/api/v1/users/{w.plain.id}", json={"email": "not-an-address",
                                                           "name": "x" * 201})  # fmt: skip
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]) == {"email", "name"}
    nul = client.patch(f"/api/v1/users/{w.plain.id}", json={"name": "a\x00b"})
    assert nul.status_code == 422 and "name" in nul.get_json()["errors"]
    assert client.patch(f"/api/v1/users/{w.user_b.id}", json={"name": "x"}).status_code == 404
    assert (_user(w.plain).email, _user(w.plain).name) == ("plain@a.example", "")
    assert _user(w.user_b).name == ""


def test_the_panel_form_keeps_what_was_typed_after_an_error(scene, panel):
    w = scene
    client = panel(w.user_a)
    url = f"/accounts/{w.customer_a.id}/users/{w.plain.id}/edit"
    assert client.get(url).status_code == 200
    resp = client.post(url, data={"email": "lite@a.example", "name": "Typed name"})
    assert resp.status_code == 422
    text = resp.get_data(as_text=True)
    assert 'value="Typed name"' in text and 'value="lite@a.example"' in text
    assert "already used by another user" in text
    ok = client.post(url, data={"email": "plain2@a.example", "name": "Typed name"})
    assert ok.status_code == 302
    assert _user(w.plain).email == "plain2@a.example"
    assert client.get(f"/accounts/{w.customer_b.id}/users/{w.user_b.id}/edit").status_code == 404


def test_two_users_taking_one_e_mail_at_once_one_wins(scene, api):
    w = scene
    clients = [api(w.user_a), api(w.user_a)]
    targets = [w.plain, w.lite]
    results = race([lambda c=c, t=t: c.patch(f"/api/v1/users/{t.id}",
                                             json={"email": "same@a.example"})
                    for c, t in zip(clients, targets, strict=True)])  # fmt: skip
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 409], [r.get_json() for r in results]
    assert User.select().where(User.email == "same@a.example").count() == 1


@pytest.mark.browser
def test_a_customer_admin_sees_what_it_owes_and_edits_a_user_in_a_browser(scene, live_server, page):
    import re

    from tests.conftest import PASSWORD
    from tests.test_dashboard import invoice

    w = scene
    invoice(w.customer_a, w.provider, "80.00", due_in_days=-3)
    errors = []
    page.on("console", lambda m: errors.append((m.text, m.location.get("url", "")))
            if m.type in ("error", "warning") else None)  # fmt: skip
    page.goto(f"{live_server}/login")
    page.fill("#email", w.user_a.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))
    # the landing page: the customer's own dashboard, what it owes its seller
    owed = page.locator("#owed tr[data-group='you_owe'][data-currency='EUR']")
    assert "Owed by Customer A" in owed.inner_text()
    assert owed.get_attribute("data-overdue") == "8000"
    assert page.locator("#runs").count() == 0 and page.locator("#licence").count() == 0

    page.click(".tabs a:text-is('Users')")
    page.click("a[aria-label='Edit plain@a.example']")
    page.fill("#f-email", "lite@a.example")
    page.fill("#f-name", "Pat Plain")
    page.click("#user-form button[type=submit]")
    assert "already used by another user" in page.locator("#user-form").inner_text()
    assert page.input_value("#f-name") == "Pat Plain"  # nothing to type again
    page.fill("#f-email", "pat@a.example")
    with page.expect_navigation():
        page.click("#user-form button[type=submit]")
    assert "User pat@a.example saved." in page.locator(".flash").first.inner_text()
    assert page.locator("tr[data-user='pat@a.example']").is_visible()
    # Chromium logs the refused form's 422 answer itself ("Failed to load resource"): the
    # one expected message; nothing else (the favicon aside)
    refused = [(t, u) for t, u in errors if "status of 422" in t and u.endswith("/edit")]
    assert len(refused) == 1
    others = [(t, u) for t, u in errors if not u.endswith("/favicon.ico")]
    assert others == refused, errors
