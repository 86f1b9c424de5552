"""Bill runs on the worker queue (:mod:`core.tasks`: huey, ``BILLHIVE_QUEUE``); the run's
state lives in the database. In ``inline`` mode (the default without Redis) a bill run runs in
the process that starts it (the CLI with its progress bar, a thread of the web process for the
panel): ``engine.run``; in ``sqlite`` or ``redis`` mode it is queued.

This module registers the bill-run tasks (plan, bill, render), the sweep (which then emits the
core event ``worker_sweep``: :mod:`core.mail.tasks` sweeps its messages) and the dunning run,
and runs the worker (:func:`run_worker`, :func:`drain`).

``billhive bill-run --queue`` and ``sqlite`` / ``redis`` mode in the panel and the API queue a
run; ``billhive worker`` consumes it. A queued run goes like this:

1. :func:`submit` makes one :class:`~core.billing.models.BillRunItem` per account
   (``pending``) with one ``INSERT ... SELECT`` and queues a ``plan`` task, which queues one
   ``bill`` task per pending item.
2. A ``bill`` task claims its item with one guarded UPDATE (``pending`` -> ``running``,
   ``attempts + 1``, ``heartbeat_at``), bills the account with
   :func:`core.billing.runs.engine.bill_account` (each invoice in its own transaction, exactly once
   by the unique index), queues one ``render`` task per file the invoice wants (recording each
   as a :class:`~core.billing.models.PendingRender` row first), and marks the item ``done`` or
   ``failed``. A render task stores its file and deletes its row, or records the failure on
   it. The run is finished (totals from the invoices of the run) by the worker that leaves
   nothing open: no item pending or running, no file wanted that is neither stored nor has
   its render failure recorded (reported in the run's ``render_errors``).
3. While a task runs, a thread of its worker process refreshes ``heartbeat_at``. A worker
   killed mid-task leaves its item ``running`` with an old heartbeat; nothing is lost.
4. The sweeper (:func:`sweep`: ``billhive bill-run sweep``, and every
   ``QUEUE_SWEEP_SECONDS`` in each ``billhive worker``) puts stale items back to ``pending``
   and queues them again, queues pending items that are on no queue (queue empty, or pending
   for longer than ``PENDING_REQUEUE_SECONDS``), fails an item whose worker died
   ``MAX_ATTEMPTS`` times, queues again the renders of files still missing (a worker killed
   while rendering loses its task, not the row; an invoice whose renders were never queued
   gets its rows when its run is checked for completion), and finishes runs with nothing
   left. Queuing an item or a render twice is harmless: only one task can claim an item, the
   engine refuses a second invoice, and a stored file is not rendered again.

Progress (:func:`progress`) is counted from the items, so the panel, the API and the CLI show
the same numbers whatever worker does the work.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import peewee as pw
from flask import current_app
from huey.storage import SqliteStorage

from core import events, tasks
from core._fastpath import Prepared
from core.billing.invoicing import storage
from core.billing.ledger import dunning
from core.billing.models import BillRun, BillRunItem, Invoice, InvoiceFile, PendingRender
from core.billing.runs import engine
from core.billing.runs import records as runs
from core.billing.runs.summary import RunSummary, money_totals
from core.db import database, utcnow
from core.models import Account, User

log = logging.getLogger("billhive.queue")

OPEN = ("pending", "running")
MAX_ATTEMPTS = 3  # a worker died this many times on one account: the item fails
PENDING_REQUEUE_SECONDS = 900  # pending this long while the queue is busy: queue it again
GRACE_SECONDS = 2.0  # a pending item younger than this may be between dequeue and claim
LIST_LIMIT = 1000  # failures / skipped kept in a finished run's summary


def enqueue_renders(written: engine.WrittenInvoice) -> list[str]:
    """``engine.bill_account``'s render step for queued runs: one task per file the
    invoice wants, each recorded first (:class:`PendingRender`) so a lost task is found."""
    invoice = written.invoice
    codes = storage.wanted_formats(invoice, chosen=written.formats)
    _queue_renders(invoice.bill_run, [(invoice.id, code) for code in codes])
    return []


# -- submitting and planning -----------------------------------------------------------------


def submit(run: BillRun, *, enqueue_items: bool = False) -> int:
    """Make the run's items (one per account, ``pending``) and queue its planning; returns
    the number of accounts. With ``enqueue_items`` the bill tasks are queued here (the CLI)
    instead of by a worker's ``plan`` task (the web request returns at once)."""
    scope = Account.get_by_id(run.scope_id) if run.scope_id else None
    now = utcnow()
    with database.atomic():
        # peewee's defaults are Python-side: an INSERT ... SELECT names every column
        query = engine.plan_query(
            scope,
            pw.Value(run.id),
            Account.id,
            pw.Value("pending"),
            pw.Value(0),
            pw.Value(0),
            pw.Value(0),
            BillRunItem.heartbeat_at.to_value(now),
        )
        columns = [BillRunItem.bill_run, BillRunItem.account, BillRunItem.status,
                   BillRunItem.attempts, BillRunItem.created, BillRunItem.skipped,
                   BillRunItem.heartbeat_at]  # fmt: skip
        BillRunItem.insert_from(query, columns).on_conflict_ignore().execute()
        total = BillRunItem.select().where(BillRunItem.bill_run == run.id).count()
        BillRun.update(status="running", total=total, started_at=now).where(
            BillRun.id == run.id
        ).execute()
    run.status, run.total, run.started_at = "running", total, now
    if not total:
        finish(run.id)
    elif enqueue_items:
        plan(run.id)
    else:
        try:
            tasks.get_queue().plan_task(run.id)
        except Exception:  # noqa: BLE001 - the run is safe in the database: a sweep queues it
            log.warning("bill run %s: the queue is unreachable; the sweeper will queue its "
                        "items", run.id, exc_info=True)  # fmt: skip
    return total


