"""Bill runs that die (issue 15, reproduction 4), on SQLite and PostgreSQL.

* ``billhive bill-run`` (in process) killed with SIGKILL mid-run: the run stops beating and
  shows "interrupted" in the API, the panel and ``billhive bill-run list``; resumed through
  the API, the panel or ``billhive bill-run resume``, it bills the accounts it had not billed,
  each account once, and ends "done" with the whole run's figures.
* A run started from the API in ``inline`` mode (a thread of the web process) dies with the
  web process: the same.
* Resume is refused (409) for a run that is alive, finished or queued; 404 outside the
  caller's subtree.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core.billing.models import BillRun, Invoice, InvoiceFile, InvoiceLine
from core.billing.runs import records as runs
from core.db import utcnow
from tests.billing_support import setup_catalog, subscribe
from tests.conftest import PASSWORD
from tests.plugins import billing_charges

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["invoice_pdf", "reseller_accounts"]
MODULES = {"billing_charges": "tests.plugins.billing_charges"}
N = 8
ACCOUNTS = N + 2  # the world's Customer A and B too, with nothing to bill
STALE = 1.5  # QUEUE_STALE_SECONDS: a run without a heartbeat this long is interrupted

RUNNER = f"""
import json, sys
from hostapp import cli
from hostapp.app import create_app
config = json.loads(sys.argv[1])
cli._app = create_app({{**config, "PLUGINS": {PLUGINS!r}, "PLUGIN_MODULES": {MODULES!r}}})
sys.argv = ["billhive"] + sys.argv[2:]
cli.main()
"""

# the web process: a bill run started through the API runs in one of its threads
WEB = f"""
import json, sys, time
from hostapp.app import create_app
config = json.loads(sys.argv[1])
app = create_app({{**config, "PLUGINS": {PLUGINS!r}, "PLUGIN_MODULES": {MODULES!r}}})
client = app.test_client()
token = client.post("/api/v1/tokens", json={{"email": sys.argv[2], "password": sys.argv[3]}})
resp = client.post("/api/v1/bill-runs", json={{"date": "2026-02-01"}},
                   headers={{"Authorization": "Bearer " + token.get_json()["token"]}})
print(json.dumps(resp.get_json()), flush=True)
time.sleep(600)  # serving on: the run goes on in its thread until the process is killed
"""


@pytest.fixture
def app(make_app):
    return make_app(plugins=PLUGINS, modules=MODULES, QUEUE="inline", QUEUE_STALE_SECONDS=STALE)


@pytest.fixture
def customers(world, ctx):
    ctx.extensions["billhive"].host.set_enabled("billing_charges", True)
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)
    billing_charges.MODE = None
    _, plan = setup_catalog(world.provider, price="30.00")
    accounts = []
    for i in range(N):
        acc = world.add_account(world.provider, f"Customer {i:02d}")
        subscribe(acc, plan, start="2026-01-01")
        accounts.append(acc)
    return accounts


@pytest.fixture
def spawn(app, database_url):
    """Start a Python process on this instance (its own session); all killed at the end."""
    procs = []
    config = {"DATABASE_URL": database_url, "DATA_DIR": app.config["DATA_DIR"],
              "SECRET_KEY": "test", "QUEUE": "inline", "QUEUE_STALE_SECONDS": STALE}  # fmt: skip

    def start(script, *args, mode="ok"):
        env = {**os.environ, "BILLHIVE_TEST_CHARGES": mode, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(config), *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)


def wait_for(condition, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill_midway(proc):
    """SIGKILL ``proc`` once it has written two invoices (it bills one every 0.4 s)."""
    wait_for(lambda: Invoice.select().count() >= 2 or proc.poll() is not None, what="invoices")
    assert proc.poll() is None, proc.communicate(timeout=10)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    written = Invoice.select().count()
    assert 2 <= written < N  # killed midway
    assert InvoiceLine.select().count() == 2 * written  # no half-written invoice
    run = BillRun.get()
    assert run.status == "running"  # what the killed process left in the row
    return run, written


def billed_once(accounts, run_id):
    """Every account billed once, gap-free numbers, every file stored; the run done with the
    whole run's figures."""
    invoices = list(Invoice.select().order_by(Invoice.number))
    assert sorted(i.account_id for i in invoices) == sorted(a.id for a in accounts)
    assert [i.number for i in invoices] == [f"INV-{n:06d}" for n in range(1, N + 1)]
    assert {i.bill_run for i in invoices} == {run_id}
    for inv in invoices:
        assert inv.status == "issued" and inv.total == 3500
        assert [line.amount for line in inv.lines] == [3000, 500]
    files = {(f.invoice_id, f.format) for f in InvoiceFile.select()}
    assert files == {(i.id, code) for i in invoices for code in ("PDF", "RAW")}
    run = BillRun.get_by_id(run_id)
    assert run.status == "done", (run.status, run.failures)
    assert run.total == run.done == ACCOUNTS and run.created == N and run.skipped == 0
    assert run.summary["totals"]["EUR"] == {"minor": N * 3500, "formatted": "280.00 EUR"}
    assert run.summary["invoices_created"] == N and run.summary["invoices_skipped"] == []
    return run


