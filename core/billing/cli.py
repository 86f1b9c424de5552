"""``billhive bill-run``, ``billhive usage import`` and ``billhive invoices`` (added to the CLI
by hostapp.cli)."""

from __future__ import annotations

import csv
import json
import sys

import click

from core import clock
from core.commands import parse_day, with_app


@click.group("bill-run", invoke_without_command=True)
@click.option("--date", "day", default=None, help="Bill periods ended by this date (YYYY-MM-DD; "
              "default today; never after today in the instance's TIMEZONE).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--queue/--in-process", "queued", default=None,
              help="Queue the run for `billhive worker` (default when BILLHIVE_QUEUE is sqlite "
              "or redis) or bill in this process (default otherwise).")  # fmt: skip
@click.option("--no-wait", is_flag=True, help="With --queue: print the run id and return.")
@click.pass_context
def bill_run(ctx, day, as_json, queued, no_wait):
    """Bill every account whose period ended; exit status 1 when anything failed.

    The JSON summary holds invoices_created (count), invoices (list), invoices_skipped (list
    with account and reason), failures (list), render_errors and totals per currency
    ({"EUR": {"minor": 8640, "formatted": "86.40 EUR"}}).

    Queued (--queue), the accounts are billed by workers (`billhive worker`, as many as you
    start, on any host sharing the database and the queue); this command shows their progress
    from the database until the run is finished.
    """
    if ctx.invoked_subcommand is None:
        _bill_run(day, as_json, queued, no_wait)


@with_app
def _bill_run(day, as_json, queued, no_wait):
    from flask import current_app

    from core import tasks
    from core.billing.models import BillRun
    from core.billing.periods import PeriodError, check_run_date
    from core.billing.runs import engine
    from core.billing.runs import records as runs
    from core.models import Account

    as_of = parse_day(day, "--date") if day else clock.today()
    try:  # before anything is written: a run for a day that has not ended is refused
        as_of = check_run_date(as_of, "date")
    except PeriodError as exc:
        raise click.BadParameter(str(exc), param_hint="'--date'") from None
    if queued is None:
        queued = tasks.queued_by_default(current_app.config)
    _hint_interrupted()
    # the whole tree: the run belongs to the root account (the panel and the API show it)
    root = Account.select(Account.id).where(Account.parent.is_null()).order_by(Account.id).first()
    run = BillRun.create(as_of=as_of, status="queued", scope=root.id if root else None)
    if queued:
        summary = _queued_run(run, as_json, no_wait)
        if summary is None:
            return
    else:
        with runs.beating(run.id):  # killed, the run shows "interrupted" (bill-run resume)
            summary = _with_progress(
                as_json, f"Bill run {as_of}", lambda p: engine.run(as_of, bill_run=run, progress=p)
            )
    _print_summary(summary, as_json, f"Bill run {as_of}")


def _with_progress(as_json, label, work):
    """``work(progress)`` with a progress bar on stderr (none with --json)."""
    if as_json:
        return work(None)
    bar = click.progressbar(length=1, label=label, file=sys.stderr)
    with bar:

        def progress(done, total, account):
            bar.length = total
            bar.update(1)

        return work(progress)


def _hint_interrupted():
    from core.billing.runs import records as runs

    for run in runs.interrupted_runs().order_by(runs.BillRun.id):
        click.echo(f"Bill run {run.id} ({run.as_of}) was interrupted; continue it with "
                   f"`billhive bill-run resume {run.id}`.", err=True)  # fmt: skip


def _print_summary(summary, as_json, title):
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        click.echo(f"{title}: {summary['accounts']} account(s), "
                   f"{summary['invoices_created']} invoice(s) created")  # fmt: skip
        listed = summary["invoices"][:LISTED]
        for inv in listed:
            click.echo(f"  {inv['number']:<16} {inv['account'][:30]:<30} {inv['period']}  "
                       f"{inv['total']:>16}")  # fmt: skip
        if len(summary["invoices"]) > len(listed):
            click.echo(f"  ... and {len(summary['invoices']) - len(listed)} more "
                       "(billhive invoices list)")  # fmt: skip
        for code, total in summary["totals"].items():
            click.echo(f"Total {code}: {total['formatted']}")
        if summary["invoices_skipped"]:
            click.echo(f"Skipped {len(summary['invoices_skipped'])}:")
            for s in summary["invoices_skipped"][:LISTED]:
                click.echo(f"  {s['account']} {s['period']}: {s['reason']}")
        for error in summary["render_errors"]:
            click.echo(f"Render error (retried on download): {error}", err=True)
        for f in summary["failures"]:
            click.echo(f"FAILED {f.get('account', '')} {f.get('period', '')}: {f['error']}",
                       err=True)  # fmt: skip
    if summary["failures"]:
        sys.exit(1)