def plan(run_id: int) -> int:
    """Queue one bill task per pending item of the run; returns how many."""
    queue = tasks.get_queue()
    ids = [
        row[0]
        for row in BillRunItem.select(BillRunItem.id)
        .where((BillRunItem.bill_run == run_id) & (BillRunItem.status == "pending"))
        .order_by(BillRunItem.id)
        .tuples()
    ]
    for item_id in ids:
        queue.bill_task(item_id)
    return len(ids)


# -- billing one item ------------------------------------------------------------------------


@dataclass
class _RunContext:
    run: BillRun
    scope: Account | None
    actor: User | None
    cache: engine.RunCache = field(default_factory=engine.RunCache)


_runs: dict[tuple, _RunContext] = {}  # per worker process: the run being worked on


def _run_context(run_id: int) -> _RunContext:
    key = (id(database.obj), run_id)
    ctx = _runs.get(key)
    if ctx is None:
        run = BillRun.get_by_id(run_id)
        ctx = _RunContext(
            run=run,
            scope=Account.get_by_id(run.scope_id) if run.scope_id else None,
            actor=User.get_or_none(User.id == run.started_by_id) if run.started_by_id else None,
        )
        _runs.clear()  # one run at a time is what a worker caches
        _runs[key] = ctx
    return ctx


# the statements every task runs (SQL generated once: see core._fastpath.Prepared)
_take_item = Prepared(
    lambda item, now, cutoff: BillRunItem.update(
        status="running", attempts=BillRunItem.attempts + 1, heartbeat_at=now, error=None
    ).where(
        (BillRunItem.id == item)
        & (
            (BillRunItem.status == "pending")
            | ((BillRunItem.status == "running") & (BillRunItem.heartbeat_at < cutoff))
        )
    )
)
_item = Prepared(lambda item: BillRunItem.select().where(BillRunItem.id == item))
_account = Prepared(lambda account: Account.select().where(Account.id == account))
_invoice = Prepared(lambda invoice: Invoice.select().where(Invoice.id == invoice))
_finish_item = Prepared(
    lambda item, attempt, status, error, detail, created, skipped, now: BillRunItem.update(
        status=status,
        error=error,
        detail=detail,
        created=created,
        skipped=skipped,
        heartbeat_at=now,
        finished_at=now,
    ).where(
        (BillRunItem.id == item)
        & (BillRunItem.status == "running")
        & (BillRunItem.attempts == attempt)
    )
)
_item_open = Prepared(
    lambda run: (
        BillRunItem.select(pw.SQL("1"))
        .where((BillRunItem.bill_run == run) & BillRunItem.status.in_(OPEN))
        .limit(1)
    )
)
_renders_open = Prepared(
    lambda run: (
        PendingRender.select(pw.SQL("1"))
        .where((PendingRender.bill_run == run) & PendingRender.error.is_null())
        .limit(1)
    )
)
_render_done = Prepared(
    lambda invoice, code: PendingRender.delete().where(
        (PendingRender.invoice == invoice) & (PendingRender.format == code)
    )
)
_file_stored = Prepared(
    lambda invoice, code: (
        InvoiceFile.select(pw.SQL("1"))
        .where((InvoiceFile.invoice == invoice) & (InvoiceFile.format == code))
        .limit(1)
    )
)


