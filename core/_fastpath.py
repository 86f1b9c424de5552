"""The core's fast-path statements: SQL built once, rows as the driver returns them.

Private to the core, and deliberately not part of the plugin API (``core.kit``): these
statements bypass what the models guard (``save`` overrides, field conversions on the way
out), so only the core's own hot paths use them, where generating a query's SQL cost more
than running it — a bill run's invoices, lines, ledger and audit entries, usage imports, the
queue's tasks and the per-request plugin-state check. Plugins query through their models.
"""

from __future__ import annotations

import peewee as pw

from core.db import database

# -- hot-path inserts ------------------------------------------------------------------------

INSERT_CHUNK = 500  # rows per statement: SQLite allows 32,766 parameters, rows have < 20 columns
_INSERT_SQL: dict[tuple, str] = {}


def _insert(model, rows: list[dict], ignore_conflicts: bool = False):
    """INSERT ``rows`` in one statement; returns (cursor, the first row with its defaults)."""
    meta = model._meta
    names = tuple(rows[0])
    fields = [meta.fields[name] for name in names]
    defaults = [(f, d) for f, d in meta.defaults.items() if f.name not in names]
    fields += [f for f, _ in defaults]
    full = [
        [row[name] for name in names] + [d() if callable(d) else d for _, d in defaults]
        for row in rows
    ]
    params = [f.db_value(v) for values in full for f, v in zip(fields, values, strict=True)]
    key = (type(database.obj), model, names, len(rows), ignore_conflicts)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        query = model.insert_many(full, fields=fields)
        if ignore_conflicts:
            query = query.on_conflict_ignore()
        if database.obj.returning_clause:  # PostgreSQL: the new ids come back as rows
            query = query.returning(meta.primary_key)
        sql, expected = query.sql()
        if list(expected) != params:  # peewee converts differently: the shortcut is wrong
            raise RuntimeError(f"insert_rows({model.__name__}): unexpected INSERT layout")
        _INSERT_SQL[key] = sql
    cursor = database.execute_sql(sql, params)
    return cursor, dict(zip((f.name for f in fields), full[0], strict=True))


def insert_rows(model, rows: list[dict], *, ignore_conflicts: bool = False) -> int:
    """INSERT ``rows`` (dicts of field name -> Python value, every row with the same keys),
    ``INSERT_CHUNK`` rows a statement, exactly as ``model.insert_many(rows).execute()`` would
    (same columns, Python-side defaults and ``db_value`` conversions, checked against peewee's
    own statement the first time) but with the SQL text built once per (database kind, model,
    columns, row count): generating SQL was most of a bill run's CPU time. For hot paths (a
    bill run's invoices, lines, ledger and audit entries, usage imports); model methods such
    as ``save`` are not called. ``ignore_conflicts`` skips rows a unique index refuses
    (``.on_conflict_ignore()``). Returns how many rows were inserted."""
    inserted = 0
    for chunk in pw.chunked(rows, INSERT_CHUNK):
        inserted += _insert(model, chunk, ignore_conflicts)[0].rowcount
    return inserted


def insert_row(model, values: dict):
    """One row as :func:`insert_rows` writes it; returns the instance with its id and
    defaults, as ``model.create(**values)`` would."""
    cursor, stored = _insert(model, [values])
    new_id = cursor.fetchone()[0] if database.obj.returning_clause else cursor.lastrowid
    instance = model(**stored)
    instance.id = new_id
    instance._dirty.clear()
    return instance


# -- hot-path queries ------------------------------------------------------------------------


class Param(pw.Node):
    """The ``index``-th argument of a :class:`Prepared` query, bound as a parameter."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def __sql__(self, ctx):
        return ctx.value(_Slot(self.index), converter=False)


class _Slot(int):
    """Where an argument goes in a compiled statement's parameters."""


class Prepared:
    """A query whose SQL is generated once per database kind; each call binds new values.

    ``build(*params)`` returns the peewee query, with a :class:`Param` wherever an argument
    goes (constants stay constants)::

        _has_topup = Prepared(lambda invoice: PrepaidTopup.select(SQL("1"))
                              .where(PrepaidTopup.invoice == invoice).limit(1))
        _has_topup.scalar(invoice_id)

    Arguments are bound as they are given: pass database values (ids, strings, dates), not
    model instances. Rows come back as the driver returns them (no ``python_value``).
    For statements run once per invoice of a bill run, where generating the SQL cost more
    than running it.
    """

    def __init__(self, build):
        self.build = build
        self.arity = build.__code__.co_argcount
        self._compiled: dict[type, tuple[str, list]] = {}
        self.model = None  # set when the query selects a whole model (see instance())

    def execute(self, *args):
        """Run with ``args``; returns the cursor."""
        if len(args) != self.arity:
            raise TypeError(f"expected {self.arity} argument(s), got {len(args)}")
        compiled = self._compiled.get(type(database.obj))
        if compiled is None:
            query = self.build(*map(Param, range(self.arity)))
            if isinstance(query, pw.ModelSelect) and query._is_default:
                self.model = query.model
            compiled = self._compiled[type(database.obj)] = query.sql()
        sql, template = compiled
        params = [args[p] if type(p) is _Slot else p for p in template]
        return database.execute_sql(sql, params)

    def instance(self, *args):
        """The first row as an instance of the model a ``Model.select()`` query selects, as
        ``query.get()`` would make it, or None."""
        row = self.execute(*args).fetchone()
        if self.model is None:
            raise TypeError("instance() needs a query selecting one whole model")
        if row is None:
            return None
        fields = self.model._meta.sorted_fields
        values = {f.name: f.python_value(v) for f, v in zip(fields, row, strict=True)}
        instance = self.model(__no_default__=1, **values)
        instance._dirty.clear()
        return instance

    def scalar(self, *args):
        """The first column of the first row, or None."""
        row = self.execute(*args).fetchone()
        return row[0] if row else None

    def rowcount(self, *args) -> int:
        """Rows an UPDATE or DELETE changed."""
        return self.execute(*args).rowcount
