"""Benchmark: bill-run throughput in invoices per second.

Run from the repository root:

    python -m bench.billrun [--customers N] [--lines M]

Builds a throwaway SQLite instance with N customers, each holding M subscriptions (one
invoice line each), times ``core.billing.engine.run`` for one closed period (rating, one
transaction per invoice with gap-free numbering and audit, RAW file rendered and stored), and
in the same run a baseline: plain ``sqlite3`` writing the same invoice and line rows, one
transaction per invoice. Prints invoices/s for both and their ratio. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from datetime import date
from pathlib import Path


def build(app, customers: int, lines: int):
    from core.billing.models import PricePlan, Product, Subscription
    from core.bootstrap import initialise
    from core.db import database
    from core.models import Account

    provider, _, _ = initialise("Bench Provider", "bench@example.com", "bench-pass-1")
    with database.atomic():
        products = [
            Product.create(account=provider, code=f"P{i}", name=f"Product {i}", unit="seat")
            for i in range(lines)
        ]
        plans = [
            PricePlan.create(
                account=provider,
                product=p,
                name=f"Plan {i}",
                currency="EUR",
                recurring_price=f"{i + 1}.99",
            )  # fmt: skip
            for i, p in enumerate(products)
        ]
        for n in range(customers):
            acc = Account.create(parent=provider, type="customer", name=f"Customer {n}",
                                 currency="EUR", bill_cycle_day=1)  # fmt: skip
            acc.path = f"{provider.path}{acc.id}/"
            acc.save()
            Subscription.insert_many(
                [
                    {"account": acc.id, "plan": plan.id, "quantity": "3", "start": date(2026, 1, 1)}
                    for plan in plans
                ]  # fmt: skip
            ).execute()


def baseline(path: Path, customers: int, lines: int) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=20)
    args = parser.parse_args()

    from hostapp.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        app = create_app({"DATA_DIR": str(folder), "DATABASE_URL": f"sqlite:///{folder / 'b.db'}",
                          "SECRET_KEY": "bench", "PLUGINS": []})  # fmt: skip
        database = app.extensions["billhive"].database
        with app.app_context(), database.connection_context():
            app.extensions["billhive"].host.refresh()
            t0 = time.perf_counter()
            build(app, args.customers, args.lines)
            print(f"setup: {args.customers} customers x {args.lines} subscriptions "
                  f"in {time.perf_counter() - t0:.1f}s")  # fmt: skip
            from core.billing import engine

            started = time.perf_counter()
            summary = engine.run(date(2026, 2, 1))
            elapsed = time.perf_counter() - started
        created = summary["invoices_created"]
        assert created == args.customers, summary["failures"][:3]
        base = baseline(folder / "baseline.db", args.customers, args.lines)
    ours = created / elapsed
    raw = args.customers / base
    print(f"bill run : {created} invoices x {args.lines} lines in {elapsed:.2f}s "
          f"= {ours:,.0f} invoices/s (rating, numbering, audit, RAW file stored)")  # fmt: skip
    print(f"baseline : raw sqlite3, same rows, one transaction per invoice, {base:.2f}s "
          f"= {raw:,.0f} invoices/s")  # fmt: skip
    print(f"ratio    : {ours / raw:.3f} of the raw sqlite3 baseline ({raw / ours:.1f}x slower)")


if __name__ == "__main__":
    main()
