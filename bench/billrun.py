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

Each variant bills its own copy of the same instance. In the same run, baselines:

* the same-work baselines (SQLite, in-process): the run is recorded once (every statement
  with its parameters, every commit and file write, :func:`record_inline`) and raw
  ``sqlite3`` replays it on another copy (:func:`replay`): the same schema and indexes, the
  same reads, the same rows in every table (checked) and the same files, without the
  product's Python. Twice: a commit per invoice as the product, and a commit per 100;
* plain ``sqlite3`` writing only the invoice and line rows into a two-table schema (the old
  baseline, far less work than the product; kept as an extra row).

Prints invoices/s and the ratio to each baseline. Asserts nothing about speed.
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


# -- the same-work baseline: the product's own statements and files, replayed by raw sqlite3 --


class _Recording(sqlite3.Connection):
    """A connection that notes every statement (with its parameters), commit and rollback in
    ``ops`` (set on the class for one recorded run)."""

    ops: list = []

    def cursor(self, factory=None):
        return super().cursor(factory or _RecordingCursor)

    def execute(self, sql, params=()):
        return self.cursor().execute(sql, params)

    def commit(self):
        self.ops.append(("commit",))
        super().commit()

    def rollback(self):
        self.ops.append(("rollback",))
        super().rollback()


class _RecordingCursor(sqlite3.Cursor):
    def execute(self, sql, params=()):
        _Recording.ops.append(("execute", sql, tuple(params)))
        return super().execute(sql, params)

    def executemany(self, sql, rows):
        rows = [tuple(row) for row in rows]
        _Recording.ops.append(("executemany", sql, rows))
        return super().executemany(sql, rows)


def record_inline(template: Path, root: Path) -> tuple[list, Path]:
    """An in-process run on a copy of the template whose every statement, commit and file
    write is noted: what the same-work baseline replays. Returns (ops, the billed folder)."""
    import os

    from core.billing.runs import engine

    folder = copy_instance(template, root / "recorded")
    app = make_app(config_for(folder))
    database = app.extensions["billhive"].database
    database.close()
    database.connect_params["factory"] = _Recording
    ops = _Recording.ops = []
    real_write, real_replace = Path.write_bytes, os.replace

    def write_bytes(path, data):
        ops.append(("write", str(path), data))
        return real_write(path, data)

    def replace(source, target):
        ops.append(("replace", str(source), str(target)))
        return real_replace(source, target)

    Path.write_bytes, os.replace = write_bytes, replace
    try:
        with in_app(app):
            ops.clear()  # what start-up and the app context did is not the run's work
            summary = engine.run(AS_OF)
    finally:
        Path.write_bytes, os.replace = real_write, real_replace
        database.close()
        database.connect_params.pop("factory")
    if summary["failures"]:
        raise RuntimeError(f"recorded bill run failed: {summary['failures'][:3]}")
    return ops, folder


def replay(ops: list, recorded: Path, template: Path, target: Path, batch: int = 1) -> float:
    """Seconds for raw sqlite3 to run the recorded statements on a copy of the template and
    write the same files: the product's work without its Python. ``batch``: commits folded
    into one (1: a commit per invoice, as the product; 100: a commit per 100 invoices)."""
    import os

    from core.db import SQLITE_PRAGMAS

    folder = copy_instance(template, target)
    con = sqlite3.connect(folder / "billhive.db", isolation_level=None, timeout=30)
    for name, value in SQLITE_PRAGMAS.items():
        con.execute(f"PRAGMA {name} = {value}")
    old, new = str(recorded), str(folder)
    pending = 0
    started = time.perf_counter()
    for op in ops:
        kind = op[0]
        if kind == "execute" and op[1] == "COMMIT":  # how peewee commits
            kind = "commit"
        if kind == "execute":
            if op[1].startswith("BEGIN") and con.in_transaction:
                continue  # batched: the batch's transaction is open
            con.execute(op[1], op[2]).fetchall()
        elif kind == "executemany":
            con.executemany(op[1], op[2])
        elif kind == "commit":
            pending += 1
            if pending >= batch and con.in_transaction:
                con.execute("COMMIT")
                pending = 0
        elif kind == "rollback":
            if batch > 1:  # it would take the batch's other invoices with it
                raise RuntimeError("the recorded run rolled back a transaction: no batching")
            con.rollback()
        elif kind == "write":
            path = Path(op[1].replace(old, new, 1))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(op[2])
        else:
            os.replace(op[1].replace(old, new, 1), op[2].replace(old, new, 1))
    if con.in_transaction:
        con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    _same_rows(recorded / "billhive.db", folder / "billhive.db")
    return elapsed


def _same_rows(one: Path, other: Path) -> None:
    """The replay wrote what the product wrote: the same number of rows in every table."""

    def counts(path):
        con = sqlite3.connect(path)
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        con.close()
        return found

    if counts(one) != counts(other):
        raise RuntimeError(f"the replay differs from the product's run: {counts(other)}")


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
    same_work = {}
    if not postgres and 0 in workers:
        ops, recorded = record_inline(template, root)
        for batch in (1, 100):
            seconds = replay(ops, recorded, template, root / f"replay-{batch}", batch)
            same_work[batch] = customers / seconds
        del ops
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
        if k == 0 and same_work:
            for batch, label in ((1, "a commit per invoice"), (100, "a commit per 100")):
                report.add("bill run", f"{customers:,} x {lines} lines, {db}, {what}", rate,
                           "invoices/s", f"raw sqlite3 replaying the run's own statements and "
                           f"files, {label}", same_work[batch], note)  # fmt: skip
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
