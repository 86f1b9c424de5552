"""``billhive units ...``: command-line tools of the billing_units plugin."""

from __future__ import annotations

import click

from core.kit import AppGroup
from plugins.billing_units.service import recording
from plugins.billing_units.service import report as unit_report
from plugins.billing_units.service import units as svc

units = AppGroup("units", help="Billing units: import call records, print the cost report.")


@units.command("import-calls")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--account", "account_id", required=True, type=int, help="customer account id")
def import_calls(path, account_id):
    """Import rated call records from a CSV file (columns: external_id, number, user_email,
    started_at, duration_seconds, cost, currency). Re-importing the same file adds nothing."""
    account = svc.account_for(None, account_id)
    with open(path, encoding="utf-8-sig") as fh:
        result = svc.import_calls_csv(None, account, fh.read())
    click.echo(
        f"{result['created']} call record(s) imported, {result['duplicates']} already present "
        f"(of {result['received']})"
    )


@units.command("report")
@click.option("--account", "account_id", required=True, type=int)
@click.option("--start", default=None, help="YYYY-MM-DD (default: first of this month)")
@click.option("--end", default=None, help="YYYY-MM-DD, exclusive")
def report(account_id, start, end):
    """Print the billing-unit report (the period's invoiced charges per unit) as CSV."""
    account = svc.account_for(None, account_id)
    period = svc.parse_period({"start": start, "end": end})
    click.echo(unit_report.as_csv(unit_report.for_period(None, account, period)), nl=False)


@units.command("import-recording")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--account", "account_id", required=True, type=int, help="customer account id")
def import_recording(path, account_id):
    """Import call-recording storage records from a CSV file (columns: external_id, number,
    date, gigabytes); each becomes usage of the account's recording-storage subscription.
    Re-importing the same file adds nothing; a day already invoiced is refused."""
    account = svc.account_for(None, account_id)
    with open(path, encoding="utf-8-sig") as fh:
        result = recording.import_storage_csv(None, account, fh.read())
    click.echo(
        f"{result['created']} storage record(s) imported, {result['duplicates']} already "
        f"present (of {result['received']})"
    )


@units.command("retention")
@click.option("--account", "account_id", required=True, type=int)
@click.option("--days", required=True, type=click.IntRange(1, 3650),
              help="days a call recording is kept")  # fmt: skip
def retention(account_id, days):
    """Set how long call recordings are kept (from the first day not invoiced yet on)."""
    row = recording.set_retention(None, svc.account_for(None, account_id), {"days": days})
    click.echo(f"recordings kept {row.days} days from {row.effective_from} on")
