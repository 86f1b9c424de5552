"""Fixtures: a fresh app and database per test, on SQLite and (when the test command provides
a server) on PostgreSQL; an account tree with a user per level; API and panel clients.

Tests name the plugins they load, so whatever else is installed is never picked up.
"""

from __future__ import annotations

import os
import threading
from datetime import date, timedelta

import pytest

pytest_plugins = ["core.kit.testing"]

BUILTIN_PLUGINS = [
    "invoice_pdf",
    "reseller_accounts",
    "role_wizard",
    "billing_units",
    "psa_mapping",
]
PASSWORD = "secret-pass-1"


def pytest_collection_modifyitems(config, items):
    """Browser tests drive the panel; the database under it is covered by the others, so they
    run on SQLite only."""
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("billhive_backend") if params else None
        (drop if item.get_closest_marker("browser") and backend == "postgresql" else keep).append(
            item
        )
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def backend(billhive_backend):
    return billhive_backend


@pytest.fixture
def database_url(billhive_database_url):
    return billhive_database_url


@pytest.fixture
def license_keys(tmp_path):
    """A trusted signing key in the instance's key folder; returns the private PEM."""
    from core.licenses import generate_keypair

    private, public = generate_keypair()
    folder = tmp_path / "data" / "license-keys"
    folder.mkdir(parents=True)
    (folder / "test.pem").write_bytes(public)
    return private


@pytest.fixture
def make_app(database_url, tmp_path, license_keys, billhive_make_app):
    """An app with just the named plugins installed (none enabled until asked): the public
    ``billhive_make_app`` with the suite's defaults."""

    def factory(plugins=None, modules=None, csrf=False, **config):
        return billhive_make_app(
            {
                "TESTING": True,
                "DATA_DIR": str(tmp_path / "data"),
                "DATABASE_URL": database_url,
                "SECRET_KEY": "test-secret",
                "PLUGINS": list(BUILTIN_PLUGINS if plugins is None else plugins),
                "PLUGIN_MODULES": modules or {},
                "WTF_CSRF_ENABLED": csrf,
                "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",  # fast; production keeps defaults
                # the fake ConnectWise listens on http://127.0.0.1: only the operator's
                # outbound allowlist lets a tenant-set URL reach it (core.outbound)
                "OUTBOUND_ALLOW_HTTP": True,
                "OUTBOUND_ALLOWLIST": "127.0.0.1",
                **config,
            }
        )

    return factory


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def ctx(app):
    """An app context with an open connection, for calling services directly."""
    database = app.extensions["billhive"].database
    with app.app_context(), database.connection_context():
        app.extensions["billhive"].host.refresh()
        yield app


def issue(license_keys, features, expires=None, issued=None) -> str:
    from core.licenses import issue_license

    return issue_license(
        license_keys,
        "Test Licensee",
        features,
        expires or date.today() + timedelta(days=30),
        issued=issued,
    )


@pytest.fixture
def install_license(ctx, license_keys):
    """Install a licence listing ``features`` (valid for 30 days unless told otherwise)."""
    from core import license_store

    def install(features, expires=None, issued=None):
        host = ctx.extensions["billhive"].host
        return license_store.install(
            issue(license_keys, features, expires, issued), host.license_key_paths
        )

    return install


class World:
    """A provider with an operator, and two customers each with a Full Access user."""

    def __init__(self):
        from core import accounts, users
        from core.bootstrap import initialise
        from core.models import Role

        self.provider, self.operator, _ = initialise("Provider", "op@example.com", PASSWORD)

        def customer(name, email):
            acc = accounts.create_account(
                None, {"name": name, "type": "customer", "parent_id": self.provider.id}
            )
            role = Role.get(Role.account == acc, Role.default_code == "full_access")
            user = users.create_user(
                None,
                {"email": email, "password": PASSWORD, "account_id": acc.id, "role_ids": [role.id]},
            )
            return acc, user

        self.customer_a, self.user_a = customer("Customer A", "a@example.com")
        self.customer_b, self.user_b = customer("Customer B", "b@example.com")

    def add_account(self, parent, name, type_code="customer", **extra):
        from core import accounts

        return accounts.create_account(
            None, {"name": name, "type": type_code, "parent_id": parent.id, **extra}
        )

    def add_user(self, account, email, role_code="full_access", roles=()):
        from core import users
        from core.models import Role

        ids = [r.id for r in roles]
        if role_code:
            ids.append(Role.get(Role.account == account, Role.default_code == role_code).id)
        return users.create_user(
            None, {"email": email, "password": PASSWORD, "account_id": account.id, "role_ids": ids}
        )


# what one request caches in ``g``: the API user, flask-login's user, rbac's privileges
REQUEST_CACHE = ("api_user", "_login_user", "_billhive_privs")


def forget_request_user() -> None:
    """A test that keeps one app context open makes Flask reuse it for its requests, so
    ``g`` would carry one request's user into the next: call this between requests."""
    from flask import g

    for key in REQUEST_CACHE:
        g.pop(key, None)


class Fresh:
    """A test client whose every request starts with :func:`forget_request_user`."""

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if name not in ("get", "post", "put", "patch", "delete"):
            return attr

        def call(*args, **kwargs):
            forget_request_user()
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def world(ctx):
    return World()


class ApiClient:
    """A test client that sends a user's Bearer token."""

    def __init__(self, app, token):
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method):
        def call(url, **kwargs):
            headers = {**self.headers, **kwargs.pop("headers", {})}
            return getattr(self.client, method)(url, headers=headers, **kwargs)

        return call


@pytest.fixture
def api(ctx):
    """``api(user)`` -> a client authenticated as that user through a real token."""

    def for_user(user, password=PASSWORD):
        resp = ctx.test_client().post(
            "/api/v1/tokens", json={"email": user.email, "password": password}
        )
        assert resp.status_code == 201, resp.get_json()
        return ApiClient(ctx, resp.get_json()["token"])

    return for_user


@pytest.fixture
def panel(ctx):
    """``panel(user)`` -> a test client logged in to the panel as that user."""

    def for_user(user, password=PASSWORD):
        client = ctx.test_client()
        resp = client.post("/login", data={"email": user.email, "password": password})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        return client

    return for_user


@pytest.fixture
def live_server(ctx):
    """The app served on 127.0.0.1 in a thread, for the browser."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, ctx, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser): one per session,
    each test in a browser context of its own (``page``)."""
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("BILLHIVE_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=executable,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()
