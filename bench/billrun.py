"""Benchmark: bill-run throughput in invoices per second, against a raw-SQL baseline.

Run from the repository root:

    python -m bench.billrun [--customers N] [--lines M] [--workers 0,1,2]

Builds a throwaway SQLite instance with N customers, each holding M subscriptions (one
invoice line each), and bills one closed period (rating, one transaction per invoice with
gap-free numbering, audit and ledger entry, RAW file rendered and stored):

* ``0`` workers: in this process (``engine.run``, what ``billhive bill-run`` does);
* ``K`` workers: queued (``billhive bill-run --queue``) and worked off by ``billhive worker
  --workers K`` in a subprocess, timed from the submission until every item is done and every
  file is stored.

Each variant bills its own copy of the same instance. In the same run, a baseline: plain
``sqlite3`` writing the same invoice and line rows, one transaction per invoice. Prints
invoices/s and the ratio to the baseline. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

from bench.common import (
    AS_OF,
    Report,
    build_customers,
    config_for,
    copy_instance,
    drop_databases,
    in_app,
    make_app,
    pg_url,
    session_cpu,
    spawn_cli,
    stop,
    temp_root,
    use_postgres,
    wait_for_line,
)


def baseline(path: Path, customers: int, lines: int) -> float:
    """Seconds for raw sqlite3 to write the same invoices and lines (one transaction per
    invoice, numbered from a sequence row)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=normal")
    con.executescript(
        """
        CREATE TABLE invoice (id INTEGER PRIMARY KEY, account INTEGER, issuer INTEGER,
            run_period TEXT, kind TEXT, status TEXT, number TEXT, currency TEXT,
            subtotal INTEGER, tax INTEGER, total INTEGER,
            UNIQUE (account, issuer, run_period, kind));
        CREATE TABLE line (id INTEGER PRIMARY KEY, invoice INTEGER, position INTEGER,
            description TEXT, quantity TEXT, unit_price TEXT, amount INTEGER);
        CREATE TABLE seq (issuer INTEGER PRIMARY KEY, next INTEGER);
        INSERT INTO seq VALUES (1, 1);
        """
    )
    started = time.perf_counter()
    for n in range(customers):
        con.execute("BEGIN IMMEDIATE")
        rows = [(f"Product {i}", "3", f"{i + 1}.99", 3 * (100 * i + 199)) for i in range(lines)]
        total = sum(r[3] for r in rows)
        cur = con.execute(
            "INSERT INTO invoice (account, issuer, run_period, kind, status, currency, subtotal,"
            " tax, total) VALUES (?, 1, '2026-01-01', 'invoice', 'draft', 'EUR', ?, 0, ?)",
            (n, total, total),
        )
        invoice_id = cur.lastrowid
        con.executemany(
            "INSERT INTO line (invoice, position, description, quantity, unit_price, amount)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(invoice_id, pos, *r) for pos, r in enumerate(rows, start=1)],
        )
        con.execute("UPDATE seq SET next = next + 1 WHERE issuer = 1")
        number = con.execute("SELECT next - 1 FROM seq WHERE issuer = 1").fetchone()[0]
        con.execute("UPDATE invoice SET status = 'issued', number = ? WHERE id = ?",
                    (f"INV-{number:06d}", invoice_id))  # fmt: skip
        con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def baseline_pg(url: str, customers: int, lines: int) -> float:
    """The same baseline with psycopg2 on a PostgreSQL database."""
    import psycopg2

    con = psycopg2.connect(url)
    cur = con.cursor()
    cur.execute(
        """
        CREATE TABLE invoice (id SERIAL PRIMARY KEY, account INTEGER, issuer INTEGER,
            run_period TEXT, kind TEXT, status TEXT, number TEXT, currency TEXT,
            subtotal INTEGER, tax INTEGER, total INTEGER,
            UNIQUE (account, issuer, run_period, kind));
        CREATE TABLE line (id SERIAL PRIMARY KEY, invoice INTEGER, position INTEGER,
            description TEXT, quantity TEXT, unit_price TEXT, amount INTEGER);
        CREATE TABLE seq (issuer INTEGER PRIMARY KEY, next INTEGER);
        INSERT INTO seq VALUES (1, 1);
        """
    )
    con.commit()
    started = time.perf_counter()
    for n in range(customers):
        rows = [(f"Product {i}", "3", f"{i + 1}.99", 3 * (100 * i + 199)) for i in range(lines)]
        total = sum(r[3] for r in rows)
        cur.execute(
            "INSERT INTO invoice (account, issuer, run_period, kind, status, currency, subtotal,"
            " tax, total) VALUES (%s, 1, '2026-01-01', 'invoice', 'draft', 'EUR', %s, 0, %s)"
            " RETURNING id",
            (n, total, total),
        )
        invoice_id = cur.fetchone()[0]
        cur.executemany(
            "INSERT INTO line (invoice, position, description, quantity, unit_price, amount)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(invoice_id, pos, *r) for pos, r in enumerate(rows, start=1)],
        )
        cur.execute("UPDATE seq SET next = next + 1 WHERE issuer = 1 RETURNING next - 1")
        number = cur.fetchone()[0]
        cur.execute("UPDATE invoice SET status = 'issued', number = %s WHERE id = %s",
                    (f"INV-{number:06d}", invoice_id))  # fmt: skip
        con.commit()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def build_template(root: Path, customers: int, lines: int, users: int = 0,
                   postgres: str | None = None) -> tuple[Path, dict]:  # fmt: skip
    """An instance to copy for each variant: SQLite in the folder, or a PostgreSQL database
    when ``postgres`` (an admin URL) is given."""
    folder = root / f"template-{customers}x{lines}"
    folder.mkdir(parents=True, exist_ok=True)
    if postgres:
        use_postgres(folder, postgres)
    app = make_app(config_for(folder))
    started = time.perf_counter()
    with in_app(app):
        info = build_customers(customers, lines, users=users)
    app.extensions["billhive"].database.close()
    print(f"  setup: {customers:,} customers x {lines} subscriptions in "
          f"{time.perf_counter() - started:.1f}s", flush=True)  # fmt: skip
    return folder, info


