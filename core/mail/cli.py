"""``billhive mail send`` and ``billhive mail list`` (added to the CLI by hostapp.cli)."""

from __future__ import annotations

import json

import click

from core.commands import with_app


@click.group("mail")
def mail():
    """E-mail: send what is due, list recent messages (see docs/operations.md)."""


@mail.command("send")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@with_app
def mail_send(as_json):
    """Send (or queue for the worker) every message that is due: first attempts, retries whose
    backoff is over, and settle messages whose sender stopped mid-way. Run it from cron when
    no `billhive worker` runs (a worker does this in its sweep)."""
    from core.mail import tasks

    report = tasks.sweep()
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in sorted(report.items())) or "nothing due")


@mail.command("list")
@click.option("--status", default=None, help="Only messages with this status.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@with_app
def mail_list(status, limit):
    """The latest messages: id, status, attempts, event, recipients, subject, last error."""
    from core.mail.models import STATUSES, MailMessage

    query = MailMessage.select().order_by(MailMessage.id.desc()).limit(limit)
    if status:
        if status not in STATUSES:
            raise click.BadParameter(f"one of {', '.join(STATUSES)}", param_hint="--status")
        query = query.where(MailMessage.status == status)
    for m in query:
        error = f"  ({m.last_error})" if m.last_error else ""
        click.echo(f"{m.id}\t{m.status}\t{m.attempts}\t{m.event}\t{', '.join(m.recipients)}\t"
                   f"{m.subject}{error}")  # fmt: skip
