"""Benchmark: the billing units rating and report over 100,000 call records and 1,000 units.

Run from the repository root:

    python -m bench.units_report [--calls N] [--units N] [--runs N] [--database-url URL]

It builds a throwaway instance (SQLite in a temporary folder unless ``--database-url`` or
``BILLHIVE_BENCH_DATABASE_URL`` names a PostgreSQL database), a customer with ``--units``
billing units (one number each, plus 10% unassigned numbers) and ``--calls`` call records in one
month, then times, in the same run, best of N after one warm-up:

* ``compute_report`` — the rating (what a bill run invoices: usage per unit incl. Unassigned,
  rental, seats);
* a baseline: one SQL ``GROUP BY`` unit over the same rows (calls LEFT JOIN unit numbers);
* then a bill run for the month, and ``report`` — the billing-unit report read from that
  invoice (its lines per unit), checked against the invoice's billing-units lines.

It checks that the rating and the GROUP BY give the same usage per unit and that the report's
total is what the invoice billed, and prints the times. It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from datetime import date, datetime, timedelta

PERIOD = (date(2024, 5, 1), date(2024, 6, 1))


def build(app, n_units: int, n_calls: int):
    from core import accounts
    from core.bootstrap import initialise
    from core.db import database
    from plugins.billing_units.models import BillingUnit, CallRecord, PhoneNumber, UnitNumber

    host = app.extensions["billhive"].host
    provider, operator, _ = initialise("Provider", "op@example.com", "bench-pass-1")
    customer = accounts.create_account(
        None, {"name": "Contact center", "type": "customer", "parent_id": provider.id}
    )
    # The benchmark measures the report, not the licence: create tables and enable directly.
    from core.models import PluginState, StateVersion

    database.create_tables(host.models(), safe=True)
    PluginState.create(name="billing_units", enabled=True)
    StateVersion.update(value=StateVersion.value + 1).where(StateVersion.key == "plugins").execute()
    host.refresh(force=True)

    n_numbers = n_units + n_units // 10
    with database.atomic():
        rows = [
            {"account": customer.id, "e164": f"+4420{7000000 + i:07d}", "label": ""}
            for i in range(n_numbers)
        ]
        for s in range(0, len(rows), 500):
            PhoneNumber.insert_many(rows[s : s + 500]).execute()
        numbers = [n.id for n in PhoneNumber.select(PhoneNumber.id).order_by(PhoneNumber.id)]
        unit_rows = [{"account": customer.id, "name": f"Unit {i:04d}"} for i in range(n_units)]
        for s in range(0, len(unit_rows), 500):
            BillingUnit.insert_many(unit_rows[s : s + 500]).execute()
        unit_ids = [u.id for u in BillingUnit.select(BillingUnit.id).order_by(BillingUnit.id)]
        links = [{"unit": u, "number": n} for u, n in zip(unit_ids, numbers, strict=False)]
        for s in range(0, len(links), 500):
            UnitNumber.insert_many(links[s : s + 500]).execute()
    rng = random.Random(42)
    start = datetime(2024, 5, 1)
    calls = []
    for i in range(n_calls):
        calls.append(
            {
                "account": customer.id,
                "external_id": f"call-{i}",
                "number": rng.choice(numbers),
                "user": None,
                "started_at": start + timedelta(seconds=rng.randrange(31 * 86400)),
                "duration_seconds": rng.randrange(1, 1200),
                "cost": rng.randrange(1, 500),
                "currency": customer.currency,
            }
        )
    with database.atomic():
        for s in range(0, len(calls), 1000):
            CallRecord.insert_many(calls[s : s + 1000]).execute()
    return customer, sum(c["cost"] for c in calls)


def baseline(customer) -> dict:
    """One SQL GROUP BY unit over the same rows."""
    import peewee as pw

    from plugins.billing_units.models import CallRecord, UnitNumber

    lo = datetime.combine(PERIOD[0], datetime.min.time())
    hi = datetime.combine(PERIOD[1], datetime.min.time())
    query = (
        CallRecord.select(UnitNumber.unit, pw.fn.SUM(CallRecord.cost))
        .join(UnitNumber, pw.JOIN.LEFT_OUTER, on=(UnitNumber.number == CallRecord.number))
        .where(
            CallRecord.account == customer.id,
            CallRecord.started_at >= lo,
            CallRecord.started_at < hi,
        )
        .group_by(UnitNumber.unit)
        .tuples()
    )
    return {unit_id: int(total) for unit_id, total in query}


def bill(customer) -> int:
    """Bill the month (the customer dates from its start); what its billing-units lines
    amount to."""
    from core.billing.models import Invoice, InvoiceLine
    from core.billing.runs import engine
    from core.models import Account

    Account.update(created_at=datetime.combine(PERIOD[0], datetime.min.time())).where(
        Account.id == customer.id
    ).execute()
    summary = engine.run(PERIOD[1])
    assert not summary["failures"], summary["failures"][:3]
    lines = (
        InvoiceLine.select(InvoiceLine.amount)
        .join(Invoice)
        .where((Invoice.account == customer.id) & (InvoiceLine.source == "billing_units"))
    )
    return sum(line.amount for line in lines)


def best_of(fn, runs: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BILLHIVE_BENCH_DATABASE_URL"))
    args = parser.parse_args(argv)

    from hostapp.app import create_app
    from plugins.billing_units.service.report import for_period as invoiced_report
    from plugins.billing_units.service.units import compute_report

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        app = create_app(
            {
                "DATA_DIR": tmp,
                "DATABASE_URL": url,
                "SECRET_KEY": "bench",
                "PLUGINS": ["billing_units"],
            }
        )
        database = app.extensions["billhive"].database
        with app.app_context(), database.connection_context():
            t0 = time.perf_counter()
            customer, _ = build(app, args.units, args.calls)
            print(
                f"built {args.units} units, {args.calls} call records on "
                f"{url.split(':')[0]} in {time.perf_counter() - t0:.1f} s"
            )
            t_report, report = best_of(lambda: compute_report(customer, PERIOD), args.runs)
            t_sql, grouped = best_of(lambda: baseline(customer), args.runs)
            by_unit = {r["unit_id"]: r["usage"] for r in report["units"] if r["usage"]}
            assert by_unit == grouped, "report and GROUP BY disagree"
            assert report["totals"]["usage"] == sum(grouped.values())
            print(f"report (compute_report):   {t_report * 1000:8.1f} ms  (best of {args.runs})")
            print(f"single SQL GROUP BY:       {t_sql * 1000:8.1f} ms  (best of {args.runs})")
            print(f"ratio report / GROUP BY:   {t_report / t_sql:8.2f}x")
            print(f"usage total {report['totals']['usage']} minor units, identical in both")
            t0 = time.perf_counter()
            billed = bill(customer)
            print(f"bill run of the month:     {(time.perf_counter() - t0) * 1000:8.1f} ms")
            t_inv, invoiced = best_of(lambda: invoiced_report(None, customer, PERIOD), args.runs)
            assert invoiced["totals"]["total"] == billed, "report and invoice disagree"
            print(f"report (from the invoice): {t_inv * 1000:8.1f} ms  (best of {args.runs})")
            print(f"invoiced total {billed} minor units, identical in report and invoice")
        if not database.is_closed():
            database.close()


if __name__ == "__main__":
    main()
