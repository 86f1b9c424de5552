"""The database: one peewee proxy the models bind to, opened from a URL per application.

SQLite runs in WAL mode with a busy timeout, and every transaction begins IMMEDIATE, so
concurrent writers queue instead of failing with "database is locked"; PostgreSQL is accepted
as ``postgresql://user@host:port/name``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlparse

import peewee as pw
from playhouse.db_url import connect as url_connect

database = pw.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 30000,
    "foreign_keys": 1,
    "synchronous": "normal",
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class JSONField(pw.TextField):
    """JSON stored as text: the same on SQLite and PostgreSQL."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    def python_value(self, value):
        return None if value is None else json.loads(value)


def open_database(url: str) -> pw.Database:
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        # BEGIN IMMEDIATE: a write transaction takes the write lock when it starts. A deferred
        # one that read first and then writes cannot wait for another writer (its snapshot is
        # stale): SQLite fails it at once with "database is locked", busy timeout or not.
        db = url_connect(url, pragmas=SQLITE_PRAGMAS, timeout=30, lock_type="IMMEDIATE")
    elif scheme in ("postgres", "postgresql"):
        db = url_connect(url.replace("postgres://", "postgresql://", 1), autorollback=True)
    else:
        raise ValueError(
            f"BILLHIVE_DATABASE_URL: unsupported scheme '{scheme}' "
            "(use sqlite:///path or postgresql://...)"
        )
    return db


def bind(db: pw.Database) -> None:
    database.initialize(db)


def is_postgres() -> bool:
    return isinstance(database.obj, pw.PostgresqlDatabase)


def create_missing(models) -> set[str]:
    """``create_tables(models, safe=True)`` that asks the catalog once instead of sending a
    ``CREATE ... IF NOT EXISTS`` per table and index (every start-up, for ~80 tables and
    their indexes): missing tables are made with their indexes, and an existing table gets
    the indexes its model declares and the database lacks. Returns the names of the indexes
    the database had before."""
    tables = set(database.get_tables())
    if is_postgres():
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    indexes = {row[0] for row in database.execute_sql(sql).fetchall()}
    for model in pw.sort_models(models):
        if model._meta.table_name not in tables:
            model.create_table(safe=True)
            continue
        for index in model._meta.fields_to_index():
            if not (isinstance(index, pw.Index) and index._name in indexes):
                database.execute(model._schema._create_index(index, safe=True))
    return indexes


def write_transaction():
    """A write transaction that takes the write lock up front on SQLite (BEGIN IMMEDIATE), so
    two processes queue on the busy timeout instead of one failing with 'database is locked'
    when it upgrades a read transaction. A savepoint when already inside a transaction."""
    if not is_postgres() and not database.in_transaction():
        return database.atomic("IMMEDIATE")
    return database.atomic()


def lock_row(model, row_id, *, key: bool = False):
    """The row ``row_id`` of ``model`` as stored now, locked until the transaction ends (call
    inside a write transaction), or None when there is none. The guard of a read-then-write:
    whoever holds the lock reads the row, checks it and changes it; a concurrent caller waits
    and then reads what the first one committed.

    PostgreSQL: ``SELECT ... FOR NO KEY UPDATE`` (``key=True``: ``FOR UPDATE``, for a row that
    may be deleted). NO KEY UPDATE conflicts with other writers of the row but not with the
    KEY SHARE lock an insert referencing it takes. SQLite: a plain read, since a write
    transaction there begins IMMEDIATE and so already holds the database's write lock."""
    query = model.select().where(model._meta.primary_key == row_id)
    if isinstance(database.obj, pw.PostgresqlDatabase):
        query = query.for_update("FOR UPDATE" if key else "FOR NO KEY UPDATE")
    return query.get_or_none()
