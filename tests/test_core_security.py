"""Panel security: CSRF on every form, no session fixation, login throttling."""

from __future__ import annotations

import re

import pytest

from core.models import Account, LoginSession
from tests.conftest import PASSWORD, World


@pytest.fixture
def ctx(make_app):
    """A core-only app with CSRF on, its world built in a context that is closed again: the
    shared ``ctx`` fixture keeps one app context (and its ``g``) across requests, which would
    leak flask-login's user and Flask-WTF's token from one test client to the next."""
    app = make_app(plugins=[], csrf=True)
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        app.world = World()
    return app


@pytest.fixture
def world(ctx):
    return ctx.world


def _csrf(client, url="/login") -> str:
    html = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _login(client, email, password=PASSWORD):
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": _csrf(client)}
    )


def _session_id(client):
    with client.session_transaction() as session:
        return session.get("_user_id")


def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(world, ctx):
    client = ctx.test_client()
    assert (
        client.post("/login", data={"email": "op@example.com", "password": PASSWORD}).status_code
        == 400
    )
    assert _login(client, "op@example.com").status_code == 302
    url = f"/accounts/{world.provider.id}/new"
    before = Account.select().count()
    resp = client.post(url, data={"name": "Sneaky", "type": "customer", "currency": "EUR"})
    assert resp.status_code == 400
    assert "csrf" in resp.get_data(as_text=True).lower()
    assert Account.select().count() == before
    token = _csrf(client, url)
    ok = client.post(
        url, data={"name": "Wanted", "type": "customer", "currency": "EUR", "bill_cycle_day": "1",
                   "tax_rate": "0", "invoice_prefix": "INV-", "csrf_token": token}
    )  # fmt: skip
    assert ok.status_code == 302, ok.get_data(as_text=True)
    assert Account.select().count() == before + 1


def test_logging_in_gives_a_new_session_id_and_logging_out_kills_it(world, ctx):
    client = ctx.test_client()
    _csrf(client)
    assert _session_id(client) is None
    assert _login(client, "op@example.com").status_code == 302
    first = _session_id(client)
    assert LoginSession.get(LoginSession.token == first).user_id == world.operator.id

    other = ctx.test_client()
    _login(other, "op@example.com")
    assert _session_id(other) != first  # every login its own id

    stolen = client.get_cookie("session").value
    assert client.get("/accounts").status_code == 200
    resp = client.post("/logout", data={"csrf_token": _csrf(client, "/accounts")})
    assert resp.status_code == 302
    assert LoginSession.get(LoginSession.token == first).revoked_at is not None

    replay = ctx.test_client()
    replay.set_cookie("session", stolen)
    resp = replay.get("/accounts")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert other.get("/accounts").status_code == 200  # the other session lives on


def test_a_wrong_password_says_so_without_telling_which_part_was_wrong(world, ctx):
    client = ctx.test_client()
    wrong = _login(client, "op@example.com", "not-the-password")
    unknown = _login(client, "nobody@example.com", "not-the-password")
    for resp in (wrong, unknown):
        assert resp.status_code == 401
        assert "wrong e-mail or password" in resp.get_data(as_text=True)
    assert _session_id(client) is None


def test_five_failed_logins_lock_the_account_for_a_while(world, ctx):
    client = ctx.test_client()
    for _ in range(5):
        assert _login(client, "op@example.com", "guess-guess").status_code == 401
    resp = _login(client, "op@example.com")  # even the right password now
    assert resp.status_code == 401
    assert "too many failed logins" in resp.get_data(as_text=True)
    assert _login(ctx.test_client(), "a@example.com").status_code == 302  # others unaffected


def test_the_api_ignores_the_panel_session_cookie(world, ctx):
    client = ctx.test_client()
    _login(client, "op@example.com")
    assert client.get("/api/v1/accounts").status_code == 401


def test_world_fixture_is_core_only(world, ctx):
    assert isinstance(world, World)
    assert set(ctx.extensions["billhive"].host.plugins) == {"core"}
