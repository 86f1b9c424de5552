"""Plugin migrations: a plugin's tables have their own history; enabling applies what is
pending in the enabling transaction; ``billhive migrate`` shows and applies an upgrade; an
upgrade adding a column keeps every row of a table full of data (SQLite and PostgreSQL).

The plugin is "stock" in two releases written into a temporary folder: 1.0 creates
``stock_item``; 2.0 adds a ``warehouse`` column (not null, default "main", indexed).
"""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
import uuid

import pytest
from click.testing import CliRunner

import hostapp.cli
from core import migrations
from core.plugins import PluginLoadError

HEADER = """
import peewee as pw
from playhouse.migrate import migrate

from core import hookimpl
from core.db import BaseModel
from core.registry import PluginMeta

PLUGIN = PluginMeta(name="stock", title="Stock", version={version!r})


def create_items(migrator):
    class Item(pw.Model):  # frozen as of release 1.0
        sku = pw.CharField(max_length=40, unique=True)
        quantity = pw.IntegerField()

        class Meta:
            database = migrator.database
            table_name = "stock_item"

    migrator.database.create_tables([Item])


@hookimpl
def register_models():
    return [Item]
"""

RELEASE_1 = """
class Item(BaseModel):
    sku = pw.CharField(max_length=40, unique=True)
    quantity = pw.IntegerField()

    class Meta:
        table_name = "stock_item"


MIGRATIONS = [(1, create_items)]
"""

RELEASE_2 = """
class Item(BaseModel):
    sku = pw.CharField(max_length=40, unique=True)
    quantity = pw.IntegerField()
    warehouse = pw.CharField(max_length=20, default="main", index=True)

    class Meta:
        table_name = "stock_item"


def add_warehouse(migrator):
    migrate(
        migrator.add_column(
            "stock_item", "warehouse", pw.CharField(max_length=20, default="main", index=True)
        )
    )


MIGRATIONS = [(1, create_items), (2, add_warehouse)]
"""

BROKEN_2 = """
class Item(BaseModel):
    sku = pw.CharField(max_length=40, unique=True)
    quantity = pw.IntegerField()
    warehouse = pw.CharField(max_length=20, default="main")

    class Meta:
        table_name = "stock_item"


def add_warehouse_then_fail(migrator):
    migrate(migrator.add_column("stock_item", "warehouse", pw.CharField(default="main")))
    raise RuntimeError("disk full")


MIGRATIONS = [(1, create_items), (2, add_warehouse_then_fail)]
"""


@pytest.fixture
def release(tmp_path, monkeypatch):
    """``release(body, version)`` -> the ``modules`` mapping loading that release as "stock"."""
    folder = tmp_path / "releases"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    written = []

    def write(body: str, version: str) -> dict[str, str]:
        module = f"stock_{version.replace('.', '_')}_{uuid.uuid4().hex[:8]}"
        source = HEADER.format(version=version) + textwrap.dedent(body)
        (folder / f"{module}.py").write_text(source)
        importlib.invalidate_caches()
        written.append(module)
        return {"stock": module}

    yield write
    for module in written:
        sys.modules.pop(module, None)


def _items(app):
    module = app.extensions["billhive"].host.get("stock").module
    return module.Item


def _columns(app, table="stock_item"):
    db = app.extensions["billhive"].database
    return [c.name for c in db.get_columns(table)]