def test_a_killed_cli_run_is_interrupted_and_resumed_through_the_api(customers, spawn, api,
                                                                     world):  # fmt: skip
    proc = spawn(RUNNER, "bill-run", "--date", "2026-02-01", "--in-process", "--json",
                 mode="sleep:0.4")  # fmt: skip
    run, written = kill_midway(proc)
    client = api(world.operator)

    def status():
        return client.get(f"/api/v1/bill-runs/{run.id}").get_json()["status"]

    assert status() == "running"  # alive a moment ago: not yet given up
    wait_for(lambda: status() == "interrupted", what="the run to show interrupted")
    listed = client.get("/api/v1/bill-runs").get_json()
    assert [(r["id"], r["status"]) for r in listed] == [(run.id, "interrupted")]

    resp = client.post(f"/api/v1/bill-runs/{run.id}/resume")
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["status"] == "running"
    again = client.post(f"/api/v1/bill-runs/{run.id}/resume")  # one resumer only
    assert again.status_code == 409 and again.get_json()["code"] == "not_interrupted"
    wait_for(lambda: status() == "done", what="the resumed run to finish")
    billed_once(customers, run.id)
    body = client.get(f"/api/v1/bill-runs/{run.id}").get_json()
    assert (body["created"], body["done"], body["total"]) == (N, ACCOUNTS, ACCOUNTS)
    after = client.post(f"/api/v1/bill-runs/{run.id}/resume")
    assert after.status_code == 409 and "it is done" in after.get_json()["message"]


def test_a_killed_cli_run_is_listed_interrupted_and_resumed_by_the_cli(customers, spawn):
    proc = spawn(RUNNER, "bill-run", "--date", "2026-02-01", "--in-process", mode="sleep:0.4")
    run, written = kill_midway(proc)

    wait_for(lambda: runs.is_interrupted(BillRun.get_by_id(run.id)), what="the beat to stop")
    out, err = spawn(RUNNER, "bill-run", "list", "--json").communicate(timeout=60)
    assert [(r["id"], r["status"]) for r in json.loads(out)] == [(run.id, "interrupted")]
    out, err = spawn(RUNNER, "bill-run", "list").communicate(timeout=60)
    assert f"billhive bill-run resume {run.id}" in out
    again = spawn(RUNNER, "bill-run", "--date", "2026-01-15")  # a later run says so too
    out, err = again.communicate(timeout=60)
    assert f"Bill run {run.id} (2026-02-01) was interrupted" in err

    resume = spawn(RUNNER, "bill-run", "resume", str(run.id))
    out, err = resume.communicate(timeout=180)
    assert resume.returncode == 0, (out, err)
    assert f"Resuming bill run {run.id}" in err and "(resumed)" in err  # with a progress bar
    assert f"{N} invoice(s) created" in out and "Total EUR: 280.00 EUR" in out
    billed_once(customers, run.id)

    refused = spawn(RUNNER, "bill-run", "resume", str(run.id))
    out, err = refused.communicate(timeout=60)
    assert refused.returncode == 1 and "it is done" in err
    unknown = spawn(RUNNER, "bill-run", "resume", "999")
    out, err = unknown.communicate(timeout=60)
    assert unknown.returncode == 1 and "bill run 999 not found" in err


def test_a_run_dies_with_the_web_process_and_is_resumed_in_the_panel(customers, spawn, panel,
                                                                     world):  # fmt: skip
    web = spawn(WEB, world.operator.email, PASSWORD, mode="sleep:0.4")
    started = json.loads(web.stdout.readline())
    assert started["status"] in ("queued", "running") and not started.get("queued")
    run, written = kill_midway(web)
    assert run.id == started["id"]

    client = panel(world.operator)
    wait_for(lambda: client.get(f"/billing/runs/{run.id}.json").get_json()["status"]
             == "interrupted", what="interrupted in the panel")  # fmt: skip
    page = client.get("/billing/runs").get_data(as_text=True)
    assert re.search(rf'data-status="{run.id}">interrupted<', page)
    assert f'data-resume="{run.id}"' in page  # the Resume button
    resp = client.post(f"/billing/runs/{run.id}/resume")
    assert resp.status_code == 302 and resp.location.endswith(f"/billing/runs?watch={run.id}")
    wait_for(lambda: client.get(f"/billing/runs/{run.id}.json").get_json()["status"] == "done",
             what="the resumed run to finish")  # fmt: skip
    billed_once(customers, run.id)
    page = client.get("/billing/runs").get_data(as_text=True)
    assert f'data-resume="{run.id}"' not in page