def claim(item_id: int, stale: float) -> BillRunItem | None:
    """Take the item (pending, or running with a heartbeat older than ``stale`` seconds);
    returns it with its account (``attempts`` is this attempt's number), None when another
    worker has it or it is finished."""
    now = utcnow()
    if not _take_item.rowcount(item_id, now, now - timedelta(seconds=stale)):
        return None
    item = _item.instance(item_id)
    item.account = _account.instance(item.account_id)
    return item


def bill_item(item_id: int) -> str:
    """Bill the account of one item; returns what happened (``done``, ``failed``, ``retry``
    or ``not claimed``)."""
    queue = tasks.get_queue()
    item = claim(item_id, queue.stale_seconds)
    if item is None:
        return "not claimed"
    attempt = item.attempts
    ctx = _run_context(item.bill_run_id)
    run = ctx.run
    summary = RunSummary(run.as_of, 1, run.id)
    with _heartbeat(item_id, queue.heartbeat_seconds):
        try:
            engine.bill_account(item.account, run.as_of, summary, scope=ctx.scope,
                                bill_run_id=run.id, actor=ctx.actor, cache=ctx.cache,
                                render=enqueue_renders)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - not a rating failure: the item is retried
            log.exception("bill run %s: account %s failed", run.id, item.account_id)
            error = f"{type(exc).__name__}: {exc}"
            if attempt < MAX_ATTEMPTS:
                _release(item_id, attempt, error)
                queue.bill_task.schedule((item_id,), delay=attempt)
                return "retry"
            summary.failures.append({"account_id": item.account_id, "account": "", "error": error})
    failures = summary.failures
    detail = {
        key: value
        for key, value in (("failures", failures), ("invoices_skipped", summary.invoices_skipped),
                           ("render_errors", summary.render_errors))
        if value
    }  # fmt: skip
    status = "failed" if failures else "done"
    _finish_item.execute(
        item_id,
        attempt,
        status,
        failures[0]["error"] if failures else None,
        BillRunItem.detail.db_value(detail or None),
        len(summary.invoices),
        len(summary.invoices_skipped),
        utcnow(),
    )
    finish_if_complete(run.id)
    return status


def _release(item_id: int, attempt: int, error: str) -> None:
    BillRunItem.update(status="pending", error=error, heartbeat_at=utcnow()).where(
        (BillRunItem.id == item_id)
        & (BillRunItem.status == "running")
        & (BillRunItem.attempts == attempt)
    ).execute()


class _Beats:
    """The items this process is working on, and a thread refreshing their heartbeat."""

    def __init__(self):
        self.items: set[int] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = None
        self.interval = 10.0

    def start(self, app, interval: float) -> None:
        self.interval = interval
        if self.thread is not None and self.pid == os.getpid() and self.thread.is_alive():
            return
        self.pid = os.getpid()  # after a fork the thread is gone: start one in this process
        self.thread = threading.Thread(
            target=self._run, args=(app,), name="billhive-heartbeat", daemon=True
        )
        self.thread.start()

    def _run(self, app) -> None:
        while True:
            time.sleep(self.interval)
            with self.lock:
                ids = list(self.items)
            if not ids:
                continue
            try:
                with database.connection_context():  # this thread's own connection
                    BillRunItem.update(heartbeat_at=utcnow()).where(
                        BillRunItem.id.in_(ids) & (BillRunItem.status == "running")
                    ).execute()
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.warning("heartbeat of items %s failed", ids, exc_info=True)


