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
``billhive_backend``
    "sqlite"; when ``BILLHIVE_TEST_POSTGRES`` holds a PostgreSQL admin URL, every test also
    runs with "postgresql".
``billhive_database_url``
    A database as start-up leaves it (the core's tables and migrations): SQLite in the test's
    temporary folder, or a throwaway PostgreSQL database. Start-up runs once per session into
    a template each test gets a copy of (:class:`Databases`), so this costs milliseconds.
``billhive_make_app``
    ``billhive_make_app(config)`` -> ``create_app(config)``; a later test of the same module
    with the same configuration gets that app again, re-homed to its own database and data
    folder (:class:`Apps`). Mark a test ``@pytest.mark.billhive_new_app`` when it checks what
    building an app does (what start-up logs, say).
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

import contextlib
import itertools
import os
import shutil
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
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
    config.addinivalue_line(
        "markers", "billhive_new_app: build the test's apps anew (it checks what create_app does)"
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


# -- databases: start-up runs once per session, each test gets a copy ------------------------


class Databases:
    """Fresh databases as start-up leaves them (the core's tables and migrations), made from a
    template that start-up made once per session and backend.

    SQLite: a copy of the template's file in the test's folder. PostgreSQL: a database of a
    pool (:class:`_Pool`) made with ``CREATE DATABASE ... TEMPLATE`` and, when the test is
    over, brought back to the template's state for a later test: its connections ended, the
    tables the test added dropped, every table emptied and the template's rows and sequence
    positions put back. Names carry the process id and a random part, so parallel runs and
    workers never collide; everything made here is dropped at the end of the session. Test
    databases commit without waiting for the disk (``synchronous_commit = off``: nothing to
    keep after a crash)."""

    def __init__(self, folder: Path, admin_url: str | None):
        self.folder = folder
        self.admin_url = admin_url
        self.run = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._templates: dict[str, str] = {}
        self._admin = None
        self._pool: _Pool | None = None  # PostgreSQL: the test databases
        self._copies: dict[str, tuple] = {}  # SQLite copies as made: path -> (size, mtime)

    def _sql(self, statement: str) -> None:
        if self._admin is None:
            self._admin = _admin_connection(self.admin_url)
        self._admin.cursor().execute(statement)

    def _template(self, backend: str) -> str:
        """The template of ``backend`` (a file path or a database name), made on first use."""
        if backend in self._templates:
            return self._templates[backend]
        from core import builtin, db
        from core.plugins import PluginHost
        from hostapp.app import start_database

        if backend == "sqlite":
            target = str(self.folder / "template.db")
            url = f"sqlite:///{target}"
        else:
            target = f"bh_tpl_{self.run}"
            self._sql(f'CREATE DATABASE "{target}"')
            url = _named(self.admin_url, target)
        database = db.open_database(url)
        db.bind(database)
        start_database(database, PluginHost([], core=builtin))
        database.close()  # SQLite: the last connection folds the WAL into the file
        self._templates[backend] = target
        return target

    def new(self, backend: str, folder: Path) -> str:
        """The URL of a new database for one test (SQLite: a file in ``folder``)."""
        template = self._template(backend)
        if backend == "sqlite":
            path = folder / "billhive.db"
            shutil.copyfile(template, path)
            self._copies[str(path)] = _stat(path)
            return f"sqlite:///{path}"
        if self._pool is None:
            self._pool = _Pool(self.admin_url, template, f"bh_test_{self.run}_")
        return _named(self.admin_url, self._pool.take())

    def untouched(self, url: str) -> bool:
        """Whether ``url`` is a SQLite copy of the template that nothing opened yet."""
        path = url.removeprefix("sqlite:///")
        return path in self._copies and self._copies[path] == _stat(Path(path))

    def done(self, url: str) -> None:
        """The test that had ``url`` is over."""
        if not url.startswith("postgres"):
            return
        self._pool.give_back(urlparse(url).path[1:])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._admin is not None:
            for backend, template in self._templates.items():
                if backend != "sqlite":
                    self._sql(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            self._admin.close()


def _stat(path: Path) -> tuple | None:
    if not path.exists() or Path(f"{path}-wal").exists():
        return None
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def _named(admin_url: str, name: str) -> str:
    """The URL of the database ``name`` on the server of ``admin_url``."""
    return urlparse(admin_url)._replace(path=f"/{name}").geturl()


def _admin_connection(url: str):
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    return connection


class _Pool:
    """The PostgreSQL test databases of a session, looked after by one thread with its own
    connections. A finished test's database is brought back to the template's state there
    (:func:`_pg_reset`) while the next test runs on another; one the reset cannot bring back
    (a test changed the schema) is dropped and a new copy of the template made instead.
    ``CREATE DATABASE`` costs about 0.2 s of the server copying files; a reset, a few
    milliseconds."""

    def __init__(self, admin_url: str, template: str, prefix: str):
        from concurrent.futures import ThreadPoolExecutor

        self.admin_url, self.template, self.prefix = admin_url, template, prefix
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="billhive-test-databases")
        self._admin = None  # used by that thread only
        self._ready: list = []  # futures of clean databases' names, oldest first
        self._made: set[str] = set()  # every database of the pool (the thread's own)
        self._state = self._thread.submit(self._template_state)

    def _sql(self, statement: str) -> None:
        if self._admin is None:
            self._admin = _admin_connection(self.admin_url)
        self._admin.cursor().execute(statement)

    def _template_state(self) -> dict:
        with contextlib.closing(_admin_connection(_named(self.admin_url, self.template))) as conn:
            return _pg_state(conn)

    def _make(self) -> str:
        name = f"{self.prefix}{next(_counter)}"
        self._made.add(name)
        self._sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self._sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        return name

    def _drop(self, name: str) -> None:
        self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._made.discard(name)

    def _reset(self, name: str) -> str:
        try:
            with contextlib.closing(_admin_connection(_named(self.admin_url, name))) as conn:
                if _pg_reset(conn, self._state.result()):
                    return name
        except Exception:  # noqa: BLE001 - a database that cannot be reset is made anew
            pass
        self._drop(name)
        return self._make()

    def take(self) -> str:
        """A database in the template's state, for one test."""
        if not self._ready:
            self._ready.append(self._thread.submit(self._make))
        name = self._ready.pop(0).result()
        if not self._ready:  # the next test's, made while this one runs
            self._ready.append(self._thread.submit(self._make))
        return name

    def give_back(self, name: str) -> None:
        self._ready.append(self._thread.submit(self._reset, name))

    def close(self) -> None:
        """Drop every database of the pool and stop the thread."""

        def drop_all():
            for name in sorted(self._made):
                self._drop(name)
            if self._admin is not None:
                self._admin.close()

        done = self._thread.submit(drop_all)
        self._thread.shutdown(wait=True)
        done.result()
        for made in self._ready:
            made.result()  # a failure to make or reset one shows here, not lost


def _pg_schema(cur) -> dict:
    """What a test could change in a database's schema besides adding tables."""
    queries = {
        "relations": "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public'",
        "constraints": "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(c.oid) "
        "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE n.nspname = 'public'",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
        "triggers": "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal",
        "functions": "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
        "types": "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm')",
        "extensions": "SELECT extname, extversion FROM pg_extension",
        "schemas": "SELECT nspname FROM pg_namespace",
    }
    schema = {}
    for key, sql in queries.items():
        cur.execute(sql)
        schema[key] = sorted(cur.fetchall())
    return schema


def _pg_tables(cur) -> list[str]:
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    return [row[0] for row in cur.fetchall()]


def _pg_state(conn) -> dict:
    """The template's schema, rows and sequence positions."""
    cur = conn.cursor()
    tables = _pg_tables(cur)
    rows = {}
    for table in tables:
        cur.execute(f'SELECT * FROM "{table}"')
        found = cur.fetchall()
        if found:
            rows[table] = ([d[0] for d in cur.description], found)
    cur.execute("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences "
                "WHERE schemaname = 'public'")  # fmt: skip
    sequences = cur.fetchall()  # before _pg_schema runs its queries on the same cursor
    return {"schema": _pg_schema(cur), "tables": tables, "rows": rows, "sequences": sequences}


def _pg_reset(conn, state: dict) -> bool:
    """Bring a test's database back to the template's state; False if its schema changed
    in a way other than added tables (the caller drops it)."""
    cur = conn.cursor()
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    cur.execute(f"SELECT pg_terminate_backend(pid) {others}")
    for _ in range(500):  # a terminated backend may still be finishing a statement
        cur.execute(f"SELECT count(*) {others}")
        if not cur.fetchone()[0]:
            break
        time.sleep(0.01)
    else:
        return False
    added = sorted(set(_pg_tables(cur)) - set(state["tables"]))
    cur.execute("BEGIN")
    if added:
        cur.execute("DROP TABLE " + ", ".join(f'"{t}"' for t in added) + " CASCADE")
    if _pg_schema(cur) != state["schema"]:
        cur.execute("ROLLBACK")
        return False
    # DELETE, not TRUNCATE (which makes new files for every table: ~50x slower here), with
    # the foreign-key triggers off for this transaction so the order does not matter
    cur.execute("SET LOCAL session_replication_role = replica")
    cur.execute("; ".join(f'DELETE FROM "{t}"' for t in state["tables"]))
    for table, (columns, rows) in state["rows"].items():
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        cur.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
    for sequence, last in state["sequences"]:
        cur.execute("SELECT setval(%s, %s, %s)", (sequence, last or 1, last is not None))
    cur.execute("COMMIT")
    return True


@pytest.fixture(scope="session")
def billhive_databases(tmp_path_factory):
    databases = Databases(
        tmp_path_factory.mktemp("billhive-template"), os.environ.get("BILLHIVE_TEST_POSTGRES")
    )
    yield databases
    databases.close()


@pytest.fixture(params=_backends())
def billhive_backend(request) -> str:
    """ "sqlite", and "postgresql" when ``BILLHIVE_TEST_POSTGRES`` names a server."""
    return request.param


@pytest.fixture
def billhive_database_url(billhive_backend, billhive_databases, tmp_path):
    url = billhive_databases.new(billhive_backend, tmp_path)
    yield url
    from core.db import database

    if database.obj is not None and not database.obj.is_closed():
        database.obj.close()
    billhive_databases.done(url)


# -- apps: built once per module and configuration, handed to each test re-homed -------------

# configuration that names the test's own folder and database: never part of an app's key
_PER_TEST = ("DATA_DIR", "DATABASE_URL")


class Apps:
    """Apps built by ``create_app``, kept for the module's later tests with the same
    configuration and environment (``BILLHIVE_*``). Building one (routes, the OpenAPI
    document, plugin loading) costs more than most tests; the next test with the same
    configuration gets the same app re-homed: its configuration as built again from the
    test's, pointed at the test's own database and data folder, and start-up run there
    (:func:`hostapp.app.start_database`). A test that asks twice gets two apps."""

    def __init__(self, databases: Databases):
        self.databases = databases
        self._idle: dict[str, list[tuple]] = {}
        self._lent: list[tuple] = []

    @staticmethod
    def _key(config: dict) -> str:
        env = sorted((k, v) for k, v in os.environ.items() if k.startswith("BILLHIVE_"))
        rest = sorted((k, repr(v)) for k, v in config.items() if k not in _PER_TEST)
        return repr((urlparse(config["DATABASE_URL"]).scheme, rest, env))

    def get(self, config: dict, new: bool = False):
        from hostapp.app import create_app

        key = self._key(config)
        if self._idle.get(key) and not new:
            entry = self._idle[key].pop()
            _rehome(*entry[1:], config, self.databases)
        else:
            app = create_app(dict(config))
            entry = (key, app, dict(app.config))
        self._lent.append(entry)
        return entry[1]

    def give_back(self) -> None:
        """At the end of a test: close the apps' connections and keep them for the next."""
        for entry in self._lent:
            database = entry[1].extensions["billhive"].database
            if not database.is_closed():
                database.close()
            self._idle.setdefault(entry[0], []).append(entry)
        self._lent.clear()


def _rehome(app, built: dict, config: dict, databases: Databases) -> None:
    from core import db
    from hostapp import config as config_module
    from hostapp.app import start_database

    ext = app.extensions["billhive"]
    app.config.clear()
    app.config.update(built)
    app.config.update(config_module.load(dict(config)))
    fresh = db.open_database(app.config["DATABASE_URL"])  # not connected: only its target
    options = dict(fresh.connect_params)
    if isinstance(fresh, db.pw.SqliteDatabase):
        options["timeout"] = fresh._timeout
    ext.database.init(fresh.database, **options)
    ext.host.license_key_paths = app.config["LICENSE_KEY_PATHS"]
    # what the earlier test left: its queue (built from its configuration) and a pause of
    # e-mail sending after a failed send (core.mail.tasks)
    app.extensions.pop("billhive_queue", None)
    app.extensions.pop("billhive_mail", None)
    db.bind(ext.database)
    if databases.untouched(app.config["DATABASE_URL"]):
        # a copy of the template, which this very start-up made: only the plugins' state
        with ext.database.connection_context():
            ext.host.refresh(force=True)
    else:
        with app.app_context():  # as create_app: core migrations may read the configuration
            start_database(ext.database, ext.host)


@pytest.fixture(scope="module")
def billhive_app_cache(billhive_databases):
    return Apps(billhive_databases)


@pytest.fixture
def billhive_make_app(request, billhive_app_cache):
    """``billhive_make_app(config)``: ``create_app(config)``, or the module's app of the same
    configuration re-homed to this config's database and data folder. A test marked
    ``billhive_new_app`` (it checks what building an app does) always gets a new one."""
    new = request.node.get_closest_marker("billhive_new_app") is not None
    yield lambda config: billhive_app_cache.get(config, new=new)
    billhive_app_cache.give_back()


@pytest.fixture
def billhive_app(billhive_plugins, billhive_modules, billhive_config, billhive_database_url,
                 billhive_make_app, tmp_path):  # fmt: skip
    from core import license_store
    from core.licenses import generate_keypair, issue_license

    private, public = generate_keypair()
    data_dir = tmp_path / "billhive-data"
    (data_dir / "license-keys").mkdir(parents=True, exist_ok=True)
    (data_dir / "license-keys" / "testing.pem").write_bytes(public)
    app = billhive_make_app(
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
        from core.billing.invoicing import lifecycle as invoices

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
