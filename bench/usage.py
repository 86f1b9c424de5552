"""Benchmark: usage import, records per second, against raw ``executemany``.

Run from the repository root:

    python -m bench.usage [--records N] [--subscriptions S]

Times what ``billhive usage import`` does with N usage records spread over S subscriptions
(every row validated — marshmallow schema, subscription, decimal quantity, date inside the
subscription — then inserted idempotently by external id in chunks, with an audit entry per
chunk) and, in the same run, a baseline: plain ``sqlite3`` ``executemany`` inserting the same
rows, in one transaction, into the same schema (the ``usage_record`` table and every index
exactly as the product's database has them, read from it; INSERT OR IGNORE). Asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import Report, config_for, in_app, make_app, temp_root


def rows_for(subscriptions: list[int], records: int) -> list[dict]:
    start = date(2026, 1, 1)
    return [
        {"external_id": f"e{n}", "subscription_id": subscriptions[n % len(subscriptions)],
         "quantity": f"{n % 97}.{n % 10}", "date": (start + timedelta(days=n % 28)).isoformat()}
        for n in range(records)
    ]  # fmt: skip


def product_schema(path: Path) -> list[str]:
    """The CREATE statements of ``usage_record`` and its indexes in the product's database,
    without the foreign keys (the baseline has no subscription or account table)."""
    con = sqlite3.connect(path)
    found = [sql for (sql,) in con.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'usage_record' AND sql IS NOT NULL "
        "ORDER BY type DESC")]  # fmt: skip
    con.close()
    return [re.sub(r",?\s*FOREIGN KEY \([^)]*\) REFERENCES [^,)]*\([^)]*\)( ON \w+ \w+)*",
                   "", sql) for sql in found]  # fmt: skip


def baseline(path: Path, schema: list[str], rows: list[dict], accounts: dict[int, int]) -> float:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=normal")
    for statement in schema:
        con.execute(statement)
    started = time.perf_counter()
    con.execute("BEGIN")
    con.executemany(
        "INSERT OR IGNORE INTO usage_record (subscription_id, account_id, quantity, occurred_at,"
        " external_id, created_at) VALUES (?, ?, ?, ?, ?, datetime('now'))",
        [(r["subscription_id"], accounts[r["subscription_id"]], r["quantity"], r["date"],
          r["external_id"]) for r in rows],
    )  # fmt: skip
    con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def bench(report: Report, root: Path, records: int, subscriptions: int = 1000) -> None:
    from bench.common import build_customers
    from core.billing import catalog
    from core.billing.models import Subscription, UsageRecord

    folder = root / "usage"
    folder.mkdir(parents=True, exist_ok=True)
    app = make_app(config_for(folder))
    with in_app(app):
        build_customers(subscriptions, 1)
        subs = {s.id: s.account_id for s in Subscription.select()}
        rows = rows_for(sorted(subs), records)
        started = time.perf_counter()
        good, bad = catalog.check_usage(rows)
        checked = time.perf_counter() - started
        inserted, duplicates = catalog.insert_usage(good)
        elapsed = time.perf_counter() - started
        assert not bad and inserted == records and UsageRecord.select().count() == records
    schema = product_schema(folder / "billhive.db")
    base = baseline(root / "usage-baseline.db", schema, rows, subs)
    report.add("usage", f"import {records:,} records (validated, idempotent)",
               records / elapsed, "records/s", "raw sqlite3 executemany, same schema",
               records / base,
               f"validation {checked:.1f}s of {elapsed:.1f}s")  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=1000)
    args = parser.parse_args(argv)
    import shutil

    root = temp_root()
    try:
        bench(Report(), root, args.records, args.subscriptions)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
