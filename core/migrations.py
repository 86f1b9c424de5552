"""Plugin migrations: each plugin's tables have their own numbered history.

A plugin that owns tables says how they came to be, in its module::

    MIGRATIONS = [(1, create_widgets), (2, add_colour)]

Each step receives a ``playhouse.migrate`` SchemaMigrator for the running database
(``SqliteMigrator`` or ``PostgresqlMigrator``; ``migrator.database`` is the database), or
``(migrator, db)`` like the ``up()`` of ``playhouse.migrations`` scripts. A step that creates a
table declares a frozen copy of the model inside itself, so later steps meet exactly the schema
earlier ones made, whatever the plugin's current model looks like.

Applied steps are rows of ``schema_migrations`` (plugin, version, name, plugin_version,
applied_at). Enabling a plugin applies its pending steps inside the enabling transaction
(SQLite and PostgreSQL both have transactional DDL: a failing step leaves the plugin disabled
and its schema as it was); ``billhive migrate`` applies those of enabled plugins after an
upgrade. A disabled plugin's tables are not touched until it is enabled again. Start-up never
migrates a plugin (it logs what is pending), with one exception: the core itself (an
essential plugin, ``core.builtin.MIGRATIONS``) cannot be disabled and every request needs its
tables, so start-up creates its missing tables and then applies its pending steps, in the
migrating transaction under the same lock (two workers starting at once apply each step once).

A plugin without ``MIGRATIONS`` keeps the simple rule: its models' tables are created, never
altered, when it is enabled.
"""

from __future__ import annotations

import inspect
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

from core.db import BaseModel, create_missing, database, is_postgres, utcnow
from core.errors import BillhiveError

log = logging.getLogger("billhive.migrations")

# PostgreSQL advisory lock taken by every migrating transaction, so two processes enabling
# or migrating at once apply each step once; the second sees it applied when it gets the lock.
_PG_LOCK = zlib.crc32(b"billhive.schema_migrations")


class SchemaMigration(BaseModel):
    """One applied step of one plugin's history."""

    plugin = pw.CharField(max_length=100)
    version = pw.IntegerField()
    name = pw.CharField(max_length=200)
    plugin_version = pw.CharField(max_length=40, default="")
    applied_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_migrations"
        primary_key = pw.CompositeKey("plugin", "version")


class MigrationError(BillhiveError):
    status = 500
    code = "migration_failed"


@dataclass(frozen=True)
class Step:
    plugin: str
    version: int
    name: str
    run: Callable = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.version} {self.name}"


def declared(plugin: str, module: ModuleType) -> list[Step] | None:
    """The plugin's steps in order, or None when it declares no ``MIGRATIONS``.

    Raises ValueError naming the plugin for a malformed list (checked when it is loaded)."""
    raw = getattr(module, "MIGRATIONS", None)
    if raw is None:
        return None
    steps: list[Step] = []
    last = 0
    for item in raw:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise ValueError(
                f"plugin '{plugin}': MIGRATIONS holds (version, callable) pairs, got {item!r}"
            )
        version, fn = item
        if isinstance(version, bool) or not isinstance(version, int) or version <= last:
            raise ValueError(
                f"plugin '{plugin}': migration versions are whole numbers from 1, each higher "
                f"than the one before; got {version!r} after {last}"
            )
        if not callable(fn):
            raise ValueError(f"plugin '{plugin}': migration {version} is not callable: {fn!r}")
        steps.append(Step(plugin, version, getattr(fn, "__name__", repr(fn)), fn))
        last = version
    return steps


def rename_table(migrator: SchemaMigrator, old: str, new: str) -> None:
    """A migration step's way to rename a table with everything named after it, so the table
    then looks exactly as if a model called ``new`` had created it: its indexes
    (``<old>_...`` -> ``<new>_...``) and, on PostgreSQL, its id sequence and constraints.
    Rows, keys pointing at the table and the data of its indexes stay as they are. A table
    already renamed (``old`` missing, ``new`` present) is left alone."""
    db = migrator.database
    if not db.table_exists(old) and db.table_exists(new):
        return
    migrate(migrator.rename_table(old, new))  # PostgreSQL: the id sequence too
    prefix = f"{old}_"

    def renamed(name: str) -> str:
        return new + name[len(old) :]

    if is_postgres():
        for index in db.get_indexes(new):
            if index.name.startswith(prefix):  # the primary key's index renames its constraint
                db.execute_sql(f'ALTER INDEX "{index.name}" RENAME TO "{renamed(index.name)}"')
        rows = db.execute_sql(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype <> 'p'",
            (f'"{new}"',),
        ).fetchall()
        for (name,) in rows:
            if name.startswith(prefix):
                db.execute_sql(
                    f'ALTER TABLE "{new}" RENAME CONSTRAINT "{name}" TO "{renamed(name)}"'
                )
        return
    # SQLite has no ALTER INDEX: each index is made again under its new name from its own SQL
    for index in db.get_indexes(new):
        if index.name.startswith(prefix) and index.sql:
            db.execute_sql(f'DROP INDEX "{index.name}"')
            db.execute_sql(index.sql.replace(f'"{index.name}"', f'"{renamed(index.name)}"', 1))


def ensure_table() -> None:
    SchemaMigration.create_table(safe=True)


def history(plugin: str) -> list[SchemaMigration]:
    """The applied steps of ``plugin``, oldest first."""
    ensure_table()
    return list(
        SchemaMigration.select()
        .where(SchemaMigration.plugin == plugin)
        .order_by(SchemaMigration.version)
    )


def pending(plugin: str, module: ModuleType) -> list[Step]:
    steps = declared(plugin, module) or []
    if not steps:
        return []
    done = {row.version for row in history(plugin)}
    return [s for s in steps if s.version not in done]


