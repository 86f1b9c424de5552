"""``billhive units ...``: command-line tools of the billing_units plugin."""

from __future__ import annotations

import click


@click.group("units")
def units():
    """Billing units: import call records, print the cost report."""


def _in_app(fn):
    from hostapp.cli import with_app

    return with_app(fn)


@units.command("import-calls")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--account", "account_id", required=True, type=int, help="customer account id")
def import_calls(path, account_id):
    """Import rated call records from a CSV file (columns: external_id, number, user_email,
    started_at, duration_seconds, cost, currency). Re-importing the same file adds nothing."""

    @_in_app
    def run():
        from plugins.billing_units import services as svc

        account = svc.account_for(None, account_id)
        with open(path, encoding="utf-8-sig") as fh:
            result = svc.import_calls_csv(None, account, fh.read())
        click.echo(
            f"{result['created']} call record(s) imported, {result['duplicates']} already present "
            f"(of {result['received']})"
        )

    run()


@units.command("report")
@click.option("--account", "account_id", required=True, type=int)
@click.option("--start", default=None, help="YYYY-MM-DD (default: first of this month)")
@click.option("--end", default=None, help="YYYY-MM-DD, exclusive")
def report(account_id, start, end):
    """Print the cost report per billing unit as CSV."""

    @_in_app
    def run():
        from plugins.billing_units import services as svc

        account = svc.account_for(None, account_id)
        period = svc.parse_period({"start": start, "end": end})
        click.echo(svc.report_csv(svc.compute_report(account, period)), nl=False)

    run()
