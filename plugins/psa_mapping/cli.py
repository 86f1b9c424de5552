"""``billhive psa sync [--account ID]``: push pending and failed items with a progress bar."""

from __future__ import annotations

import click

from core.kit import AppGroup, ConnectorSettings
from plugins.psa_mapping.service import integration as svc

psa = AppGroup("psa", help="ConnectWise Manage (PSA mapping) commands.")


@psa.command("sync")
@click.option(
    "--account",
    "account_id",
    type=int,
    default=None,
    help="Only the integration of this provider/reseller account.",
)
def sync_command(account_id):
    """Push mapped quantities to ConnectWise; failed items are retried on the next sync.

    Exits with status 1 when an item failed (each is listed with its reason)."""
    svc.require_licensed()
    if account_id is not None:
        accounts = [svc.integration_account(None, account_id, "psa.edit")]
        svc.require_connection(accounts[0])
    else:
        rows = ConnectorSettings.select().where(ConnectorSettings.connector == svc.CODE)
        accounts = [c.account for c in rows.order_by(ConnectorSettings.id)]
    if not accounts:
        click.echo("No ConnectWise connection is configured: nothing to sync.")
        return
    failed = 0
    for account in accounts:
        items = svc.pending_items(account)
        with click.progressbar(
            length=len(items), label=f"{account.name}: pushing {len(items)} item(s)"
        ) as bar:
            run = svc.sync(account, "cli", items, progress=lambda _item: bar.update(1))
        click.echo(f"{account.name}: sync {run.status} — {run.message}")
        for item in items:
            if item.outcome == "failed":
                failed += 1
                click.echo(
                    f"  FAILED {item.product_code} for {item.customer.name} "
                    f"(invoice {item.invoice_id}): {item.message}",
                    err=True,
                )
    if failed:
        raise SystemExit(1)