@pytest.fixture
def run_cli(monkeypatch):
    """``run_cli(app, *args)``: the ``billhive`` CLI against that app (like an operator)."""

    def run(app, *args):
        monkeypatch.setattr(hostapp.cli, "_app", app)
        result = CliRunner().invoke(hostapp.cli.main, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    yield run
    hostapp.cli._app = None


def test_enabling_a_plugin_creates_its_tables_through_its_first_migration(make_app, release):
    app = make_app(plugins=[], modules=release(RELEASE_1, "1.0"))
    host = app.extensions["billhive"].host
    db = app.extensions["billhive"].database
    with app.app_context(), db.connection_context():
        assert not db.table_exists("stock_item")  # installed is not enabled
        assert host.set_enabled("stock", True)
        assert _columns(app) == ["id", "sku", "quantity"]
        [row] = migrations.history("stock")
        assert (row.plugin, row.version, row.name, row.plugin_version) == (
            "stock",
            1,
            "create_items",
            "1.0",
        )
        [plan] = migrations.plan(host)
        assert plan.enabled and plan.pending == [] and plan.drift == ""  # tables match models
        # disabling and enabling again applies nothing twice
        host.set_enabled("stock", False)
        host.set_enabled("stock", True)
        assert [r.version for r in migrations.history("stock")] == [1]


def test_an_upgrade_adding_a_column_keeps_a_thousand_rows(make_app, release, run_cli, caplog):
    v1 = make_app(plugins=[], modules=release(RELEASE_1, "1.0"))
    db = v1.extensions["billhive"].database
    rows = [{"sku": f"SKU-{i:04d}", "quantity": i * 7 % 1000} for i in range(1000)]
    with v1.app_context(), db.connection_context():
        v1.extensions["billhive"].host.set_enabled("stock", True)
        Item = _items(v1)
        with db.atomic():
            for start in range(0, len(rows), 200):
                Item.insert_many(rows[start : start + 200]).execute()
    db.close()

    # the operator installs release 2.0 and restarts: start-up says what is pending
    caplog.set_level(logging.WARNING, logger="billhive.migrations")
    v2 = make_app(plugins=[], modules=release(RELEASE_2, "2.0"))
    assert (
        "plugin 'stock' has 1 pending migration(s) (2 add_warehouse): run `billhive migrate`"
        in [r.getMessage() for r in caplog.records]
    )
    out = run_cli(v2, "migrate", "--plan")
    assert "stock (enabled): at 1\n  pending 2 add_warehouse\n1 migration(s) to apply." in out
    with v2.app_context(), v2.extensions["billhive"].database.connection_context():
        assert "warehouse" not in _columns(v2)  # --plan changed nothing

    out = run_cli(v2, "migrate")
    assert out.endswith("stock: applied 2 add_warehouse\n")
    with v2.app_context(), v2.extensions["billhive"].database.connection_context():
        Item = _items(v2)
        assert _columns(v2) == ["id", "sku", "quantity", "warehouse"]
        kept = [
            {"sku": i.sku, "quantity": i.quantity}
            for i in Item.select().order_by(Item.sku)  # the new model reads old rows
        ]
        assert kept == rows
        assert Item.select().where(Item.warehouse == "main").count() == 1000
        Item.create(sku="SKU-NEW", quantity=1, warehouse="north")
        with pytest.raises(Exception):  # noqa: B017 - unique(sku) survived the table rebuild
            with v2.extensions["billhive"].database.atomic():
                Item.create(sku="SKU-0001", quantity=1)
        assert [r.version for r in migrations.history("stock")] == [1, 2]
        assert migrations.history("stock")[1].plugin_version == "2.0"
        [plan] = migrations.plan(v2.extensions["billhive"].host)
        assert plan.pending == [] and plan.drift == ""  # columns and indexes match 2.0

    assert run_cli(v2, "migrate").endswith("stock (enabled): at 2\nNothing to apply.\n")


def test_a_failing_migration_leaves_the_plugin_disabled_and_its_table_as_it_was(make_app, release):
    v1 = make_app(plugins=[], modules=release(RELEASE_1, "1.0"))
    db = v1.extensions["billhive"].database
    with v1.app_context(), db.connection_context():
        host = v1.extensions["billhive"].host
        host.set_enabled("stock", True)
        _items(v1).create(sku="KEEP", quantity=3)
        host.set_enabled("stock", False)
    db.close()

    broken = make_app(plugins=[], modules=release(BROKEN_2, "2.0"))
    host = broken.extensions["billhive"].host
    with broken.app_context(), broken.extensions["billhive"].database.connection_context():
        with pytest.raises(migrations.MigrationError) as err:
            host.set_enabled("stock", True)
        assert err.value.message == (
            "plugin 'stock': migration 2 add_warehouse_then_fail failed, nothing was changed: "
            "RuntimeError: disk full"
        )
        host.refresh(force=True)
        assert not host.is_enabled("stock")
        assert _columns(broken) == ["id", "sku", "quantity"]
        assert [r.version for r in migrations.history("stock")] == [1]
        assert [i.sku for i in _items(v1).select()] == ["KEEP"]


def test_a_disabled_plugin_is_migrated_when_it_is_enabled_not_before(make_app, release, run_cli):
    v1 = make_app(plugins=[], modules=release(RELEASE_1, "1.0"))
    db = v1.extensions["billhive"].database
    with v1.app_context(), db.connection_context():
        v1.extensions["billhive"].host.set_enabled("stock", True)
        _items(v1).create(sku="A", quantity=1)
        v1.extensions["billhive"].host.set_enabled("stock", False)
    db.close()

    v2 = make_app(plugins=[], modules=release(RELEASE_2, "2.0"))
    out = run_cli(v2, "migrate")
    assert (
        "stock (disabled): at 1\n  pending 2 add_warehouse (applied when the plugin is enabled)"
        in out
    )
    assert out.endswith("Nothing to apply.\n")
    with v2.app_context(), v2.extensions["billhive"].database.connection_context():
        assert "warehouse" not in _columns(v2)  # a disabled plugin's data stays untouched
        v2.extensions["billhive"].host.set_enabled("stock", True)
        assert [(i.sku, i.warehouse) for i in _items(v2).select()] == [("A", "main")]


def test_migrate_draft_prints_the_step_a_changed_model_needs(make_app, release, run_cli):
    v1 = make_app(plugins=[], modules=release(RELEASE_1, "1.0"))
    with v1.app_context(), v1.extensions["billhive"].database.connection_context():
        v1.extensions["billhive"].host.set_enabled("stock", True)
        assert "match its models" in run_cli(v1, "migrate", "--draft", "stock")
    v1.extensions["billhive"].database.close()

    # the developer edited the model (release 2.0) but has not written the step yet
    no_step = RELEASE_2.replace("(2, add_warehouse)", "")
    v2 = make_app(plugins=[], modules=release(no_step, "2.0"))
    plan = run_cli(v2, "migrate", "--plan")
    assert "models differ from the tables; draft a migration with" in plan
    assert "warehouse" in plan
    draft = run_cli(v2, "migrate", "--draft", "stock")
    assert "migrator.add_column('stock_item', 'warehouse'" in draft
    assert "def up(migrator, db):" in draft


@pytest.mark.parametrize(
    "declaration,message",
    [
        ("MIGRATIONS = [(1, create_items), (1, create_items)]", "got 1 after 1"),
        ("MIGRATIONS = [(0, create_items)]", "got 0 after 0"),
        ("MIGRATIONS = [create_items]", "holds (version, callable) pairs"),
        ("MIGRATIONS = [(1, 'create_items')]", "migration 1 is not callable"),
    ],
)
def test_a_malformed_migration_list_is_refused_at_start_up_by_plugin_name(
    make_app, release, declaration, message
):
    body = RELEASE_1.replace("MIGRATIONS = [(1, create_items)]", declaration)
    with pytest.raises(PluginLoadError) as err:
        make_app(plugins=[], modules=release(body, "1.0"))
    assert "plugin 'stock'" in str(err.value) and message in str(err.value)


def test_plugins_without_migrations_still_get_their_tables_when_enabled(make_app):
    app = make_app(plugins=[], modules={"notes": "tests.plugins.notes"})
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        app.extensions["billhive"].host.set_enabled("notes", True)
        assert app.extensions["billhive"].database.table_exists("notes_note")
        assert migrations.history("notes") == []