LISTED = 200  # invoices / skips listed by the human summary


def _queued_run(run, as_json, no_wait):
    """Queue ``run`` and follow it in the database; returns its summary (None: --no-wait)."""
    import time

    from flask import current_app

    from core import tasks
    from core.billing.models import BillRun, Invoice
    from core.billing.runs import queue as billing_queue
    from core.billing.runs.summary import invoice_rows

    try:
        total = billing_queue.submit(run, enqueue_items=True)
    except tasks.QueueError as exc:
        raise click.ClickException(str(exc)) from None
    where = tasks.describe(current_app.config)
    click.echo(f"Bill run {run.id} ({run.as_of}): {total} account(s) queued on the {where}",
               err=True)  # fmt: skip
    if no_wait:
        click.echo(json.dumps({"bill_run_id": run.id, "accounts": total}) if as_json
                   else f"Follow it with the panel's Bill runs page (run {run.id}).")  # fmt: skip
        return None
    bar = None if as_json else click.progressbar(length=max(total, 1),
                                                 label=f"Bill run {run.as_of}",
                                                 file=sys.stderr)  # fmt: skip
    shown, idle_since, hinted = 0, time.monotonic(), False
    try:
        while True:
            status = BillRun.select(BillRun.status).where(BillRun.id == run.id).scalar()
            counts = billing_queue.progress(run.id)
            if counts["done"] != shown:
                if bar is not None:
                    bar.update(counts["done"] - shown)
                shown, idle_since = counts["done"], time.monotonic()
            if status not in ("queued", "running"):
                break
            if not hinted and time.monotonic() - idle_since > 10 and not counts["running"]:
                hinted = True
                click.echo("\nNothing is moving: is a worker running? (billhive worker)",
                           err=True)  # fmt: skip
            time.sleep(0.25)
    finally:
        if bar is not None:
            bar.render_finish()
    run = BillRun.get_by_id(run.id)
    summary = dict(run.summary or {})
    invoices = list(Invoice.select().where(Invoice.bill_run == run.id).order_by(Invoice.id))
    summary["invoices"] = invoice_rows(invoices)
    summary.setdefault("render_errors", [])
    return summary


@bill_run.command("sweep")
@click.option("--stale-after", type=float, default=None,
              help="Seconds without a heartbeat after which a running item is taken back "
              "(default BILLHIVE_QUEUE_STALE_SECONDS, 120).")  # fmt: skip
@with_app
def bill_run_sweep(stale_after):
    """Queue again what queued bill runs left unfinished (workers killed, queue lost)."""
    from core.billing.runs import queue as billing_queue

    report = billing_queue.sweep(stale_after)
    click.echo(
        f"Swept: {report['requeued_stale']} stale item(s) and {report['requeued_pending']} "
        f"pending item(s) and {report['requeued_renders']} render(s) of missing invoice files "
        f"queued again, {report['failed']} failed after too many attempts, "
        f"{report['finished']} run(s) finished."
    )


@bill_run.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@with_app
def bill_run_list(as_json, limit):
    """The latest bill runs and their status; "interrupted": its process died (resume it)."""
    from core.billing.models import BillRun
    from core.billing.runs import queue as billing_queue

    rows = []
    for run in BillRun.select().order_by(BillRun.id.desc()).limit(limit):
        run = billing_queue.live(run)
        rows.append({"id": run.id, "as_of": run.as_of.isoformat(), "status": run.status,
                     "done": run.done, "total": run.total, "created": run.created,
                     "skipped": run.skipped, "failures": len(run.failures or []),
                     "queued": bool(run.queued),
                     "finished_at": str(run.finished_at) if run.finished_at else None})  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        hint = f"  (billhive bill-run resume {r['id']})" if r["status"] == "interrupted" else ""
        click.echo(f"{r['id']:>6} {r['as_of']}  {r['status']:<11} {r['done']:>6}/{r['total']:<6} "
                   f"{r['created']:>6} created {r['skipped']:>6} skipped "
                   f"{r['failures']:>4} failed{hint}")  # fmt: skip


@bill_run.command("resume")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_app
def bill_run_resume(run_id, as_json):
    """Continue an interrupted bill run (its process died) in this process: the accounts it
    had not billed are billed, nothing twice; exit status 1 when anything failed."""
    from core.billing.models import BillRun
    from core.billing.runs import records as runs
    from core.errors import BillhiveError

    run = BillRun.get_or_none(BillRun.id == run_id)
    if run is None:
        raise click.ClickException(f"bill run {run_id} not found")
    try:
        run = runs.claim(run)
    except BillhiveError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Resuming bill run {run.id} ({run.as_of}).", err=True)
    summary = _with_progress(as_json, f"Bill run {run.as_of} (resumed)",
                             lambda p: runs.continue_run(run, progress=p))  # fmt: skip
    _print_summary(summary, as_json, f"Bill run {run.as_of} (resumed)")


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


