"""Lists and search at 100,000 accounts (issue 20 item 1, ``core.find``).

Two instances are built the same way, one with ``big`` accounts (100,000) and one with
``small`` (1,000, the baseline measured in the same run): a provider whose customers each
have a user, a subscription, an issued invoice and an audit entry (bulk inserts, not timed).
Then each list page of the panel and the API is asked as the provider's operator, in-process
through the Flask test client (the HTTP server is ``bench.api``'s subject), and the median
time of ``repeat`` requests is reported with the same page at ``small`` accounts as its
baseline: a ratio near 1 means the page costs what a page costs (index-served), a ratio
near ``big / small`` would mean it reads every account.

    python -m bench.lists [--accounts 100000] [--baseline 1000] [--repeat 15] [--postgres ADMIN_URL]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from bench.common import (
    FAST_HASH,
    Report,
    chunked,
    config_for,
    drop_databases,
    in_app,
    machine,
    make_app,
    temp_root,
    use_postgres,
)

PASSWORD = "bench-pass-1"

# (label, URL): what an operator opens all day
PAGES = [
    ("panel: Accounts, tree level (sort name)", "/accounts"),
    ("panel: Accounts, last page by name", "/accounts?sort=name&page={last}"),
    ("panel: Accounts, search 'Customer 4242'", "/accounts?q=Customer+4242"),
    ("panel: Accounts, search an e-mail", "/accounts?q=c777%40bench.example"),
    ("panel: Users (sort e-mail)", "/users"),
    ("panel: Subscriptions, newest first", "/billing/subscriptions?sort=-id"),
    ("panel: Invoices (newest first)", "/billing/invoices"),
    ("panel: Invoices, sorted by number", "/billing/invoices?sort=number"),
    ("panel: Invoices of one account", "/billing/invoices?account_id={some}"),
    ("panel: Invoices, search a number", "/billing/invoices?q=BENCH-000042"),
    ("panel: Audit log, action filter", "/audit?action=bench."),
    ("panel: Audit log of one account", "/audit?account_id={some}"),
    ("panel: search box, 'customer 12'", "/search.json?q=customer+12"),
    ("panel: search box, 'roles'", "/search.json?q=roles"),
    ("API: GET /api/v1/accounts?sort=name", "/api/v1/accounts?sort=name"),
    ("API: GET /api/v1/invoices", "/api/v1/invoices"),
    ("API: GET /api/v1/audit?from=2026-01-01", "/api/v1/audit?from=2026-01-01"),
]


def build(folder: Path, accounts: int, postgres: str | None) -> dict:
    """An instance with ``accounts`` customers, each with one user, subscription, issued
    invoice and audit entry."""
    folder.mkdir(parents=True, exist_ok=True)
    if postgres:
        use_postgres(folder, postgres)
    app = make_app(config_for(folder))
    with in_app(app):
        from werkzeug.security import generate_password_hash

        from core.billing.models import Invoice, PricePlan, Product, Subscription
        from core.bootstrap import initialise
        from core.db import database
        from core.models import Account, AuditEntry, User

        provider, operator, _ = initialise("Bench Provider", "bench@example.com", PASSWORD)
        product = Product.create(account=provider, code="SEAT", name="Seat", unit="seat")
        plan = PricePlan.create(account=provider, product=product, name="Seat plan",
                                currency="EUR", recurring_price="9.99")  # fmt: skip
        first = (Account.select(Account.id).order_by(Account.id.desc()).scalar() or 0) + 1
        hashed = generate_password_hash(PASSWORD, method=FAST_HASH)
        day = datetime(2026, 1, 2, 9, 0)
        with database.atomic():
            ids = range(first, first + accounts)
            for chunk in chunked(ids, 1000):
                Account.insert_many([
                    {"id": i, "parent": provider.id, "type": "customer",
                     "name": f"Customer {i - first}", "email": f"c{i - first}@bench.example",
                     "path": f"{provider.path}{i}/", "currency": "EUR", "bill_cycle_day": 1}
                    for i in chunk]).execute()  # fmt: skip
                User.insert_many([
                    {"account": i, "email": f"user{i - first}@bench.example",
                     "name": f"User {i - first}", "password_hash": hashed} for i in chunk
                ]).execute()  # fmt: skip
                Subscription.insert_many([
                    {"account": i, "plan": plan.id, "quantity": "1", "start": date(2026, 1, 1)}
                    for i in chunk]).execute()  # fmt: skip
                Invoice.insert_many([
                    {"account": i, "issuer": provider.id, "kind": "invoice", "status": "issued",
                     "number": f"BENCH-{i - first:06d}", "currency": "EUR", "subtotal": 999,
                     "total": 999, "period_start": date(2026, 1, 1),
                     "period_end": date(2026, 2, 1), "issued_at": day,
                     "due_date": date(2026, 1, 16) + timedelta(days=(i % 20))}
                    for i in chunk]).execute()  # fmt: skip
                AuditEntry.insert_many([
                    {"actor": operator.id, "actor_label": operator.email, "account": i,
                     "action": "bench.create", "object_type": "account", "object_id": str(i),
                     "at": day + timedelta(seconds=i)} for i in chunk]).execute()  # fmt: skip
        if postgres:
            database.execute_sql("ANALYZE")
        else:
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"folder": folder, "first": first, "accounts": accounts}


def measure(instance: dict, repeat: int) -> dict[str, float]:
    """Median milliseconds of each page, as the operator (panel session and API token)."""
    app = make_app(config_for(instance["folder"], WTF_CSRF_ENABLED=False))
    out = {}
    with in_app(app):
        panel = app.test_client()
        resp = panel.post("/login", data={"email": "bench@example.com", "password": PASSWORD})
        assert resp.status_code == 302, resp.status_code
        token = (
            app.test_client()
            .post("/api/v1/tokens", json={"email": "bench@example.com", "password": PASSWORD})
            .get_json()["token"]
        )
        headers = {"Authorization": f"Bearer {token}"}
        last = max(1, -(-instance["accounts"] // 50))
        some = instance["first"] + instance["accounts"] // 2
        for label, template in PAGES:
            url = template.format(last=last, some=some)
            api = url.startswith("/api/")
            times = []
            for _ in range(repeat + 1):  # the first request warms caches, not counted
                started = time.perf_counter()
                resp = app.test_client().get(url, headers=headers) if api else panel.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert resp.status_code == 200, (url, resp.status_code, resp.get_data()[:300])
            out[label] = statistics.median(times[1:])
    return out


def bench(report: Report, root: Path, big: int, small: int, repeat: int,
          postgres: str | None = None) -> None:  # fmt: skip
    backend = "PostgreSQL" if postgres else "SQLite"
    print(f"  building {small:,} and {big:,} accounts ({backend})", flush=True)
    base = measure(build(root / f"lists-{small}", small, postgres), repeat)
    large = measure(build(root / f"lists-{big}", big, postgres), repeat)
    for label, _ in PAGES:
        report.add("lists", f"{label}, {big:,} accounts, {backend} (median of {repeat})",
                   large[label], "ms", f"{small:,} accounts, same run", base[label])  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lists", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--postgres", default=None, metavar="ADMIN_URL")
    args = parser.parse_args(argv)
    print(f"Billhive list benchmark on {machine()}", flush=True)
    report = Report()
    root = temp_root()
    try:
        bench(report, root, args.accounts, args.baseline, args.repeat, args.postgres)
    finally:
        drop_databases()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print("\n" + report.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