_beats = _Beats()


@contextmanager
def _heartbeat(item_id: int, interval: float):
    _beats.start(current_app._get_current_object(), interval)
    with _beats.lock:
        _beats.items.add(item_id)
    try:
        yield
    finally:
        with _beats.lock:
            _beats.items.discard(item_id)


# -- finishing a run -------------------------------------------------------------------------


def finish_if_complete(run_id: int) -> bool:
    """Finish the run when none of its items is pending or running and none of its files is
    waiting to be rendered. Called after the caller's item or file is committed, so the
    worker finishing the last one sees every other."""
    if _item_open.scalar(run_id) is not None or _renders_open.scalar(run_id) is not None:
        return False
    return finish(run_id)


def missing_files(run_id: int) -> list[tuple[int, str]]:
    """(invoice id, format) of every file the run's invoices want that is neither stored nor
    waiting (a :class:`PendingRender` row): the renders a killed worker never queued."""
    known: dict[int, set] = {}
    stored = (
        InvoiceFile.select(InvoiceFile.invoice, InvoiceFile.format)
        .join(Invoice)
        .where(Invoice.bill_run == run_id)
        .tuples()
    )
    waiting = PendingRender.select(PendingRender.invoice, PendingRender.format).where(
        PendingRender.bill_run == run_id
    )
    for invoice_id, code in list(stored) + list(waiting.tuples()):
        known.setdefault(invoice_id, set()).add(code)
    accounts: dict = {}
    missing = []
    invoices = list(Invoice.select().where(Invoice.bill_run == run_id).order_by(Invoice.id))
    for invoice in invoices:
        for code in storage.wanted_formats(invoice, accounts):
            if code not in known.get(invoice.id, ()):
                missing.append((invoice.id, code))
    return missing


def _queue_renders(run_id: int, files: list[tuple[int, str]]) -> None:
    now = utcnow()
    for chunk in pw.chunked(files, 500):
        PendingRender.insert_many(
            [
                {"invoice": i, "format": code, "bill_run": run_id, "queued_at": now}
                for i, code in chunk
            ]  # fmt: skip
        ).on_conflict_ignore().execute()
    queue = tasks.get_queue()
    for invoice_id, code in files:
        queue.render_task(invoice_id, code)


def finish(run_id: int) -> bool:
    """Mark a queued run done (failed when an item failed) with its summary; once. A run
    whose invoices still miss files is not finished: their renders are queued (the run is
    finished by the last of them)."""
    run = BillRun.get_or_none(BillRun.id == run_id)
    if run is None or run.status not in ("queued", "running"):
        return False
    missing = missing_files(run_id)
    if missing:
        log.warning("bill run %s: %d file(s) were never rendered; queuing them", run_id,
                    len(missing))  # fmt: skip
        _queue_renders(run_id, missing)
        return False
    counts = progress(run_id)
    failures, skipped, render_errors = [], [], []
    details = (
        BillRunItem.select(BillRunItem.detail)
        .where((BillRunItem.bill_run == run_id) & BillRunItem.detail.is_null(False))
        .order_by(BillRunItem.id)
        .tuples()
    )
    for (detail,) in details:
        failures += detail.get("failures", [])
        skipped += detail.get("invoices_skipped", [])
        render_errors += detail.get("render_errors", [])
    failed_renders = (
        PendingRender.select(PendingRender.format, PendingRender.error, Invoice.number)
        .join(Invoice)
        .where((PendingRender.bill_run == run_id) & PendingRender.error.is_null(False))
        .order_by(PendingRender.invoice, PendingRender.format)
        .tuples()
    )
    for code, error, number in failed_renders:
        render_errors.append(f"{number}: rendering {code} failed: {error}")
    minor_by_currency, created = {}, 0
    rows = (
        Invoice.select(Invoice.currency, pw.fn.SUM(Invoice.total), pw.fn.COUNT(Invoice.id))
        .where(Invoice.bill_run == run_id)
        .group_by(Invoice.currency)
        .order_by(Invoice.currency)
        .tuples()
    )
    for currency, minor, count in rows:
        minor_by_currency[currency] = int(minor or 0)
        created += count
    summary = RunSummary(
        run.as_of, counts["total"], run.id, queued=True, invoices_created=created,
        invoices_skipped=skipped[:LIST_LIMIT], failures=failures[:LIST_LIMIT],
        render_errors=render_errors[:LIST_LIMIT], totals=money_totals(minor_by_currency),
    )  # fmt: skip
    return bool(
        BillRun.update(
            status="failed" if failures or counts["failed"] else "done",
            done=counts["done"],
            total=counts["total"],
            created=created,
            skipped=counts["skipped"],
            failures=failures[:LIST_LIMIT],
            summary=summary.as_dict(invoices=False),
            finished_at=utcnow(),
        )
        .where((BillRun.id == run_id) & BillRun.status.in_(["queued", "running"]))
        .execute()
    )


