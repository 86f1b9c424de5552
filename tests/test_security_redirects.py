"""Issue 16 item 3: one validator for every redirect target that comes from a request
(``core.redirects.safe_next``). Anything but a same-origin relative path is ignored, never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD

EVIL = [
    "//evil.example",
    "/%09/evil.example",
    "/\t/evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%5Cevil.example",
    "/%2F/evil.example",
    "%2F%2Fevil.example",
    "https://evil.example/",
    "http:/evil.example",
    "javascript:alert(1)",
    "/%0d%0aSet-Cookie:%20x=1",
    "/\r\nSet-Cookie: x=1",
    "/ok\r\nLocation: //evil.example",
    "/%00/evil.example",
    "/%252F/evil.example",
    " //evil.example",
    "/\u3000/evil.example",
    "///evil.example",
    "/%E3%80%80/evil.example",
]


@pytest.mark.parametrize("target", EVIL)
def test_login_never_redirects_off_site_and_never_fails(ctx, world, target):
    client = ctx.test_client()
    resp = client.post(
        "/login",
        query_string={"next": target},
        data={"email": world.operator.email, "password": PASSWORD},
    )
    assert resp.status_code == 302
    location = resp.headers["Location"]
    # the bad target is ignored: the user lands on the panel's home page
    assert location == "/", location
    # and the session works (the login was not half done)
    assert client.get("/").status_code == 302
    assert client.get(location, follow_redirects=True).status_code == 200


def test_login_raw_tab_in_query_is_ignored(ctx, world):
    """The exact reproduction: ``POST /login?next=/%09/evil.example`` (as sent on the wire)."""
    client = ctx.test_client()
    resp = client.post(
        "/login?next=/%09/evil.example",
        data={"email": world.operator.email, "password": PASSWORD},
    )
    assert resp.status_code == 302
    assert "evil.example" not in resp.headers["Location"]


@pytest.mark.parametrize(
    "target", ["/accounts", "/accounts/1/users?tab=roles", "/billing/runs#x", "/accounts/%C3%A9"]
)
def test_login_follows_a_local_target(ctx, world, target):
    client = ctx.test_client()
    resp = client.post(
        "/login",
        query_string={"next": target},
        data={"email": world.operator.email, "password": PASSWORD},
    )
    assert resp.status_code == 302
    assert resp.headers["Location"] == target


def test_an_unauthenticated_page_sends_to_login_with_a_next_that_login_follows(ctx, world):
    client = ctx.test_client()
    resp = client.get("/accounts")
    assert resp.status_code == 302
    login_url = resp.headers["Location"]
    resp = client.post(login_url, data={"email": world.operator.email, "password": PASSWORD})
    assert resp.headers["Location"] == "/accounts"


@pytest.mark.parametrize("target", ["//evil.example", "/%09/evil.example", "/\r\nX: y"])
def test_role_form_next_is_validated_too(ctx, world, panel, target):
    from core.models import Role

    client = panel(world.operator)
    role = Role.get(Role.account == world.customer_a, Role.default_code == "full_access")
    resp = client.post(
        f"/accounts/{world.customer_a.id}/users/{world.user_a.id}/roles",
        data={"role_id": role.id, "action": "assign", "next": target},
    )
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/accounts/{world.customer_a.id}/users"


def test_safe_next_unit():
    from core.redirects import safe_next

    for bad in EVIL + [None, "", 5, "evil.example", "/" + "a" * 5000, "/%FF"]:
        assert safe_next(bad) is None, bad
    assert safe_next("/accounts?x=1") == "/accounts?x=1"
    assert safe_next("/a/b/../c") == "/a/b/../c"
