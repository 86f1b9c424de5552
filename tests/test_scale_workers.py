"""Queued bill runs worked off by real `billhive worker` processes (huey consumers), on a
SqliteHuey file and, when the test command provides a server, on Redis: every account billed
once, a worker killed with SIGKILL mid-run and the sweeper with a new worker, two workers on
one run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import pytest

from core import tasks
from core.billing.models import BillRun, BillRunItem, Invoice, InvoiceFile, InvoiceLine
from core.billing.runs import queue
from tests.billing_support import setup_catalog, subscribe
from tests.plugins import billing_charges

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["invoice_pdf", "reseller_accounts"]
MODULES = {"billing_charges": "tests.plugins.billing_charges",
           "slow_format": "tests.plugins.slow_format"}  # fmt: skip
QUEUES = ["sqlite"] + (["redis"] if os.environ.get("BILLHIVE_TEST_REDIS") else [])
AS_OF = date(2026, 2, 1)
N = 10

RUNNER = f"""
import json, sys
from hostapp import cli
from hostapp.app import create_app
config = json.loads(sys.argv[1])
cli._app = create_app({{**config, "PLUGINS": {PLUGINS!r}, "PLUGIN_MODULES": {MODULES!r}}})
sys.argv = ["billhive"] + sys.argv[2:]
cli.main()
"""


@pytest.fixture(params=QUEUES)
def queue_config(request, tmp_path):
    config = {"QUEUE": request.param, "QUEUE_NAME": f"bh-test-{uuid.uuid4().hex[:10]}",
              "QUEUE_PATH": str(tmp_path / "queue.db"), "QUEUE_STALE_SECONDS": 2,
              "QUEUE_SWEEP_SECONDS": 1}  # fmt: skip
    if request.param == "redis":
        config["REDIS_URL"] = os.environ["BILLHIVE_TEST_REDIS"]
    return config


@pytest.fixture
def app(make_app, queue_config):
    app = make_app(plugins=PLUGINS, modules=MODULES, **queue_config)
    yield app
    tasks.get_queue(app).huey.flush()  # a Redis queue is shared: leave nothing behind


@pytest.fixture
def customers(world, ctx):
    host = ctx.extensions["billhive"].host
    host.set_enabled("billing_charges", True)
    host.set_enabled("invoice_pdf", True)
    billing_charges.MODE = None
    _, plan = setup_catalog(world.provider, price="30.00")
    accounts = [world.customer_a, world.customer_b]
    for i in range(N - 2):
        accounts.append(world.add_account(world.provider, f"Customer {i:02d}"))
    for acc in accounts:
        subscribe(acc, plan, start="2026-01-01")
    return accounts


@pytest.fixture
def spawn(app, database_url, queue_config):
    """Start `billhive ...` in a subprocess of its own session; all are killed at the end."""
    procs = []
    config = {"DATABASE_URL": database_url, "DATA_DIR": app.config["DATA_DIR"],
              "SECRET_KEY": "test", **queue_config}  # fmt: skip

    def start(*args, mode="ok", render="ok"):
        env = {**os.environ, "BILLHIVE_TEST_CHARGES": mode, "BILLHIVE_TEST_RENDER": render,
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, json.dumps(config), *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)


def kill(proc, sig=signal.SIGKILL):
    """The worker and the processes it forked."""
    os.killpg(proc.pid, sig)
    return proc.communicate(timeout=30)


def submit():
    run = BillRun.create(as_of=AS_OF, status="queued")
    queue.submit(run)
    return run


def wait_for(condition, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_status(run_id):
    return BillRun.select(BillRun.status).where(BillRun.id == run_id).scalar()


def check_exactly_once(accounts, run_id):
    invoices = list(Invoice.select().order_by(Invoice.number))
    assert sorted(i.account_id for i in invoices) == sorted(a.id for a in accounts)
    assert [i.number for i in invoices] == [f"INV-{n:06d}" for n in range(1, len(accounts) + 1)]
    for inv in invoices:
        assert inv.status == "issued" and inv.total == 3500
        assert [line.amount for line in inv.lines] == [3000, 500]
    orphans = InvoiceLine.select().where(InvoiceLine.invoice.not_in(Invoice.select(Invoice.id)))
    assert orphans.count() == 0
    run = BillRun.get_by_id(run_id)
    assert run.status == "done", (run.status, run.failures)
    assert run.total == run.done == len(accounts)
    assert run.summary["totals"]["EUR"]["minor"] == 3500 * len(accounts)
    assert {i.status for i in BillRunItem.select().where(BillRunItem.bill_run == run_id)} == {
        "done"
    }


def test_a_worker_bills_every_account_once_and_renders_the_files(customers, spawn):
    run = submit()
    worker = spawn("worker", "--workers", "2")
    wait_for(lambda: run_status(run.id) == "done", what="the run to finish")
    expected = {(i.id, fmt) for i in Invoice.select() for fmt in ("RAW", "PDF")}
    wait_for(lambda: InvoiceFile.select().count() == len(expected), what="the files")
    out, err = kill(worker, signal.SIGTERM)
    assert "Billhive worker: 2 process worker(s)" in out, err
    check_exactly_once(customers, run.id)
    assert {(f.invoice_id, f.format) for f in InvoiceFile.select()} == expected


def test_a_worker_killed_mid_run_loses_nothing(customers, spawn):
    run = submit()
    worker = spawn("worker", "--workers", "1", mode="sleep:0.5")
    wait_for(lambda: Invoice.select().count() >= 2, what="two invoices")
    kill(worker)  # SIGKILL: mid-task, no chance to clean up
    written = Invoice.select().count()
    assert 2 <= written < N
    assert InvoiceLine.select().count() == 2 * written  # no half-written invoice
    assert run_status(run.id) == "running"
    counts = queue.progress(run.id)
    assert counts["done"] < N and counts["running"] <= 1

    time.sleep(2.2)  # the killed worker's heartbeat goes stale (QUEUE_STALE_SECONDS=2)
    proc = spawn("bill-run", "sweep")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Swept:" in out
    spawn("worker", "--workers", "2")
    wait_for(lambda: run_status(run.id) == "done", what="the run to finish")
    check_exactly_once(customers, run.id)


def test_two_workers_on_one_run_write_one_invoice_per_account_and_period(customers, spawn):
    run = submit()
    first = spawn("worker", "--workers", "1", mode="sleep:0.1")
    second = spawn("worker", "--workers", "1", mode="sleep:0.1")
    wait_for(lambda: run_status(run.id) == "done", what="the run to finish")
    kill(first, signal.SIGTERM)
    kill(second, signal.SIGTERM)
    check_exactly_once(customers, run.id)
    pairs = [(i.account_id, i.issuer_id, i.run_period) for i in Invoice.select()]
    assert len(pairs) == len(set(pairs)) == N


def test_bill_run_queue_shows_progress_and_the_summary(customers, spawn):
    spawn("worker", "--workers", "2")
    proc = spawn("bill-run", "--queue", "--date", "2026-02-01", "--json")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, (out, err)
    summary = json.loads(out)
    assert summary["invoices_created"] == N and summary["queued"] is True
    assert summary["totals"]["EUR"] == {"minor": N * 3500, "formatted": "350.00 EUR"}
    assert len(summary["invoices"]) == N
    assert f"{N} account(s) queued" in err
    check_exactly_once(customers, summary["bill_run_id"])


def test_a_worker_killed_while_rendering_loses_no_file(customers, spawn, ctx):
    ctx.extensions["billhive"].host.set_enabled("slow_format", True)  # SLOW: 0.3 s a file
    run = submit()
    worker = spawn("worker", "--workers", "1", render="sleep:0.3")
    slow = InvoiceFile.select().where(InvoiceFile.format == "SLOW")
    wait_for(lambda: slow.count() >= 2, what="rendering under way")
    kill(worker)  # SIGKILL while it renders: the render task it held is gone
    assert queue.progress(run.id)["done"] == N  # every account billed ...
    wanted = {(i.id, fmt) for i in Invoice.select() for fmt in ("RAW", "PDF", "SLOW")}
    stored = {(f.invoice_id, f.format) for f in InvoiceFile.select()}
    assert stored < wanted  # ... but files are missing: the run is not done
    assert run_status(run.id) == "running"

    spawn("worker", "--workers", "2")  # its sweeper queues again what was lost
    wait_for(lambda: run_status(run.id) == "done", what="the run to finish")
    assert {(f.invoice_id, f.format) for f in InvoiceFile.select()} == wanted
    for record in InvoiceFile.select():
        assert (Path(ctx.config["STORAGE_DIR"]) / record.path).stat().st_size == record.size
    check_exactly_once(customers, run.id)
    assert BillRun.get_by_id(run.id).summary["render_errors"] == []