# -- progress --------------------------------------------------------------------------------


def progress(run_id: int) -> dict:
    """Counts of the run's items: total, pending, running, done (finished: done + failed),
    failed, created (invoices), skipped."""
    out = dict.fromkeys(("total", "pending", "running", "done", "failed", "created", "skipped"), 0)
    rows = (
        BillRunItem.select(
            BillRunItem.status,
            pw.fn.COUNT(BillRunItem.id),
            pw.fn.SUM(BillRunItem.created),
            pw.fn.SUM(BillRunItem.skipped),
        )
        .where(BillRunItem.bill_run == run_id)
        .group_by(BillRunItem.status)
        .tuples()
    )
    for status, count, created, skipped in rows:
        out[status] = out.get(status, 0) + count
        out["total"] += count
        out["created"] += int(created or 0)
        out["skipped"] += int(skipped or 0)
    out["done"] += out["failed"]
    return out


def live(run: BillRun) -> BillRun:
    """The run with its counters taken from its items while it is queued or running (the
    row's own counters are written when it finishes). Adds ``pending``, ``running``,
    ``failed``, ``files_pending`` and ``queued`` attributes for the API and the panel. An
    in-process run whose process died shows the status ``interrupted``
    (:mod:`core.billing.runs.records`)."""
    run.queued = run.pending = run.running = run.failed = run.files_pending = None
    if run.status not in ("queued", "running"):
        summary = run.summary or {}
        run.queued = bool(summary.get("queued"))
        return run
    counts = progress(run.id)
    if not counts["total"]:
        # an in-process run: engine.run keeps the row's counters up to date
        if runs.is_interrupted(run, has_items=False):
            run.status = runs.INTERRUPTED
        return run
    run.queued = True
    run.files_pending = (
        PendingRender.select()
        .where((PendingRender.bill_run == run.id) & PendingRender.error.is_null())
        .count()
    )
    run.total, run.done = counts["total"], counts["done"]
    run.created, run.skipped = counts["created"], counts["skipped"]
    run.pending, run.running, run.failed = counts["pending"], counts["running"], counts["failed"]
    failed = (
        BillRunItem.select(BillRunItem.account, BillRunItem.error, BillRunItem.detail)
        .where((BillRunItem.bill_run == run.id) & (BillRunItem.status == "failed"))
        .order_by(BillRunItem.id)
        .limit(50)
    )
    run.failures = [
        f
        for item in failed
        for f in (item.detail or {}).get("failures")
        or [{"account_id": item.account_id, "error": item.error}]
    ]
    return run


# -- the sweeper -----------------------------------------------------------------------------


