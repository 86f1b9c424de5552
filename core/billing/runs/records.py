"""Bill runs that die: heartbeat, "interrupted", resume.

An in-process bill run (``billhive bill-run``, or a thread of the web process in ``inline``
queue mode) lives as long as its process. While it bills, :func:`beating` refreshes
``BillRun.heartbeat_at`` from a thread of its own (and :func:`core.billing.runs.engine.run` on each
progress update). A run that is ``queued`` or ``running``, has no items (queued runs are the
sweeper's: :mod:`core.billing.runs.queue`) and whose last sign of life (``heartbeat_at``, else
``started_at``, else ``created_at``) is older than ``QUEUE_STALE_SECONDS`` died with its
process: the API, the panel and the CLI show it as **interrupted** (a status derived when the
run is read, never stored) and offer to resume it.

Resuming (:func:`claim`, then :func:`continue_run`) takes the run back with one guarded
UPDATE, so of two resumers one wins and a live run is refused (409). It then visits every
account of the run's scope again: exactly-once is the engine's, so what the run billed before
is not billed again and the rest is; the invoices the run wrote before count as its own
(created, totals), not as skipped. Files the run's invoices want and do not have (the process
died between an invoice's commit and its rendering) are rendered at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import peewee as pw
from flask import current_app

from core.billing.invoicing import storage
from core.billing.models import BillRun, BillRunItem, Invoice, InvoiceFile
from core.billing.runs import engine
from core.billing.runs.summary import RunSummary, invoice_rows
from core.db import database, utcnow
from core.errors import Conflict
from core.models import Account

log = logging.getLogger("billhive.billing")

OPEN = ("queued", "running")
INTERRUPTED = "interrupted"


def stale_seconds(config=None) -> float:
    config = current_app.config if config is None else config
    return float(config.get("QUEUE_STALE_SECONDS") or 120)


def _last_sign():
    return pw.fn.COALESCE(BillRun.heartbeat_at, BillRun.started_at, BillRun.created_at)


def _has_items():
    return pw.fn.EXISTS(
        BillRunItem.select(pw.SQL("1")).where(BillRunItem.bill_run == BillRun.id).limit(1)
    )


def is_interrupted(run: BillRun, *, has_items: bool | None = None, now=None) -> bool:
    """Whether ``run`` died with its process (see the module doc). ``has_items``: whether it
    is a queued run, when the caller knows already."""
    if run.status not in OPEN:
        return False
    if has_items is None:
        has_items = BillRunItem.select().where(BillRunItem.bill_run == run.id).exists()
    if has_items:
        return False
    last = run.heartbeat_at or run.started_at or run.created_at
    now = now or utcnow()
    return last is not None and (now - last).total_seconds() > stale_seconds()


def interrupted_runs(query: pw.ModelSelect | None = None) -> pw.ModelSelect:
    """Runs (of ``query``, default all) that are interrupted now."""
    cutoff = utcnow() - timedelta(seconds=stale_seconds())
    query = BillRun.select() if query is None else query
    return query.where(BillRun.status.in_(OPEN) & (_last_sign() < cutoff) & ~_has_items())


def add_heartbeat_column(migrator, db) -> None:
    """Core migration: ``BillRun.heartbeat_at`` on a database made before it (a no-op on a
    new database, whose table the model made)."""
    from playhouse.migrate import migrate

    table = BillRun._meta.table_name
    if "heartbeat_at" not in {c.name for c in db.get_columns(table)}:
        migrate(migrator.add_column(table, "heartbeat_at", BillRun.heartbeat_at))


# -- the heartbeat ---------------------------------------------------------------------------


@contextmanager
def beating(run_id: int | None, interval: float | None = None):
    """Refresh the run's heartbeat from a thread while the block runs (the block may spend
    long on one account: the beat does not depend on progress)."""
    if run_id is None:
        yield
        return
    interval = interval or max(0.2, stale_seconds() / 6)
    stop = threading.Event()

    def beat():
        while not stop.wait(interval):
            try:
                with database.connection_context():  # this thread's own connection
                    BillRun.update(heartbeat_at=utcnow()).where(
                        (BillRun.id == run_id) & BillRun.status.in_(OPEN)
                    ).execute()
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.warning("heartbeat of bill run %s failed", run_id, exc_info=True)

    BillRun.update(heartbeat_at=utcnow()).where(BillRun.id == run_id).execute()
    thread = threading.Thread(target=beat, name=f"bill-run-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# -- resuming --------------------------------------------------------------------------------


class NotInterrupted(Conflict):
    code = "not_interrupted"


def claim(run: BillRun) -> BillRun:
    """Take an interrupted run back (one guarded UPDATE: one of several resumers wins);
    raises :class:`NotInterrupted` (409) saying why otherwise."""
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_seconds())
    taken = (
        BillRun.update(status="running", heartbeat_at=now, finished_at=None)
        .where(
            (BillRun.id == run.id)
            & BillRun.status.in_(OPEN)
            & (_last_sign() < cutoff)
            & ~_has_items()
        )
        .execute()
    )
    if not taken:
        fresh = BillRun.get_by_id(run.id)
        if fresh.status not in OPEN:
            why = f"it is {fresh.status}"
        elif BillRunItem.select().where(BillRunItem.bill_run == run.id).exists():
            why = "it is queued: the workers and the sweeper finish it (billhive bill-run sweep)"
        else:
            last = fresh.heartbeat_at or fresh.started_at or fresh.created_at
            why = (
                f"it is still running (last heartbeat {int((now - last).total_seconds())} s "
                f"ago; a run is interrupted after {stale_seconds():g} s without one)"
            )
        raise NotInterrupted(f"bill run {run.id} cannot be resumed: {why}")
    return BillRun.get_by_id(run.id)


def render_missing(run_id: int) -> list[str]:
    """Render, in this process, the files the run's invoices want and do not have; returns
    error messages."""
    errors: list[str] = []
    stored: dict[int, set] = {}
    rows = (
        InvoiceFile.select(InvoiceFile.invoice, InvoiceFile.format)
        .join(Invoice)
        .where(Invoice.bill_run == run_id)
        .tuples()
    )
    for invoice_id, code in rows:
        stored.setdefault(invoice_id, set()).add(code)
    accounts: dict = {}
    # read them all first: no statement stays open while files are written (SQLite)
    invoices = list(Invoice.select().where(Invoice.bill_run == run_id).order_by(Invoice.id))
    for invoice in invoices:
        if set(storage.wanted_formats(invoice, accounts)) - stored.get(invoice.id, set()):
            invoice.account = storage._account(invoice.account_id, accounts)
            invoice.issuer = storage._account(invoice.issuer_id, accounts)
            errors += storage.render_all(invoice)
    return errors


def continue_run(run: BillRun, *, actor=None, progress=None) -> dict:
    """Bill what the claimed ``run`` left (see the module doc); returns its summary, as
    :func:`core.billing.runs.engine.run` does, covering the whole run."""
    scope = Account.get_by_id(run.scope_id) if run.scope_id else None
    before = list(Invoice.select().where(Invoice.bill_run == run.id).order_by(Invoice.id))
    own = {(i.account_id, i.issuer_id, f"{i.period_start}/{i.period_end}") for i in before}
    earlier = invoice_rows(before)
    accounts = engine.plan_accounts(scope)
    summary = RunSummary(run.as_of, len(accounts), run.id, resumed=True)
    cache = engine.RunCache()
    BillRun.update(total=len(accounts), done=0, heartbeat_at=utcnow()).where(
        BillRun.id == run.id
    ).execute()

    merged = False  # summary.invoices holds the earlier invoices too

    def update(done: int, status=None):
        values = {
            BillRun.done: done,
            BillRun.created: len(summary.invoices) + (0 if merged else len(earlier)),
            BillRun.skipped: len(summary.invoices_skipped),
            BillRun.failures: summary.failures,
            BillRun.heartbeat_at: utcnow(),
        }
        if status:
            values[BillRun.status] = status
            values[BillRun.finished_at] = utcnow()
            values[BillRun.summary] = summary.as_dict(invoices=False)
        BillRun.update(values).where(BillRun.id == run.id).execute()

    last, index = time.monotonic(), 0
    with beating(run.id):
        try:
            for index, account in enumerate(accounts, start=1):
                skipped = len(summary.invoices_skipped)
                engine.bill_account(account, run.as_of, summary, scope=scope, cache=cache,
                                    bill_run_id=run.id, actor=actor)  # fmt: skip
                # what this run invoiced before it died is its own work, not a skip
                new = summary.invoices_skipped[skipped:]
                if new and own:
                    issuer_ids = {i.issuer_id for i in before if i.account_id == account.id}
                    by_name = {cache.issuer(i).name: i for i in issuer_ids}
                    summary.invoices_skipped[skipped:] = [
                        s
                        for s in new
                        if (account.id, by_name.get(s.get("issuer")), s.get("period")) not in own
                    ]
                if progress is not None:
                    progress(index, len(accounts), account)
                if time.monotonic() - last > 0.3:
                    last = time.monotonic()
                    update(index)
            summary.render_errors += render_missing(run.id)
        except BaseException as exc:
            summary.failed(f"{type(exc).__name__}: {exc}")
            update(index, status="failed")
            raise
        summary.invoices = earlier + summary.invoices
        merged = True
        summary.finish()
        update(len(accounts), status="failed" if summary.failures else "done")
    return summary.as_dict()