@click.group("dunning")
def dunning():
    """Reminders and dunning of overdue invoices (core.billing.ledger.dunning)."""


@dunning.command("run")
@click.option("--date", "day", default=None, help="Dun as of this date (YYYY-MM-DD; default "
              "today; never after today in the instance's TIMEZONE).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@with_app
def dunning_run(day, as_json):
    """Send what is due: for each overdue invoice the highest dunning level it reached, once
    (a reminder, a second reminder, a final notice with its late fee and suspension as the
    issuer set them). Steps a killed run left unfinished are finished first. Exit status 1
    when anything failed (it is retried by the next run)."""
    from core.billing.ledger import dunning as dunning_rules
    from core.billing.periods import PeriodError

    on = parse_day(day, "--date") if day else clock.today()
    try:  # before anything is written: a reminder for a day to come is refused
        on = dunning_rules.check_date(on, "date")
    except PeriodError as exc:
        raise click.BadParameter(str(exc), param_hint="'--date'") from None
    summary = _with_dunning_progress(
        as_json, f"Dunning {on}", lambda p: dunning_rules.run(on, progress=p)
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        counts = ", ".join(f"{n} {code.replace('_', ' ')}" for code, n in
                           summary["by_level"].items())  # fmt: skip
        click.echo(f"Dunning {summary['date']}: {summary['checked']} overdue invoice(s) "
                   f"checked; {len(summary['steps'])} step(s): {counts}")  # fmt: skip
        if summary["resumed"]:
            click.echo(f"Finished {summary['resumed']} step(s) an earlier run left unfinished.")
        for s in summary["steps"][:LISTED]:
            fee = f"  late fee {s['fee_invoice']} {s['fee']}" if s["fee_invoice"] else ""
            click.echo(f"  {s['number']:<16} {s['level']:<13} {s['days_overdue']:>5} days "
                       f"overdue{fee}")  # fmt: skip
        for f in summary["failures"]:
            click.echo(f"FAILED invoice {f['invoice_id']}: {f['error']}", err=True)
    if summary["failures"]:
        sys.exit(1)


def _with_dunning_progress(as_json, label, work):
    """``work(progress)`` with a progress bar on stderr (none with --json)."""
    if as_json:
        return work(None)
    with click.progressbar(length=1, label=label, file=sys.stderr) as bar:

        def progress(done, total):
            bar.length = total
            bar.update(1)

        return work(progress)


def _dunned_account(account_id):
    from core.models import Account

    account = Account.get_or_none(Account.id == account_id)
    if account is None:
        raise click.ClickException(f"account {account_id} not found")
    return account


@dunning.command("pause")
@click.argument("account_id", type=click.IntRange(1, 2**63 - 1))
@click.option("--reason", default="", help="Why (shown on the account's Dunning tab).")
@with_app
def dunning_pause(account_id, reason):
    """No reminders, late fees or suspension for the account's invoices until resumed
    (audited, as the operator's shell)."""
    from core.billing.ledger import dunning as dunning_rules

    account = _dunned_account(account_id)
    dunning_rules.pause(None, account, {"reason": reason})
    click.echo(f"Dunning of {account.name} paused.")


@dunning.command("resume")
@click.argument("account_id", type=click.IntRange(1, 2**63 - 1))
@with_app
def dunning_resume(account_id):
    """Dun the account again: the next run sends the level each invoice reached (audited)."""
    from core.billing.ledger import dunning as dunning_rules

    account = _dunned_account(account_id)
    dunning_rules.resume(None, account)
    click.echo(f"Dunning of {account.name} resumed.")


@dunning.command("levels")
@click.argument("issuer_id", type=click.IntRange(1, 2**63 - 1))
@with_app
def dunning_levels(issuer_id):
    """The dunning levels of an issuer (the provider or a reseller); edit them in the panel
    (Billing > Dunning) or with PUT /api/v1/accounts/<id>/dunning/levels."""
    from core.billing.ledger import dunning as dunning_rules

    issuer = _dunned_account(issuer_id)
    for level in dunning_rules.levels_of(issuer):
        fee = f", late fee {level.fee_text()}" if level.fee else ""
        state = "" if level.enabled else " (off)"
        suspend = ", suspends the account" if level.suspend else ""
        click.echo(f"{level.title}: due + {level.days} days{fee}{suspend}{state}")