def _run(step: Step, migrator: SchemaMigrator) -> None:
    params = inspect.signature(step.run).parameters
    if len(params) >= 2:
        step.run(migrator, migrator.database)
    else:
        step.run(migrator)


def apply(plugin: str, module: ModuleType, plugin_version: str = "") -> list[Step]:
    """Apply the plugin's pending steps in one transaction (a savepoint inside the caller's
    transaction, e.g. the enabling one); returns the steps applied. A failing step raises
    MigrationError and nothing of this call stays."""
    steps = declared(plugin, module) or []
    if not steps:
        return []
    options = {}
    if not is_postgres() and not database.in_transaction():
        options["lock_type"] = "IMMEDIATE"  # SQLite: take the write lock before reading
    with database.atomic(**options):
        if is_postgres():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
        ensure_table()
        done = {
            row.version
            for row in SchemaMigration.select(SchemaMigration.version).where(
                SchemaMigration.plugin == plugin
            )
        }
        todo = [s for s in steps if s.version not in done]
        migrator = SchemaMigrator.from_database(database)
        for step in todo:
            try:
                with database.atomic():
                    _run(step, migrator)
            except Exception as exc:  # noqa: BLE001 - reported with the plugin and step
                raise MigrationError(
                    f"plugin '{plugin}': migration {step} failed, nothing was changed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            SchemaMigration.create(
                plugin=plugin, version=step.version, name=step.name, plugin_version=plugin_version
            )
            log.info("plugin '%s': applied migration %s", plugin, step)
    return todo


def prepare(host, plugin: str) -> list[Step]:
    """Make a plugin's tables ready as it is enabled: apply its migrations, or create its
    models' tables when it declares none."""
    loaded = host.get(plugin)
    if declared(plugin, loaded.module) is None:
        create_missing(host.models_of(plugin))
        return []
    return apply(plugin, loaded.module, loaded.meta.version)


def start(host) -> None:
    """At start-up: create the tables of enabled plugins without migrations (as before), and
    log, never apply, what enabled plugins with migrations still need."""
    ensure_table()
    for name, plugin in host.plugins.items():
        if name not in host.enabled:
            continue
        if plugin.meta.essential and declared(name, plugin.module) is not None:
            # the core: its tables as the models say, then its steps (which bring tables made
            # by an older release up to date: new columns, data, constraints)
            create_missing(host.models_of(name))
            if pending(name, plugin.module):
                _apply_standalone(name, plugin)
            continue
        if declared(name, plugin.module) is None:
            create_missing(host.models_of(name))
            continue
        waiting = pending(name, plugin.module)
        if waiting:
            log.warning(
                "plugin '%s' has %d pending migration(s) (%s): run `billhive migrate`",
                name,
                len(waiting),
                ", ".join(map(str, waiting)),
            )


@dataclass
class PluginPlan:
    plugin: str
    enabled: bool
    applied: list[SchemaMigration]
    pending: list[Step]
    unknown: list[int]  # applied versions the installed plugin no longer declares
    drift: str = ""  # models vs. tables once nothing is pending (playhouse.schema_diff)


def plan(host) -> list[PluginPlan]:
    """Every installed plugin that declares migrations, with what is applied and pending."""
    from playhouse.schema_diff import diff_models

    out = []
    for name, plugin in sorted(host.plugins.items()):
        steps = declared(name, plugin.module)
        if steps is None or plugin.meta.essential:  # the core's steps are applied at start
            continue
        rows = history(name)
        done = {r.version for r in rows}
        item = PluginPlan(
            plugin=name,
            enabled=name in host.enabled,
            applied=rows,
            pending=[s for s in steps if s.version not in done],
            unknown=sorted(done - {s.version for s in steps}),
        )
        models = host.models_of(name)
        if rows and not item.pending and models:
            try:
                diff = diff_models(database.obj, models)
            except ValueError as exc:
                item.drift = str(exc)
            else:
                item.drift = str(diff) if diff else ""
        out.append(item)
    return out


def migrate_enabled(host) -> dict[str, list[Step]]:
    """``billhive migrate``: apply the pending steps of every enabled plugin, each plugin in
    its own transaction. Disabled plugins are left alone (enabling applies theirs)."""
    applied = {}
    for name, plugin in sorted(host.plugins.items()):
        if plugin.meta.essential:  # the core's steps are applied at start
            continue
        if name in host.enabled and pending(name, plugin.module):
            applied[name] = _apply_standalone(name, plugin)
    return applied


def _apply_standalone(name: str, plugin) -> list[Step]:
    if is_postgres() or database.in_transaction():
        return apply(name, plugin.module, plugin.meta.version)
    # SQLite outside a transaction: like playhouse's migration_context, switch foreign-key
    # enforcement off so a table rebuild (add_not_null, alter_column_type ...) does not fire
    # ON DELETE actions, and check the keys before committing.
    enforced = bool(database.pragma("foreign_keys"))
    if enforced:
        database.pragma("foreign_keys", 0)
    try:
        with database.atomic(lock_type="IMMEDIATE"):
            steps = apply(name, plugin.module, plugin.meta.version)
            broken = database.execute_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise MigrationError(
                    f"plugin '{name}': migrations left broken foreign keys {broken[:5]}; "
                    "nothing was changed"
                )
        return steps
    finally:
        if enforced:
            database.pragma("foreign_keys", 1)


def draft(host, plugin: str) -> str:
    """A migration step turning the plugin's tables into its current models (from
    ``playhouse.schema_diff``), to review and add to ``MIGRATIONS``; empty if they match."""
    from playhouse.migrations import template
    from playhouse.schema_diff import diff_models

    diff = diff_models(database.obj, host.models_of(plugin))
    return template(diff) if diff else ""
