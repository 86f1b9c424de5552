"""Passwords, sessions and tokens (issue 16, item 8 and reproduction 10): one password policy
wherever a password is set, change your own password, an administrator's reset, and
server-side expiry of panel sessions and API tokens."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.conftest import PASSWORD

NEW = "another-secret-2"


@pytest.fixture
def app(make_app):
    return make_app(plugins=[], SESSION_IDLE_MINUTES=30, SESSION_MAX_HOURS=8,
                    TOKEN_IDLE_DAYS=10, TOKEN_MAX_DAYS=40)  # fmt: skip


def _token(ctx, email, password):
    return ctx.test_client().post("/api/v1/tokens", json={"email": email, "password": password})


def _audited(action):
    from core.models import AuditEntry

    return list(AuditEntry.select().where(AuditEntry.action == action))


# -- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password", "at least 12 characters"),
        ("short-pw-1", "at least 12 characters"),
        ("password1234", "most common passwords"),
        ("Qwerty123456!", "most common passwords"),
        ("1q2w3e4r5t6y", "most common passwords"),
        ("abcabcabcabc", "repeats"),
        ("x" * 201, "at most 200"),
    ],
)
def test_the_api_refuses_weak_passwords_naming_the_field(world, api, password, message):
    from core.models import User

    resp = api(world.operator).post(
        "/api/v1/users",
        json={"email": "new@example.com", "password": password, "account_id": world.customer_a.id},
    )
    assert resp.status_code == 422
    assert message in " ".join(resp.get_json()["errors"]["password"])
    assert User.get_or_none(User.email == "new@example.com") is None


def test_the_policy_refuses_the_users_own_email(world, ctx):
    from core import users
    from core.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="password: must not be your e-mail address"):
        users.create_user(None, {"email": "longname.here@example.com", "password": "longname.here",
                                 "account_id": world.customer_a.id})  # fmt: skip


def test_the_panel_form_refuses_a_common_password(world, panel):
    client = panel(world.operator)
    resp = client.post(
        f"/accounts/{world.customer_a.id}/users",
        data={"email": "new@example.com", "password": "password1234"},
    )
    assert resp.status_code == 422
    assert "most common passwords" in resp.get_data(as_text=True)


# -- change your own password ----------------------------------------------------------------


def test_changing_your_own_password_through_the_api(world, ctx, api, panel):
    client = api(world.user_a)
    session = panel(world.user_a)
    url = "/api/v1/users/me/password"
    wrong = client.post(url, json={"current_password": "not-it-at-all", "new_password": NEW})
    assert wrong.status_code == 422 and "current_password" in wrong.get_json()["errors"]
    weak = client.post(url, json={"current_password": PASSWORD, "new_password": "password1234"})
    assert weak.status_code == 422 and "new_password" in weak.get_json()["errors"]
    assert client.post(url, json={"current_password": PASSWORD}).status_code == 422
    ok = client.post(url, json={"current_password": PASSWORD, "new_password": NEW})
    assert ok.status_code == 204, ok.get_json()
    assert _token(ctx, world.user_a.email, PASSWORD).status_code == 422
    assert _token(ctx, world.user_a.email, NEW).status_code == 201
    assert client.get("/api/v1/users/me").status_code == 200  # the API token stays
    assert session.get(f"/accounts/{world.customer_a.id}").status_code == 302  # panel: ended
    entry = _audited("user.password.change")[-1]
    assert entry.actor_label == world.user_a.email and PASSWORD not in str(entry.after)


def test_guessing_the_current_password_is_throttled_like_a_login(world, ctx, api):
    client = api(world.user_a)
    for _ in range(5):
        client.post("/api/v1/users/me/password",
                    json={"current_password": "guess-guess-1", "new_password": NEW})  # fmt: skip
    resp = client.post("/api/v1/users/me/password",
                       json={"current_password": PASSWORD, "new_password": NEW})  # fmt: skip
    assert resp.status_code == 422 and "too many failed logins" in resp.get_json()["message"]


def test_changing_your_own_password_in_the_panel_keeps_this_session_only(world, ctx, panel):
    mine, other = panel(world.user_a), panel(world.user_a)
    page = mine.get("/password").get_data(as_text=True)
    assert 'name="current_password"' in page and 'name="new_password"' in page
    resp = mine.post("/password", data={"current_password": "nope-nope-nope", "new_password": NEW})
    assert resp.status_code == 422 and "current_password" in resp.get_data(as_text=True)
    resp = mine.post("/password", data={"current_password": PASSWORD, "new_password": NEW})
    assert resp.status_code == 302
    assert mine.get(f"/accounts/{world.customer_a.id}").status_code == 200
    assert other.get(f"/accounts/{world.customer_a.id}").status_code == 302
    assert _token(ctx, world.user_a.email, NEW).status_code == 201


# -- an administrator's reset ----------------------------------------------------------------


def test_an_admin_resets_a_password_in_their_subtree(world, ctx, api):
    victim = api(world.user_a)
    url = f"/api/v1/users/{world.user_a.id}/password"
    assert api(world.user_b).post(url, json={"password": NEW}).status_code == 404
    weak = api(world.operator).post(url, json={"password": "password1234"})
    assert weak.status_code == 422 and "password" in weak.get_json()["errors"]
    ok = api(world.operator).post(url, json={"password": NEW})
    assert ok.status_code == 204
    assert victim.get("/api/v1/users/me").status_code == 401  # their tokens ended
    assert _token(ctx, world.user_a.email, NEW).status_code == 201
    entry = _audited("user.password.reset")[-1]
    assert entry.actor_label == world.operator.email and entry.after["tokens_revoked"] == 1


def test_a_reset_needs_every_privilege_of_the_users_roles(world, ctx, api):
    from core import roles

    lite = roles.create_role(None, world.customer_a, {
        "name": "Users", "description": "x", "privileges": ["users.manage", "users.view"]})  # fmt: skip
    clerk = world.add_user(world.customer_a, "clerk@example.com", None, [lite])
    resp = api(clerk).post(f"/api/v1/users/{world.user_a.id}/password", json={"password": NEW})
    assert resp.status_code == 422 and "privileges you lack" in resp.get_json()["message"]
    assert _token(ctx, world.user_a.email, PASSWORD).status_code == 201
    assert _audited("user.password.reset.refused")


def test_the_panel_sets_a_users_password(world, ctx, panel):
    client = panel(world.operator)
    page = client.get(f"/accounts/{world.customer_a.id}/users").get_data(as_text=True)
    assert "Set password of a@example.com" in page and "Deactivate a@example.com" in page
    resp = client.post(f"/accounts/{world.customer_a.id}/users/{world.user_a.id}/password",
                       data={"password": NEW}, follow_redirects=True)  # fmt: skip
    assert "New password set for a@example.com" in resp.get_data(as_text=True)
    assert _token(ctx, world.user_a.email, NEW).status_code == 201


# -- expiry on the server --------------------------------------------------------------------


def _age(model, user, **ages):
    from core.db import utcnow

    model.update({getattr(model, k): utcnow() - v for k, v in ages.items()}).where(
        model.user == user.id
    ).execute()


def test_panel_sessions_expire_when_idle_and_after_their_lifetime(world, ctx, panel):
    from core.models import LoginSession

    url = f"/accounts/{world.customer_a.id}"
    client = panel(world.user_a)
    _age(LoginSession, world.user_a, last_seen_at=timedelta(minutes=29))
    assert client.get(url).status_code == 200  # used within 30 minutes: alive, and seen now
    row = LoginSession.get(LoginSession.user == world.user_a.id)
    assert row.last_seen_at > row.created_at
    _age(LoginSession, world.user_a, last_seen_at=timedelta(minutes=31))
    resp = client.get(url)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]

    client = panel(world.user_b)  # busy all the time, but logged in 8 hours ago
    _age(LoginSession, world.user_b, created_at=timedelta(hours=8, minutes=1),
         last_seen_at=timedelta(seconds=5))  # fmt: skip
    assert client.get(f"/accounts/{world.customer_b.id}").status_code == 302


def test_api_tokens_expire_when_idle_and_after_their_lifetime(world, ctx, api):
    from core.db import utcnow
    from core.models import ApiToken

    client = api(world.user_a)
    assert client.get("/api/v1/users/me").status_code == 200
    _age(ApiToken, world.user_a, last_used_at=timedelta(days=9))
    assert client.get("/api/v1/users/me").status_code == 200  # used within 10 days: alive
    used = ApiToken.get(ApiToken.user == world.user_a.id).last_used_at
    assert used > utcnow() - timedelta(minutes=1)  # and its last use is now
    _age(ApiToken, world.user_a, last_used_at=timedelta(days=11))
    assert client.get("/api/v1/users/me").status_code == 401

    client = api(world.user_b)
    _age(ApiToken, world.user_b, created_at=timedelta(days=41), last_used_at=timedelta(hours=1))
    resp = client.get("/api/v1/users/me")
    assert resp.status_code == 401 and resp.get_json()["code"] == "unauthorized"


def test_the_lifetimes_come_from_the_environment(monkeypatch, tmp_path):
    from hostapp import config

    monkeypatch.setenv("BILLHIVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BILLHIVE_SESSION_IDLE_MINUTES", "15")
    monkeypatch.setenv("BILLHIVE_TOKEN_MAX_DAYS", "7")
    loaded = config.load()
    assert loaded["SESSION_IDLE_MINUTES"] == 15 and loaded["TOKEN_MAX_DAYS"] == 7
    assert loaded["SESSION_MAX_HOURS"] == 12
    monkeypatch.setenv("BILLHIVE_TOKEN_IDLE_DAYS", "soon")
    with pytest.raises(ValueError, match=re.escape("BILLHIVE_TOKEN_IDLE_DAYS must be a whole")):
        config.load()


def test_a_database_from_before_gets_the_session_column_at_start(ctx, make_app):
    """Core migration 3 adds LoginSession.last_seen_at to a database made before it."""
    from core.db import database
    from core.migrations import SchemaMigration

    database.execute_sql('ALTER TABLE "login_session" DROP COLUMN "last_seen_at"')
    SchemaMigration.delete().where(
        SchemaMigration.plugin == "core", SchemaMigration.version == 3
    ).execute()
    assert "last_seen_at" not in {c.name for c in database.get_columns("login_session")}
    make_app(plugins=[])  # the next start
    make_app(plugins=[])  # and the one after: nothing to do
    assert "last_seen_at" in {c.name for c in database.get_columns("login_session")}
    assert SchemaMigration.get(SchemaMigration.plugin == "core", SchemaMigration.version == 3)
