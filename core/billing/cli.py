"""``billhive bill-run``, ``billhive usage import`` and ``billhive invoices`` (added to the CLI
by hostapp.cli)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date

import click

from hostapp.cli import _parse_day, with_app


@click.command("bill-run")
@click.option("--date", "day", default=None, help="Bill periods ended by this date (YYYY-MM-DD; "
              "default today).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_app
def bill_run(day, as_json):
    """Bill every account whose period ended; exit status 1 when anything failed.

    The JSON summary holds invoices_created (count), invoices (list), invoices_skipped (list
    with account and reason), failures (list), render_errors and totals per currency
    ({"EUR": {"minor": 8640, "formatted": "86.40 EUR"}}).
    """
    from core.billing import engine
    from core.billing.models import BillRun

    as_of = _parse_day(day, "--date") if day else date.today()
    run = BillRun.create(as_of=as_of, status="queued")
    if as_json:
        summary = engine.run(as_of, bill_run=run)
    else:
        bar = click.progressbar(length=1, label=f"Bill run {as_of}", file=sys.stderr)
        with bar:

            def progress(done, total, account):
                bar.length = total
                bar.update(1)

            summary = engine.run(as_of, bill_run=run, progress=progress)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        click.echo(f"Bill run {as_of}: {summary['accounts']} account(s), "
                   f"{summary['invoices_created']} invoice(s) created")  # fmt: skip
        for inv in summary["invoices"]:
            click.echo(f"  {inv['number']:<16} {inv['account'][:30]:<30} {inv['period']}  "
                       f"{inv['total']:>16}")  # fmt: skip
        for code, total in summary["totals"].items():
            click.echo(f"Total {code}: {total['formatted']}")
        if summary["invoices_skipped"]:
            click.echo(f"Skipped {len(summary['invoices_skipped'])}:")
            for s in summary["invoices_skipped"]:
                click.echo(f"  {s['account']} {s['period']}: {s['reason']}")
        for error in summary["render_errors"]:
            click.echo(f"Render error (retried on download): {error}", err=True)
        for f in summary["failures"]:
            click.echo(f"FAILED {f.get('account', '')} {f.get('period', '')}: {f['error']}",
                       err=True)  # fmt: skip
    if summary["failures"]:
        sys.exit(1)


@click.group("usage")
def usage():
    """Usage records."""


@usage.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--skip-bad", is_flag=True, help="Import the good rows even if some are bad.")
@with_app
def usage_import(path, skip_bad):
    """Import usage from a CSV with columns external_id, subscription_id, quantity, date.

    All rows are checked first; bad rows are reported with their line numbers and nothing is
    imported unless --skip-bad. Re-importing a record (same external_id) changes nothing.
    """
    from core.billing import catalog

    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"external_id", "subscription_id", "quantity", "date"} - set(
            reader.fieldnames or []
        )
        if missing:
            raise click.ClickException(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = [{k: row.get(k) for k in ("external_id", "subscription_id", "quantity", "date")}
                for row in reader]  # fmt: skip
    good, bad = catalog.check_usage(rows)
    for index, errors in sorted(bad.items()):
        text = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in errors.items())
        click.echo(f"{path}:{index + 2}: {text}", err=True)  # +1 header, +1 one-based
    if bad and not skip_bad:
        raise click.ClickException(
            f"{len(bad)} bad row(s) of {len(rows)}; nothing imported (use --skip-bad to import "
            "the good rows)"
        )
    with click.progressbar(length=len(good), label="Importing", file=sys.stderr) as bar:
        inserted, duplicates = catalog.insert_usage(good, progress=bar.update)
    click.echo(f"Imported {inserted} record(s); {duplicates} already present; "
               f"{len(bad)} bad row(s) skipped.")  # fmt: skip


@click.group("invoices")
def invoices():
    """Invoices."""


@invoices.command("list")
@click.option("--status", default=None)
@click.option("--account", "account_id", type=int, default=None)
@click.option("--json", "as_json", is_flag=True)
@with_app
def invoices_list(status, account_id, as_json):
    """List invoices (newest first)."""
    from core.billing.models import Invoice
    from core.billing.money import format_money

    query = Invoice.select().order_by(Invoice.id.desc())
    if status:
        query = query.where(Invoice.status == status)
    if account_id:
        query = query.where(Invoice.account == account_id)
    rows = [
        {"id": i.id, "number": i.number, "kind": i.kind, "status": i.status,
         "account_id": i.account_id, "issuer_id": i.issuer_id,
         "period": f"{i.period_start or ''}/{i.period_end or ''}", "currency": i.currency,
         "total_minor": i.total, "total": format_money(i.total, i.currency)}
        for i in query
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']:>6} {r['number'] or '(draft)':<16} {r['kind']:<12} "
                   f"{r['status']:<7} account {r['account_id']:<5} {r['period']:<22} "
                   f"{r['total']:>16}")  # fmt: skip