def sweep(stale: float | None = None, *, now=None) -> dict:
    """Put lost work back on the queue (see the module doc); returns counts of what it did."""
    queue = tasks.get_queue()
    stale = queue.stale_seconds if stale is None else stale
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stale)
    report = {"requeued_stale": 0, "requeued_pending": 0, "requeued_renders": 0, "failed": 0,
              "finished": 0}  # fmt: skip
    empty = queue.pending_count() == 0  # before this sweep queues anything

    # 1. running items whose worker stopped beating
    lost = (
        BillRunItem.select(BillRunItem.id, BillRunItem.attempts, BillRunItem.heartbeat_at)
        .where((BillRunItem.status == "running") & (BillRunItem.heartbeat_at < cutoff))
        .tuples()
    )
    for item_id, attempts, beat in list(lost):
        guard = (
            (BillRunItem.id == item_id)
            & (BillRunItem.status == "running")
            & (BillRunItem.attempts == attempts)
            & (BillRunItem.heartbeat_at < cutoff)
        )
        if attempts >= MAX_ATTEMPTS:
            error = f"its worker stopped {attempts} times on this account (last beat {beat})"
            detail = {"failures": [{"account_id": None, "error": error}]}
            if BillRunItem.update(status="failed", error=error, detail=detail,
                                  finished_at=now).where(guard).execute():  # fmt: skip
                report["failed"] += 1
            continue
        error = f"requeued: its worker stopped (last heartbeat {beat})"
        if (
            BillRunItem.update(status="pending", error=error, heartbeat_at=now)
            .where(guard)
            .execute()
        ):
            queue.bill_task(item_id)
            report["requeued_stale"] += 1

    # 2. pending items on no queue: all of them when the queue is empty, else the old ones
    older = now - timedelta(seconds=GRACE_SECONDS if empty else max(PENDING_REQUEUE_SECONDS, stale))
    waiting = [
        row[0]
        for row in BillRunItem.select(BillRunItem.id)
        .where((BillRunItem.status == "pending") & (BillRunItem.heartbeat_at < older))
        .order_by(BillRunItem.id)
        .tuples()
    ]
    for chunk in pw.chunked(waiting, 500):
        BillRunItem.update(heartbeat_at=now).where(
            BillRunItem.id.in_(chunk) & (BillRunItem.status == "pending")
        ).execute()
        for item_id in chunk:
            queue.bill_task(item_id)
        report["requeued_pending"] += len(chunk)

    # 3. files wanted and neither stored nor failed whose render task is on no queue (its
    # worker was killed while rendering): all of them when the queue is empty, else old ones
    lost_renders = list(
        PendingRender.select(PendingRender.id, PendingRender.invoice, PendingRender.format)
        .where(PendingRender.error.is_null() & (PendingRender.queued_at < older))
        .order_by(PendingRender.id)
        .tuples()
    )
    for chunk in pw.chunked(lost_renders, 500):
        PendingRender.update(queued_at=now).where(
            PendingRender.id.in_([row[0] for row in chunk])
        ).execute()
        for _, invoice_id, code in chunk:
            queue.render_task(invoice_id, code)
        report["requeued_renders"] += len(chunk)

    # 4. runs with nothing open (the last worker died before finishing the run); a run whose
    # invoices miss files no render task was ever queued for gets them queued instead
    has_items = BillRunItem.select(BillRunItem.id).where(BillRunItem.bill_run == BillRun.id)
    running = BillRun.select(BillRun.id).where(
        BillRun.status.in_(["queued", "running"]) & pw.fn.EXISTS(has_items)
    )
    for (run_id,) in running.tuples():
        report["finished"] += finish_if_complete(run_id)
    if any(report.values()):
        log.info("sweep: %s", report)
    return report


# -- tasks (run by `billhive worker`, registered on the queue: core.tasks) -------------------


def bind(app) -> None:
    """Serve ``app`` in this process (:func:`core.tasks.bind`), with no bill run cached."""
    tasks.bind(app)
    _runs.clear()


@tasks.task("plan")
def _plan_task(run_id: int) -> None:
    with tasks.task_context():
        plan(run_id)


@tasks.task("bill")
def _bill_task(item_id: int) -> None:
    with tasks.task_context():
        bill_item(item_id)


def render_file(invoice_id: int, code: str) -> bool:
    """Render and store one file of an invoice unless it is there already (or no longer
    wanted); then its :class:`PendingRender` row goes and the run is finished if that was
    all. A failure is recorded on the row (reported in the run) and logged; the file is
    rendered on its first download instead."""
    invoice = _invoice.instance(invoice_id)
    if invoice is None or invoice.status == "draft":
        return False
    rendered = False
    if _file_stored.scalar(invoice_id, code) is None:
        invoice.account = _account.instance(invoice.account_id)
        invoice.issuer = _account.instance(invoice.issuer_id)
        if code in storage.wanted_formats(invoice):
            try:
                storage.render_one(invoice, code)
                rendered = True
            except Exception as exc:  # noqa: BLE001 - reported in the run; again on download
                log.exception("rendering %s of invoice %s failed", code, invoice_id)
                PendingRender.update(
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                    attempts=PendingRender.attempts + 1,
                ).where(
                    (PendingRender.invoice == invoice_id) & (PendingRender.format == code)
                ).execute()
                if invoice.bill_run:
                    finish_if_complete(invoice.bill_run)
                return False
    _render_done.execute(invoice_id, code)
    if invoice.bill_run:
        finish_if_complete(invoice.bill_run)
    return rendered


