"""Coverage: which days of what a bill run bills are invoiced already.

Every line a bill run writes bills days of something: a subscription, or what a plugin's
charge names with its ``coverage`` key (see :class:`core.registry.Charge`). The invoice's
transaction records them as :class:`~core.billing.models.Coverage` rows, one half-open date
range ``[start, end)`` per key per invoice, and the **database refuses** a row that overlaps
another row of the same key:

* PostgreSQL: an exclusion constraint ``EXCLUDE USING gist (key WITH =, daterange(start, end)
  WITH &&)`` (extension ``btree_gist``, created when missing);
* SQLite: a ``BEFORE INSERT`` trigger that aborts the statement (and ``BEFORE UPDATE``: rows
  are never changed).

A refused row raises ``IntegrityError``, which rolls the whole invoice back (the engine
reports it "already invoiced"). Subscriptions also keep ``billed_through`` (the end of their
coverage), moved by the same transaction with a compare-and-set.

Keys: ``subscription:<id>`` (the engine), ``wholesale:<reseller>:<subscription>`` (reseller
wholesale), ``billing_units:<account>`` (billing units); a charge without a key gets
``charges:<account>:<source>``.

:func:`migrate_coverage` is the core's schema migration that brought this in: it adds the
columns and the table to an existing database, fills coverage and ``billed_through`` from the
invoices bill runs wrote before, and installs the constraint (``core.builtin.MIGRATIONS``,
applied at start-up under the migration lock).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date

import peewee as pw

from core.db import database, is_postgres

log = logging.getLogger("billhive.billing")

TABLE = "billing_coverage"
CONSTRAINT = "billing_coverage_no_overlap"


def subscription_key(subscription_id: int) -> str:
    return f"subscription:{subscription_id}"


def wholesale_key(reseller_id: int, subscription_id: int) -> str:
    return f"wholesale:{reseller_id}:{subscription_id}"


def charges_key(account_id: int, source: str) -> str:
    return f"charges:{account_id}:{source or 'plugin'}"[:120]


def billed_through(keys) -> dict[str, date]:
    """key -> the end of its last coverage row (the first day not billed yet after it), for
    the keys that have any."""
    from core.billing.models import Coverage

    keys = list(set(keys))
    out: dict[str, date] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        query = (
            Coverage.select(Coverage.key, pw.fn.MAX(Coverage.end).alias("through"))
            .where(Coverage.key.in_(chunk))
            .group_by(Coverage.key)
        )
        for row in query.dicts():
            through = row["through"]
            if isinstance(through, str):  # SQLite aggregates come back as text
                through = date.fromisoformat(through)
            out[row["key"]] = through
    return out


def key_through(key: str) -> date | None:
    """The end of ``key``'s coverage, or None when nothing of it is billed yet."""
    return billed_through([key]).get(key)


# -- the database's guard --------------------------------------------------------------------


def install_constraints(db=None) -> None:
    """Make the database refuse overlapping coverage of one key (idempotent)."""
    db = db or database
    if is_postgres():
        db.execute_sql("CREATE EXTENSION IF NOT EXISTS btree_gist")
        exists = db.execute_sql(
            "SELECT 1 FROM pg_constraint WHERE conname = %s", (CONSTRAINT,)
        ).fetchone()
        if not exists:
            db.execute_sql(
                f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{CONSTRAINT}" EXCLUDE USING gist '
                '("key" WITH =, daterange("start", "end") WITH &&)'
            )
        return
    db.execute_sql(
        f'CREATE TRIGGER IF NOT EXISTS "{CONSTRAINT}" BEFORE INSERT ON "{TABLE}" '
        f'FOR EACH ROW WHEN EXISTS (SELECT 1 FROM "{TABLE}" c WHERE c."key" = NEW."key" '
        'AND c."start" < NEW."end" AND NEW."start" < c."end") '
        "BEGIN SELECT RAISE(ABORT, 'billing_coverage: these days of this key are billed "
        "already (overlapping coverage)'); END"
    )
    db.execute_sql(
        f'CREATE TRIGGER IF NOT EXISTS "{CONSTRAINT}_frozen" BEFORE UPDATE OF "key", "start", '
        f'"end" ON "{TABLE}" FOR EACH ROW '
        "BEGIN SELECT RAISE(ABORT, 'billing_coverage: coverage rows are never changed'); END"
    )


# -- the migration ---------------------------------------------------------------------------


def _columns(db, table: str) -> set[str]:
    return {c.name for c in db.get_columns(table)}


