"""Queued bill runs, in this process: items made by one INSERT ... SELECT, tasks drained from a
real SqliteHuey file, claims guarded, the sweeper, progress from the items in the API and the
panel. The same run in worker subprocesses (killed, two at once, Redis) is in
test_scale_workers.py."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core import tasks
from core.billing.models import (
    BillRun,
    BillRunItem,
    Invoice,
    InvoiceFile,
    InvoiceLine,
    PendingRender,
)
from core.billing.runs import queue
from core.db import utcnow
from tests.billing_support import setup_catalog, subscribe
from tests.plugins import billing_charges, slow_format

PLUGINS = ["invoice_pdf", "reseller_accounts"]
MODULES = {"billing_charges": "tests.plugins.billing_charges",
           "slow_format": "tests.plugins.slow_format"}  # fmt: skip
AS_OF = date(2026, 2, 1)


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(plugins=PLUGINS, modules=MODULES, QUEUE="sqlite",
                    QUEUE_PATH=str(tmp_path / "queue.db"), QUEUE_STALE_SECONDS=60)  # fmt: skip


@pytest.fixture
def customers(world, ctx):
    host = ctx.extensions["billhive"].host
    host.set_enabled("billing_charges", True)
    host.set_enabled("invoice_pdf", True)
    billing_charges.MODE = None
    _, plan = setup_catalog(world.provider, price="30.00")
    accounts = [world.customer_a, world.customer_b]
    for i in range(6):
        accounts.append(world.add_account(world.provider, f"Customer {i:02d}"))
    for acc in accounts:
        subscribe(acc, plan, start="2026-01-01")
    return accounts


def check_exactly_once(accounts):
    invoices = list(Invoice.select().order_by(Invoice.number))
    assert sorted(i.account_id for i in invoices) == sorted(a.id for a in accounts)
    assert [i.number for i in invoices] == [f"INV-{n:06d}" for n in range(1, len(accounts) + 1)]
    for inv in invoices:
        assert inv.status == "issued" and inv.total == 3500
        assert [line.amount for line in inv.lines] == [3000, 500]
    orphans = InvoiceLine.select().where(InvoiceLine.invoice.not_in(Invoice.select(Invoice.id)))
    assert orphans.count() == 0


def submit(ctx):
    run = BillRun.create(as_of=AS_OF, status="queued")
    queue.submit(run)
    return run


def test_a_queued_run_makes_one_item_per_account_and_bills_each_once(customers, ctx):
    run = submit(ctx)
    items = list(BillRunItem.select().where(BillRunItem.bill_run == run.id))
    assert sorted(i.account_id for i in items) == sorted(a.id for a in customers)
    assert {i.status for i in items} == {"pending"}
    assert BillRun.get_by_id(run.id).status == "running"
    assert Invoice.select().count() == 0  # nothing billed before a worker runs the tasks

    ran = queue.drain(ctx)
    assert ran == 1 + len(customers) + 2 * len(customers)  # plan, bills, RAW + PDF renders
    check_exactly_once(customers)
    run = BillRun.get_by_id(run.id)
    assert run.status == "done" and run.total == run.done == len(customers)
    assert run.created == len(customers) and run.skipped == 0 and run.failures == []
    assert run.summary["totals"]["EUR"] == {"minor": 8 * 3500, "formatted": "280.00 EUR"}
    assert run.summary["queued"] is True
    assert {i.status for i in BillRunItem.select()} == {"done"}
    assert {i.attempts for i in BillRunItem.select()} == {1}
    # a render task per file, done by the workers
    files = {(f.invoice_id, f.format) for f in InvoiceFile.select()}
    assert files == {(i.id, fmt) for i in Invoice.select() for fmt in ("RAW", "PDF")}


def test_a_second_queued_run_skips_what_the_first_billed(customers, ctx):
    submit(ctx)
    queue.drain(ctx)
    second = submit(ctx)
    queue.drain(ctx)
    check_exactly_once(customers)
    second = BillRun.get_by_id(second.id)
    assert second.status == "done" and second.created == 0
    assert second.skipped == len(customers)
    assert {s["reason"] for s in second.summary["invoices_skipped"]} == {"already invoiced"}


def test_an_item_is_claimed_once_until_its_heartbeat_is_stale(customers, ctx):
    run = submit(ctx)
    item = BillRunItem.select().where(BillRunItem.bill_run == run.id).first()
    assert queue.claim(item.id, stale=60).attempts == 1
    assert queue.claim(item.id, stale=60) is None  # another worker holds it
    BillRunItem.update(heartbeat_at=utcnow() - timedelta(seconds=61)).where(
        BillRunItem.id == item.id
    ).execute()
    taken = queue.claim(item.id, stale=60)  # its worker died: taken over
    assert taken.attempts == 2 and taken.account.id == item.account_id
    assert queue.bill_item(item.id) == "not claimed"  # running, fresh heartbeat


def test_sweeper_requeues_stale_and_lost_items_and_finishes_the_run(customers, ctx):
    run = submit(ctx)
    q = tasks.get_queue(ctx)
    items = list(BillRunItem.select().where(BillRunItem.bill_run == run.id))
    # a worker billed the first account, then died before marking its item (killed)
    first = items[0]
    assert queue.claim(first.id, stale=60).attempts == 1
    # a second worker died while billing: its item stays running with an old heartbeat
    assert queue.claim(items[1].id, stale=60).attempts == 1
    old = utcnow() - timedelta(seconds=300)
    BillRunItem.update(heartbeat_at=old).where(BillRunItem.bill_run == run.id).execute()
    q.huey.flush()  # and the queue lost every message (a Redis restart)
    assert queue.progress(run.id)["running"] == 2

    report = queue.sweep()
    assert report == {"requeued_stale": 2, "requeued_pending": len(items) - 2,
                      "requeued_renders": 0, "failed": 0, "finished": 0}  # fmt: skip
    assert queue.sweep()["requeued_pending"] == 0  # queue not empty: nothing doubled
    queue.drain(ctx)
    check_exactly_once(customers)
    run = BillRun.get_by_id(run.id)
    assert run.status == "done" and run.done == len(items)
    first = BillRunItem.get_by_id(first.id)
    assert first.status == "done" and first.attempts == 2


def test_sweeper_fails_an_item_whose_worker_died_too_often(customers, ctx):
    run = submit(ctx)
    item = BillRunItem.select().where(BillRunItem.bill_run == run.id).first()
    BillRunItem.update(status="running", attempts=queue.MAX_ATTEMPTS,
                       heartbeat_at=utcnow() - timedelta(seconds=300)).where(
        BillRunItem.id == item.id).execute()  # fmt: skip
    assert queue.sweep()["failed"] == 1
    queue.drain(ctx)
    run = BillRun.get_by_id(run.id)
    assert run.status == "failed" and run.done == len(customers)
    assert run.created == len(customers) - 1
    assert "stopped 3 times" in run.failures[0]["error"]


def test_a_raising_plugin_fails_its_items_and_the_run(customers, ctx):
    billing_charges.MODE = "raise"
    try:
        run = submit(ctx)
        queue.drain(ctx)
    finally:
        billing_charges.MODE = None
    run = BillRun.get_by_id(run.id)
    assert run.status == "failed" and run.created == 0
    assert len(run.failures) == len(customers)
    assert "support desk unreachable" in run.failures[0]["error"]
    assert {i.status for i in BillRunItem.select()} == {"failed"}
    assert Invoice.select().count() == 0 and InvoiceLine.select().count() == 0


def test_progress_in_the_api_and_the_panel_follows_the_items(customers, ctx, api, panel, world):
    run = BillRun.create(as_of=AS_OF, status="queued", scope=world.provider.id,
                         started_by=world.operator)  # fmt: skip
    queue.submit(run)
    items = list(BillRunItem.select().where(BillRunItem.bill_run == run.id).order_by(
        BillRunItem.id))  # fmt: skip
    BillRunItem.update(status="done", created=1).where(
        BillRunItem.id << [i.id for i in items[:3]]
    ).execute()
    BillRunItem.update(status="failed", error="RuntimeError: boom",
                       detail={"failures": [{"account": "X", "error": "RuntimeError: boom"}]}
                       ).where(BillRunItem.id == items[3].id).execute()  # fmt: skip
    BillRunItem.update(status="running", heartbeat_at=utcnow()).where(
        BillRunItem.id == items[4].id
    ).execute()
    expected = {"status": "running", "total": 8, "done": 4, "created": 3, "pending": 3,
                "running": 1, "failed": 1, "queued": True}  # fmt: skip

    body = api(world.operator).get(f"/api/v1/bill-runs/{run.id}").get_json()
    assert {k: body[k] for k in expected} == expected
    assert body["failures"] == [{"account": "X", "error": "RuntimeError: boom"}]
    listed = api(world.operator).get("/api/v1/bill-runs").get_json()
    assert {k: listed[0][k] for k in expected} == expected

    client = panel(world.operator)
    body = client.get(f"/billing/runs/{run.id}.json").get_json()
    assert {k: body[k] for k in expected} == expected
    page = client.get("/billing/runs").get_data(as_text=True)
    assert "4 / 8" in page


def test_panel_and_api_queue_the_run_when_the_queue_is_configured(customers, ctx, api, world):
    resp = api(world.operator).post("/api/v1/bill-runs", json={"date": "2026-02-01"})
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    assert body["queued"] is True and body["total"] == len(customers)
    assert body["status"] == "running" and body["done"] == 0
    queue.drain(ctx)
    done = api(world.operator).get(f"/api/v1/bill-runs/{body['id']}").get_json()
    assert done["status"] == "done" and done["created"] == len(customers)
    check_exactly_once(customers)


def test_queue_configuration_is_checked(ctx):
    assert tasks.backend({"QUEUE": "inline"}) == "sqlite"
    assert tasks.backend({"QUEUE": "inline", "REDIS_URL": "redis://x"}) == "redis"
    with pytest.raises(tasks.QueueError, match="BILLHIVE_REDIS_URL"):
        tasks.backend({"QUEUE": "redis"})
    with pytest.raises(tasks.QueueError, match="inline, sqlite, redis"):
        tasks.mode({"QUEUE": "rabbit"})


def test_a_run_submitted_while_the_queue_is_down_waits_safely_in_the_database(make_app):
    nothing_listens = "redis://127.0.0.1:1/0"
    app = make_app(plugins=PLUGINS, modules=MODULES, QUEUE="redis", REDIS_URL=nothing_listens)
    database = app.extensions["billhive"].database
    with app.app_context(), database.connection_context():
        app.extensions["billhive"].host.refresh()
        from tests.conftest import World

        world = World()
        run = BillRun.create(as_of=AS_OF, status="queued", scope=world.provider.id)
        assert queue.submit(run) == 2  # the plan task could not be queued: logged, not raised
        items = BillRunItem.select().where(BillRunItem.bill_run == run.id)
        assert {i.status for i in items} == {"pending"}
        assert queue.live(BillRun.get_by_id(run.id)).pending == 2


# -- files: a run is done only when every wanted file is stored or its failure reported -----


def drain_bills_only(ctx):
    """Run the plan and bill tasks; the render tasks are lost with their worker (killed while
    rendering: SIGKILL, the queue's messages it held gone)."""
    q = tasks.get_queue(ctx)
    queue.bind(ctx)
    renders = 0
    while (task := q.huey.dequeue()) is not None:
        if task.name == "billhive_render":
            renders += 1
            continue
        q.huey.execute(task)
    return renders


def later():
    """A sweep's clock a moment later: a task dequeued this instant is not taken for lost."""
    return utcnow() + timedelta(seconds=queue.GRACE_SECONDS + 1)


def wanted_files():
    return {(i.id, code) for i in Invoice.select() for code in ("RAW", "PDF")}


def test_renders_lost_with_their_worker_are_queued_again_by_the_sweeper(customers, ctx, api,
                                                                       world):  # fmt: skip
    run = submit(ctx)
    assert drain_bills_only(ctx) == 2 * len(customers)
    check_exactly_once(customers)
    assert InvoiceFile.select().count() == 0
    # every item is done, but the files are not there: the run is not done
    assert {i.status for i in BillRunItem.select()} == {"done"}
    assert BillRun.get_by_id(run.id).status == "running"
    BillRun.update(scope=world.provider.id).where(BillRun.id == run.id).execute()
    body = api(world.operator).get(f"/api/v1/bill-runs/{run.id}").get_json()
    assert body["status"] == "running" and body["files_pending"] == 2 * len(customers)

    report = queue.sweep(now=later())
    assert report["requeued_renders"] == 2 * len(customers) and report["finished"] == 0
    queue.drain(ctx)
    assert {(f.invoice_id, f.format) for f in InvoiceFile.select()} == wanted_files()
    run = BillRun.get_by_id(run.id)
    assert run.status == "done" and run.summary["render_errors"] == []
    assert PendingRender.select().count() == 0


def test_an_invoice_whose_renders_were_never_queued_gets_them_before_the_run_is_done(
    customers, ctx
):
    run = submit(ctx)
    drain_bills_only(ctx)
    # the worker died between an invoice's commit and queuing its renders: no trace of them
    victim = Invoice.select().order_by(Invoice.id).first()
    PendingRender.delete().where(PendingRender.invoice == victim.id).execute()
    assert queue.sweep(now=later())["requeued_renders"] == 2 * len(customers) - 2
    queue.drain(ctx)
    assert {(f.invoice_id, f.format) for f in InvoiceFile.select()} == wanted_files()
    assert BillRun.get_by_id(run.id).status == "done"


def test_a_render_failure_is_reported_in_the_run(customers, ctx):
    ctx.extensions["billhive"].host.set_enabled("slow_format", True)
    slow_format.MODE = "raise"
    try:
        run = submit(ctx)
        queue.drain(ctx)
    finally:
        slow_format.MODE = None
    run = BillRun.get_by_id(run.id)
    assert run.status == "done"
    numbers = sorted(i.number for i in Invoice.select())
    assert sorted(run.summary["render_errors"]) == [
        f"{n}: rendering SLOW failed: RuntimeError: the printer is out of toner" for n in numbers
    ]
    stored = {(f.invoice_id, f.format) for f in InvoiceFile.select()}
    assert stored == wanted_files()  # RAW and PDF stored; SLOW failed and is reported
    assert queue.sweep(now=later())["requeued_renders"] == 0  # reported, not retried blindly
