"""Pytest fixtures for plugin authors: an app with just the named plugins enabled, accounts at
every level, and clients logged in as a user of any level with any privileges.

Load them from your tests' ``conftest.py`` and name your plugin::

    pytest_plugins = ["core.kit.testing"]

    @pytest.fixture
    def billhive_plugins():
        return ["widgets"]          # entry-point names; nothing else installed is loaded

    def test_widgets_page(billhive_client):
        client = billhive_client("reseller", privileges=["widgets.view"])
        assert client.get("/widgets/").status_code == 200

Fixtures:

``billhive_plugins``
    Installed plugins (entry points of ``billhive.plugins``) the app loads and enables.
    Override it, or mark a test ``@pytest.mark.billhive_plugins("a", "b")``. Default: none.
``billhive_modules``
    ``{name: "dotted.module"}`` for plugins that are importable but not installed. Default: {}.
``billhive_config``
    Extra Flask configuration for the app. Default: {}.
``billhive_database_url``
    SQLite in the test's temporary folder; when ``BILLHIVE_TEST_POSTGRES`` holds a PostgreSQL
    admin URL, every test also runs against a throwaway PostgreSQL database.
``billhive_app``
    The app, the named plugins enabled (their migrations applied; a licence listing the
    features they need installed from a throwaway signing key), with an app context and a
    database connection open for the whole test, so models and services can be used directly.
``billhive_accounts``
    A provider with its operator; ``.account(level)``, ``.user(level, privileges=None)`` and
    ``.issue_invoice(lines=None)`` make more.
``billhive_client``
    ``billhive_client(level="provider", privileges=None)``: a Flask test client logged in to
    the panel as a new user of an account at ``level`` ("provider", "reseller" or "customer")
    with the level's Full Access role, or with a role holding exactly ``privileges``.
    ``client.user`` and ``client.account`` are that user and account.
``billhive_api``
    The same for the REST API: a client sending the user's Bearer token on every request.

A reseller-level account needs a plugin that declares a reseller-level account type (the
built-in ``reseller_accounts``, say): name it in ``billhive_plugins``.
"""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import date, timedelta
from urllib.parse import urlparse

import pytest

PASSWORD = "billhive-testing-pw"
LEVELS = ("provider", "reseller", "customer")
# Profiles for account types of the built-in plugins, used when a test gives none.
SAMPLE_PROFILES = {
    "reseller": {
        "customer_invoice_creation": True,
        "customer_invoice_type": "PDF",
        "customer_billing_cycle_day": 1,
    },
}
_counter = itertools.count(1)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "billhive_plugins(*names): the installed plugins billhive_app enables"
    )


def _backends() -> list[str]:
    return ["sqlite"] + (["postgresql"] if os.environ.get("BILLHIVE_TEST_POSTGRES") else [])


@pytest.fixture
def billhive_plugins(request) -> list[str]:
    marker = request.node.get_closest_marker("billhive_plugins")
    return list(marker.args) if marker else []


@pytest.fixture
def billhive_modules() -> dict[str, str]:
    return {}


@pytest.fixture
def billhive_config() -> dict:
    return {}


@pytest.fixture(params=_backends())
def billhive_database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'billhive.db'}"
        return
    import psycopg2

    admin_url = os.environ["BILLHIVE_TEST_POSTGRES"]
    name = f"bh_plugin_test_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    yield urlparse(admin_url)._replace(path=f"/{name}").geturl()
    from core.db import database

    if database.obj is not None and not database.obj.is_closed():
        database.obj.close()
    cur = admin.cursor()
    cur.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
    )
    cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


@pytest.fixture
def billhive_app(billhive_plugins, billhive_modules, billhive_config, billhive_database_url,
                 tmp_path):  # fmt: skip
    from core import license_store
    from core.licenses import generate_keypair, issue_license
    from hostapp.app import create_app

    private, public = generate_keypair()
    data_dir = tmp_path / "billhive-data"
    (data_dir / "license-keys").mkdir(parents=True, exist_ok=True)
    (data_dir / "license-keys" / "testing.pem").write_bytes(public)
    app = create_app(
        {
            "TESTING": True,
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": billhive_database_url,
            "SECRET_KEY": "billhive-testing",
            "PLUGINS": list(billhive_plugins),
            "PLUGIN_MODULES": dict(billhive_modules),
            "WTF_CSRF_ENABLED": False,
            "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",  # fast; production keeps defaults
            **billhive_config,
        }
    )
    ext = app.extensions["billhive"]
    with app.app_context(), ext.database.connection_context():
        ext.host.refresh(force=True)
        names = [*billhive_plugins, *billhive_modules]
        features = sorted({f for f in (ext.host.get(n).meta.license_feature for n in names) if f})
        if features:
            text = issue_license(
                private, "Billhive plugin tests", features, date.today() + timedelta(days=365)
            )
            license_store.install(text, ext.host.license_key_paths)
        for name in names:
            ext.host.set_enabled(name, True)
        yield app
    if not ext.database.is_closed():
        ext.database.close()