def migrate_coverage(migrator, db) -> None:
    """Core migration 1: coverage instead of period keys (idempotent on a new database,
    whose tables the models made already)."""
    from playhouse.migrate import migrate

    from core.billing.models import Coverage, InvoiceLine, Subscription

    lines, subs = InvoiceLine._meta.table_name, Subscription._meta.table_name
    wanted = [
        (subs, "billed_through", Subscription.billed_through),
        (lines, "service_start", InvoiceLine.service_start),
        (lines, "service_end", InvoiceLine.service_end),
    ]
    ops = [
        migrator.add_column(table, name, column)
        for table, name, column in wanted
        if name not in _columns(db, table)
    ]
    if ops:
        migrate(*ops)
    Coverage.create_table(safe=True)
    # the old exactly-once key refused a second invoice for a period even when it billed
    # other days (a subscription back-dated into an invoiced period); coverage replaces it
    db.execute_sql('DROP INDEX IF EXISTS "invoice_account_id_issuer_id_run_period_kind"')
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "invoice_account_id_issuer_id_run_period" '
        'ON "invoice" ("account_id", "issuer_id", "run_period")'
    )
    if not Coverage.select().exists():
        backfill()
    install_constraints(db)


def _as_date(value):
    return date.fromisoformat(value) if isinstance(value, str) else value


def backfill() -> dict[str, int]:
    """Coverage rows and ``billed_through`` from the invoices bill runs wrote before coverage
    existed: each line names what it billed in ``source`` (``subscription:<id>``,
    ``usage:<id>``, ``wholesale:<id>``, ``wholesale-usage:<id>``, a plugin's name); its
    invoice's period, cut to the subscription's start and end, is what it covered. A range
    overlapping one taken already (history re-billed by the cycle-day bug this replaced) is
    left out and logged: credit that invoice by hand. Returns counts."""
    from core.billing.models import Coverage, Invoice, InvoiceLine, Subscription

    rows = (
        InvoiceLine.select(
            InvoiceLine.source,
            Invoice.id.alias("invoice_id"),
            Invoice.account.alias("account_id"),
            Invoice.period_start,
            Invoice.period_end,
        )
        .join(Invoice)
        .where(
            Invoice.run_period.is_null(False)
            & (Invoice.kind == "invoice")
            & Invoice.period_start.is_null(False)
            & Invoice.period_end.is_null(False)
        )
        .dicts()
    )
    wanted: dict[tuple[int, str], list] = {}  # (invoice, key) -> [start, end]
    sub_ids: dict[tuple[int, str], int] = {}
    for row in rows:
        source = row["source"] or ""
        kind, _, ident = source.partition(":")
        start, end = _as_date(row["period_start"]), _as_date(row["period_end"])
        sub_id = int(ident) if ident.isdigit() else None
        if kind in ("subscription", "usage") and sub_id:
            key = subscription_key(sub_id)
        elif kind in ("wholesale", "wholesale-usage") and sub_id:
            key = wholesale_key(row["account_id"], sub_id)
        elif kind == "billing_units":
            key = f"billing_units:{row['account_id']}"
        else:
            key = charges_key(row["account_id"], source)
        item = (row["invoice_id"], key)
        wanted.setdefault(item, [start, end])
        if sub_id and kind != "billing_units" and kind not in ("", "plugin"):
            sub_ids[item] = sub_id
    subs = {}
    ids = list(set(sub_ids.values()))
    for i in range(0, len(ids), 500):
        for s in Subscription.select(Subscription.id, Subscription.start, Subscription.end).where(
            Subscription.id.in_(ids[i : i + 500])
        ):
            subs[s.id] = s
    by_key: dict[str, list] = defaultdict(list)
    for (invoice_id, key), (start, end) in wanted.items():
        sub = subs.get(sub_ids.get((invoice_id, key)))
        if sub is not None:
            start = max(start, sub.start)
            if sub.end is not None:
                end = min(end, sub.end)
        if start < end:
            by_key[key].append((start, end, invoice_id))
    inserted = overlapping = 0
    through: dict[int, date] = {}
    batch = []
    for key, ranges in by_key.items():
        last_end = None
        for start, end, invoice_id in sorted(ranges):
            if last_end is not None and start < last_end:
                overlapping += 1
                log.warning(
                    "coverage migration: invoice %s bills %s..%s of %s, billed already by an "
                    "earlier invoice; left out (credit it)", invoice_id, start, end, key
                )  # fmt: skip
                continue
            batch.append({"key": key, "start": start, "end": end, "invoice": invoice_id})
            inserted += 1
            last_end = end
        if key.startswith("subscription:") and last_end is not None:
            through[int(key.split(":", 1)[1])] = last_end
    for i in range(0, len(batch), 500):
        Coverage.insert_many(batch[i : i + 500]).execute()
    for sub_id, day in through.items():
        Subscription.update(billed_through=day).where(Subscription.id == sub_id).execute()
    return {"coverage": inserted, "overlapping": overlapping, "subscriptions": len(through)}