def run_inline(template: Path, root: Path, name: str) -> dict:
    """``engine.run`` in this process on a copy of the template."""
    from core.billing.runs import engine

    folder = copy_instance(template, root / name)
    app = make_app(config_for(folder))
    with in_app(app):
        started, cpu = time.perf_counter(), time.process_time()
        summary = engine.run(AS_OF)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if summary["failures"]:
        raise RuntimeError(f"bill run failed: {summary['failures'][:3]}")
    return {"seconds": elapsed, "cpu": cpu, "invoices": summary["invoices_created"],
            "folder": folder}  # fmt: skip


def run_queued(template: Path, root: Path, name: str, workers: int, *, redis_url=None) -> dict:
    """A queued run on a copy of the template, worked off by ``billhive worker --workers K``
    (a subprocess, started and ready before the clock starts)."""
    from core import tasks
    from core.billing.models import BillRun, Invoice, InvoiceFile
    from core.billing.runs import queue

    folder = copy_instance(template, root / name)
    extra = {"QUEUE": "redis", "REDIS_URL": redis_url} if redis_url else {}
    config = config_for(folder, **extra)
    app = make_app(config)
    worker = spawn_cli(config, "worker", "--workers", str(workers))
    try:
        wait_for_line(worker, "Billhive worker:")
        time.sleep(1)  # the forked workers are up
        with in_app(app):
            tasks.get_queue(app).huey.flush()
            cpu = session_cpu(worker.pid)
            started = time.perf_counter()
            run = BillRun.create(as_of=AS_OF, status="queued")
            total = queue.submit(run, enqueue_items=True)
            billed = None
            while True:
                status = BillRun.select(BillRun.status).where(BillRun.id == run.id).scalar()
                if billed is None and status not in ("queued", "running"):
                    billed = time.perf_counter() - started
                if billed is not None:
                    files = InvoiceFile.select().count()
                    if files >= Invoice.select().count():
                        break
                if worker.poll() is not None:
                    raise RuntimeError("the worker stopped:\n" + worker.stdout.read()[-3000:])
                time.sleep(0.1)
            elapsed = time.perf_counter() - started
            cpu = session_cpu(worker.pid) - cpu
            run = BillRun.get_by_id(run.id)
            if run.status != "done":
                raise RuntimeError(f"queued run {run.status}: {run.failures[:3]}")
            invoices = run.created
    finally:
        stop(worker)
        with in_app(app):
            tasks.get_queue(app).huey.flush()
        app.extensions["billhive"].database.close()
    return {"seconds": elapsed, "billed_seconds": billed, "invoices": invoices, "cpu": cpu,
            "accounts": total, "folder": folder}  # fmt: skip


def bench(report: Report, root: Path, customers: int, lines: int, workers: list[int], *,
          redis_url=None, template=None, postgres=None) -> dict:  # fmt: skip
    """Every variant and the baseline; adds the figures to ``report``; returns the results
    by variant name (their folders hold the billed instances)."""
    if template is None:
        template, _ = build_template(root, customers, lines, postgres=postgres)
    if postgres:
        base = baseline_pg(pg_url(f"baseline_{customers}"), customers, lines)
        raw_what, db = "raw psycopg2, same rows", "PostgreSQL"
    else:
        base = baseline(root / f"baseline-{customers}.db", customers, lines)
        raw_what, db = "raw sqlite3, same rows", "SQLite"
    raw = customers / base
    results = {}
    for k in workers:
        name = f"inline-{customers}" if k == 0 else f"queued-{customers}-w{k}"
        if k == 0:
            result = run_inline(template, root, name)
            what = "in-process (billhive bill-run)"
        else:
            result = run_queued(template, root, name, k, redis_url=redis_url)
            what = f"queued, {k} worker{'s' if k > 1 else ''}"
        if result["invoices"] != customers:
            raise RuntimeError(f"{name}: {result['invoices']} invoices for {customers} customers")
        rate = result["invoices"] / result["seconds"]
        note = f"CPU {1000 * result['cpu'] / result['invoices']:.1f} ms/invoice"
        if "billed_seconds" in result:
            note += (f", run done at {result['billed_seconds']:.1f}s, files at "
                     f"{result['seconds']:.1f}s")  # fmt: skip
        report.add("bill run", f"{customers:,} x {lines} lines, {db}, {what}", rate,
                   "invoices/s", raw_what, raw, note)  # fmt: skip
        results[name] = result
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--workers", default="0",
                        help="comma-separated: 0 = in-process, K = queued with K workers")  # fmt: skip
    parser.add_argument("--redis-url", default=None, help="queue on Redis instead of SQLite")
    parser.add_argument("--postgres", default=None, metavar="ADMIN_URL",
                        help="bill on PostgreSQL databases made through this admin URL")  # fmt: skip
    args = parser.parse_args(argv)
    root = temp_root()
    try:
        bench(Report(), root, args.customers, args.lines,
              [int(w) for w in args.workers.split(",")], redis_url=args.redis_url,
              postgres=args.postgres)  # fmt: skip
    finally:
        import shutil

        drop_databases()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
