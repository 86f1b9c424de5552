"""Core migration 7: the indexes the lists of ``core.find.lists`` sort and filter by, so a
page of any list is an index range and a LIMIT, also at 100,000 accounts (checked with
EXPLAIN on both backends by tests/test_find_indexes.py; measured by ``python -m bench
--only lists``).

* ``account (parent_id, name, id)``: one level of the tree in name order (the Accounts page);
* ``account (name, id)``: the whole subtree in name order;
* ``invoice (number, id)``, ``invoice (issued_at, id)``, ``invoice (due_date, id)``: the
  invoice sorts (a bill run gives thousands of invoices the same due date: the id, every
  sort's tiebreak, keeps them in index order);
* ``subscription (start, id)``: the subscription sort;
* ``user (name, id)``: the users sort by name (e-mail has its unique index);
* on PostgreSQL, ``audit_entry (action COLLATE "C")``: the action filter's byte-wise range.

``CREATE INDEX IF NOT EXISTS``: the step is the same on a database made before it and on a
new one (SQLite and PostgreSQL both know the clause).
"""

from __future__ import annotations

LIST_INDEXES = [
    ("account_parent_name", "account", ("parent_id", "name", "id")),
    ("account_name", "account", ("name", "id")),
    ("invoice_number_id", "invoice", ("number", "id")),
    ("invoice_issued_at_id", "invoice", ("issued_at", "id")),
    ("invoice_due_date_id", "invoice", ("due_date", "id")),
    ("subscription_start_id", "subscription", ("start", "id")),
    ("user_name_id", "user", ("name", "id")),
]


def add_list_indexes(migrator, db) -> None:
    from core.db import is_postgres

    for name, table, columns in LIST_INDEXES:
        cols = ", ".join(f'"{c}"' for c in columns)
        db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({cols})')
    if is_postgres():
        # the audit action filter compares byte by byte (listing.prefix_range), which the
        # column's own index, in the database's collation, may not serve
        db.execute_sql(
            'CREATE INDEX IF NOT EXISTS "audit_entry_action_bytes" '
            'ON "audit_entry" ("action" COLLATE "C")'
        )