@tasks.task("render")
def _render_task(invoice_id: int, code: str) -> None:
    with tasks.task_context():
        render_file(invoice_id, code)


@tasks.task("sweep")
def _sweep_task() -> None:
    with tasks.task_context():
        sweep()
        events.emit("worker_sweep")  # core.mail: messages due again, lost tasks, dead senders


@tasks.task("dunning")
def _dunning_task() -> None:
    """``billhive dunning run`` for today (core.billing.ledger.dunning): every step once, so two
    workers queuing it at the same time send nothing twice."""
    with tasks.task_context():
        summary = dunning.run()
        if summary["steps"] or summary["failures"]:
            log.info("dunning %s: %d step(s), %d failure(s)", summary["date"],
                     len(summary["steps"]), len(summary["failures"]))  # fmt: skip


def drain(app, limit: int | None = None) -> int:
    """Run queued tasks in this process until the queue is empty (tests, tools); returns
    how many ran."""
    bind(app)
    queue = tasks.get_queue(app)
    ran = 0
    while limit is None or ran < limit:
        task = queue.huey.dequeue()
        if task is None:
            break
        queue.huey.execute(task)
        ran += 1
    return ran


def run_worker(app, workers: int = 2, worker_type: str = "process", echo=print) -> None:
    """``billhive worker``: a huey consumer with ``workers`` workers, and a thread queuing a
    sweep every ``QUEUE_SWEEP_SECONDS`` and a dunning run every ``DUNNING_SECONDS`` (0: never)."""
    bind(app)
    queue = tasks.get_queue(app)
    every = float(app.config.get("QUEUE_SWEEP_SECONDS") or 30)
    dunning_every = float(app.config.get("DUNNING_SECONDS", 3600) or 0)
    consumer = queue.huey.create_consumer(
        workers=workers,
        worker_type=worker_type,
        periodic=False,
        initial_delay=0.05,
        backoff=1.5,
        max_delay=0.5,
        check_worker_health=True,
        graceful_signal="TERM",  # SIGTERM lets the tasks at hand finish; SIGINT stops at once
    )
    stop = threading.Event()
    master = os.getpid()
    sql_storage = isinstance(queue.huey.storage, SqliteStorage)

    @queue.huey.on_startup("billhive-own-connection")
    def own_connection():
        # a worker process forked (or re-forked after dying) while this process held the
        # SQLite queue file open must not share that connection
        if sql_storage and os.getpid() != master:
            queue.huey.storage._conn = None

    dunned = [time.monotonic()]

    def sweeper():  # only queues the sweep: this process never opens the database
        while not stop.wait(min(every, dunning_every) if dunning_every else every):
            try:
                queue.sweep_task()
                if dunning_every and time.monotonic() - dunned[0] >= dunning_every:
                    queue.dunning_task()
                    dunned[0] = time.monotonic()
                if sql_storage:
                    queue.huey.storage.close()  # not held open across a fork
            except Exception:  # noqa: BLE001 - the queue may be down for a moment
                log.warning("could not queue a sweep", exc_info=True)

    dunning_note = f"dunning every {dunning_every:g}s" if dunning_every else "no dunning"
    echo(
        f"Billhive worker: {workers} {worker_type} worker(s) on the {tasks.describe(app.config)}; "
        f"sweeping every {every:g}s, stale after {queue.stale_seconds:g}s, {dunning_note} "
        "(Ctrl+C stops)"
    )
    queue.sweep_task()  # pick up what a previous worker left at once
    if dunning_every:
        queue.dunning_task()
    threading.Thread(target=sweeper, name="billhive-sweeper", daemon=True).start()
    try:
        consumer.run()
    finally:
        stop.set()