class Accounts:
    """The account tree of a test: a provider with an operator, and what a test adds."""

    def __init__(self, app):
        from core.bootstrap import initialise

        self.app = app
        self.provider, self.operator, _ = initialise("Provider", "operator@billhive.test", PASSWORD)

    @property
    def host(self):
        return self.app.extensions["billhive"].host

    def account(self, level: str = "customer", parent=None, name: str | None = None,
                type_code: str | None = None, profile: dict | None = None):  # fmt: skip
        """A new account at ``level`` below ``parent`` (the provider), or the provider."""
        from core import accounts

        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        if level == "provider" and type_code is None:
            return self.provider
        types = {code: t for code, t in self.host.account_types().items() if t.level == level}
        code = type_code or ("customer" if level == "customer" and "customer" in types else None)
        code = code or next(iter(sorted(types)), None)
        if code is None or code not in types:
            raise LookupError(
                f"no enabled plugin declares an account type of level '{level}'"
                + (f" called '{type_code}'" if type_code else "")
                + " (for resellers, add 'reseller_accounts' to billhive_plugins)"
            )
        number = next(_counter)
        return accounts.create_account(
            None,
            {
                "name": name or f"{types[code].title} {number}",
                "type": code,
                "parent_id": (parent or self.provider).id,
                "profile": profile if profile is not None else SAMPLE_PROFILES.get(code, {}),
            },
        )

    def user(self, level: str = "provider", privileges=None, account=None,
             email: str | None = None):  # fmt: skip
        """A new user of ``account`` (a new account at ``level``) with the Full Access role,
        or with a new role holding exactly ``privileges``."""
        from core import roles, users
        from core.models import Role

        account = account or self.account(level)
        if privileges is None:
            role = Role.get(Role.account == account, Role.default_code == "full_access")
        else:
            role = roles.create_role(
                None,
                account,
                {
                    "name": f"Test role {next(_counter)}",
                    "description": "made by core.kit.testing",
                    "privileges": list(privileges),
                },
            )
        return users.create_user(
            None,
            {
                "email": email or f"user{next(_counter)}@{level}.billhive.test",
                "password": PASSWORD,
                "account_id": account.id,
                "role_ids": [role.id],
            },
        )

    def issue_invoice(self, lines: list[dict] | None = None, account=None, issuer=None):
        """An issued invoice (rendered to every enabled format) of ``issuer`` (the provider)
        for ``account`` (a new customer). Lines are ``{description, quantity, unit_price,
        unit, product_code}``; amounts in major units as strings."""
        from core.billing import invoices

        lines = lines or [
            {"description": "Hosting", "quantity": "2", "unit": "seat", "unit_price": "30.00"}
        ]
        issuer = issuer or self.provider
        draft = invoices.create_draft(None, account or self.account("customer"), issuer, lines)
        return invoices.issue(draft)


@pytest.fixture
def billhive_accounts(billhive_app) -> Accounts:
    return Accounts(billhive_app)


class ApiClient:
    """A Flask test client that sends a user's Bearer token with every request."""

    def __init__(self, app, token: str, user):
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}
        self.user = user
        self.account = user.account

    def __getattr__(self, method):
        def call(url, **kwargs):
            headers = {**self.headers, **kwargs.pop("headers", {})}
            return getattr(self.client, method)(url, headers=headers, **kwargs)

        return call


@pytest.fixture
def billhive_client(billhive_app, billhive_accounts):
    def login(level: str = "provider", privileges=None, account=None):
        user = billhive_accounts.user(level, privileges, account)
        client = billhive_app.test_client()
        resp = client.post("/login", data={"email": user.email, "password": PASSWORD})
        assert resp.status_code == 302, f"login failed: {resp.get_data(as_text=True)[:300]}"
        client.user, client.account = user, user.account
        return client

    return login


@pytest.fixture
def billhive_api(billhive_app, billhive_accounts):
    def login(level: str = "provider", privileges=None, account=None):
        user = billhive_accounts.user(level, privileges, account)
        resp = billhive_app.test_client().post(
            "/api/v1/tokens", json={"email": user.email, "password": PASSWORD}
        )
        assert resp.status_code == 201, f"token refused: {resp.get_json()}"
        return ApiClient(billhive_app, resp.get_json()["token"], user)

    return login