def test_resume_is_refused_unless_the_run_is_interrupted(customers, api, world, ctx):
    from core.billing.runs import engine

    client = api(world.operator)
    alive = BillRun.create(as_of=date(2026, 2, 1), status="running", scope=world.provider.id,
                           started_at=utcnow(), heartbeat_at=utcnow())  # fmt: skip
    resp = client.post(f"/api/v1/bill-runs/{alive.id}/resume")
    assert resp.status_code == 409 and "still running" in resp.get_json()["message"]
    assert client.get(f"/api/v1/bill-runs/{alive.id}").get_json()["status"] == "running"

    done = BillRun.create(as_of=date(2026, 2, 1), status="queued", scope=world.provider.id)
    engine.run(date(2026, 2, 1), bill_run=done)
    resp = client.post(f"/api/v1/bill-runs/{done.id}/resume")
    assert resp.status_code == 409 and "it is done" in resp.get_json()["message"]
    assert client.post("/api/v1/bill-runs/999/resume").status_code == 404
    # a customer's admin: another subtree's run is not found, whatever privileges
    customer_admin = api(world.user_a)
    assert customer_admin.post(f"/api/v1/bill-runs/{alive.id}/resume").status_code == 404
    assert Invoice.select().count() == N  # nothing billed twice by any of these


def test_resume_renders_the_files_the_dead_process_did_not(customers, api, world, ctx):
    from core.billing.runs import engine

    run = BillRun.create(as_of=date(2026, 2, 1), status="queued", scope=world.provider.id)
    engine.run(date(2026, 2, 1), bill_run=run)
    victim = Invoice.select().order_by(Invoice.id).first()
    record = InvoiceFile.get(invoice=victim.id, format="PDF")
    (Path(ctx.config["STORAGE_DIR"]) / record.path).unlink()
    record.delete_instance()
    # the state a process leaves when it dies after an invoice's commit, before its files
    BillRun.update(status="running", finished_at=None,
                   heartbeat_at=utcnow() - timedelta(seconds=STALE + 1)).where(
        BillRun.id == run.id).execute()  # fmt: skip
    client = api(world.operator)
    assert client.get(f"/api/v1/bill-runs/{run.id}").get_json()["status"] == "interrupted"
    assert client.post(f"/api/v1/bill-runs/{run.id}/resume").status_code == 202
    wait_for(lambda: client.get(f"/api/v1/bill-runs/{run.id}").get_json()["status"] == "done",
             what="the resumed run to finish")  # fmt: skip
    billed_once(customers, run.id)
    record = InvoiceFile.get(invoice=victim.id, format="PDF")
    assert (Path(ctx.config["STORAGE_DIR"]) / record.path).read_bytes().startswith(b"%PDF")


@pytest.mark.browser
def test_an_operator_resumes_an_interrupted_run_in_the_browser(customers, spawn, live_server,
                                                               page, world):  # fmt: skip
    proc = spawn(RUNNER, "bill-run", "--date", "2026-02-01", "--in-process", mode="sleep:0.4")
    run, written = kill_midway(proc)
    wait_for(lambda: runs.is_interrupted(BillRun.get_by_id(run.id)), what="the beat to stop")

    page.goto(f"{live_server}/login")
    page.fill("#email", world.operator.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))
    page.goto(f"{live_server}/billing/runs")
    assert page.locator(f"td[data-status='{run.id}']").inner_text() == "interrupted"
    page.click(f"a:text-is('{run.id}')")  # watch it: the box says so and offers Resume
    page.locator("#run-interrupted").wait_for(state="visible")
    assert page.locator("#run-status").inner_text() == "interrupted"
    with page.expect_navigation():
        page.click("#resume-watched")
    assert f"Bill run {run.id} resumed" in page.locator(".flash").inner_text()
    # polled by the locator (a wait_for_function string would be eval'd: the CSP refuses it)
    expect(page.locator("#run-status")).to_have_text("done", timeout=120_000)
    assert page.locator("#run-interrupted").is_hidden()
    assert page.locator("#run-created").inner_text() == str(N)
    billed_once(customers, run.id)


def test_a_database_made_before_heartbeats_gets_the_column_at_start(ctx, make_app):
    from playhouse.migrate import SchemaMigrator, migrate

    from core.db import database
    from core.migrations import SchemaMigration

    db = database.obj
    table = BillRun._meta.table_name
    old = BillRun.create(as_of=date(2026, 2, 1), status="done")
    # the table as an older release left it: no heartbeat_at, core migration 2 not applied
    migrate(SchemaMigrator.from_database(db).drop_column(table, "heartbeat_at"))
    SchemaMigration.delete().where(SchemaMigration.name == "bill_run_heartbeat").execute()
    assert "heartbeat_at" not in {c.name for c in db.get_columns(table)}

    make_app(plugins=PLUGINS, modules=MODULES)  # the upgraded release starts
    db = database.obj
    assert "heartbeat_at" in {c.name for c in db.get_columns(table)}
    assert SchemaMigration.select().where(SchemaMigration.name == "bill_run_heartbeat").count()
    assert BillRun.get_by_id(old.id).status == "done"
    assert BillRun.update(heartbeat_at=utcnow()).where(BillRun.id == old.id).execute() == 1
    # a new database got the column from the model; the step found nothing to do
    runs.add_heartbeat_column(SchemaMigrator.from_database(db), db)
