"""Bill runs from the command line: JSON contract, exit status, two processes at once, a run
killed with SIGKILL and re-run, a raising plugin, usage import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from core.billing.models import Invoice, InvoiceLine, UsageRecord
from core.billing.runs import engine
from tests.billing_support import setup_catalog, subscribe
from tests.plugins import billing_charges

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["invoice_pdf", "reseller_accounts"]
MODULES = {"billing_charges": "tests.plugins.billing_charges"}

RUNNER = f"""
import sys
from hostapp import cli
from hostapp.app import create_app
cli._app = create_app({{"DATABASE_URL": sys.argv[1], "DATA_DIR": sys.argv[2],
                       "SECRET_KEY": "test", "PLUGINS": {PLUGINS!r}, "PLUGIN_MODULES": {MODULES!r}}})
sys.argv = ["billhive"] + sys.argv[3:]
cli.main()
"""


@pytest.fixture
def app(make_app):
    return make_app(plugins=PLUGINS, modules=MODULES)


@pytest.fixture
def cli(app, database_url):
    data_dir = app.config["DATA_DIR"]

    def start(*args, mode="ok"):
        env = {**os.environ, "BILLHIVE_TEST_CHARGES": mode, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(
            [sys.executable, "-c", RUNNER, database_url, data_dir, *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    return start


@pytest.fixture
def customers(world, ctx):
    ctx.extensions["billhive"].host.set_enabled("billing_charges", True)
    billing_charges.MODE = None
    _, plan = setup_catalog(world.provider, price="30.00")
    accounts = []
    for i in range(8):
        acc = world.add_account(world.provider, f"Customer {i:02d}")
        subscribe(acc, plan, start="2026-01-01")
        accounts.append(acc)
    return accounts


def check_exactly_once(accounts):
    """One issued invoice per account for January, gap-free numbers, every line present."""
    invoices = list(Invoice.select().order_by(Invoice.number))
    assert sorted(i.account_id for i in invoices) == sorted(a.id for a in accounts)
    assert [i.number for i in invoices] == [f"INV-{n:06d}" for n in range(1, len(accounts) + 1)]
    for inv in invoices:
        assert inv.status == "issued"
        amounts = [line.amount for line in inv.lines]
        assert amounts == [3000, 500] and inv.total == 3500
    orphans = InvoiceLine.select().where(InvoiceLine.invoice.not_in(Invoice.select(Invoice.id)))
    assert orphans.count() == 0


def test_cli_json_summary_and_exactly_once(customers, cli):
    proc = cli("bill-run", "--date", "2026-02-01", "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["invoices_created"] == 8
    assert summary["invoices_skipped"] == [] and summary["failures"] == []
    assert summary["totals"]["EUR"] == {"minor": 8 * 3500, "formatted": "280.00 EUR"}
    check_exactly_once(customers)


def test_cli_human_summary_and_invoice_list(customers, cli):
    proc = cli("bill-run", "--date", "2026-02-01")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "8 invoice(s) created" in out and "Total EUR: 280.00 EUR" in out
    assert "Bill run 2026-02-01" in err  # the progress bar goes to stderr
    proc = cli("invoices", "list", "--json")
    out, err = proc.communicate(timeout=60)
    rows = json.loads(out)
    assert len(rows) == 8 and {r["total"] for r in rows} == {"35.00 EUR"}


def test_cli_refuses_a_bad_date(customers, cli):
    proc = cli("bill-run", "--date", "2026-13-01")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--date" in err
    assert Invoice.select().count() == 0


def test_two_bill_runs_at_once_bill_each_account_once(customers, cli):
    first = cli("bill-run", "--date", "2026-02-01", "--json", mode="sleep:0.05")
    second = cli("bill-run", "--date", "2026-02-01", "--json", mode="sleep:0.05")
    results = [p.communicate(timeout=180) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, results
    summaries = [json.loads(out) for out, _ in results]
    assert sum(s["invoices_created"] for s in summaries) == 8
    skipped = [s for summary in summaries for s in summary["invoices_skipped"]]
    assert all(s["reason"] == "already invoiced" for s in skipped)
    check_exactly_once(customers)


def test_sigkill_midway_then_rerun_completes_without_duplicates(customers, cli):
    proc = cli("bill-run", "--date", "2026-02-01", "--json", mode="sleep:0.4")
    deadline = time.monotonic() + 60
    while Invoice.select().count() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    written = Invoice.select().count()
    assert 2 <= written < 8  # killed midway
    assert InvoiceLine.select().count() == 2 * written  # no half-written invoice

    rerun = cli("bill-run", "--date", "2026-02-01", "--json")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert json.loads(out)["invoices_created"] == 8 - written
    check_exactly_once(customers)


def test_a_raising_charges_hook_writes_nothing_for_that_invoice(customers, cli):
    proc = cli("bill-run", "--date", "2026-02-01", "--json", mode="raise")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    summary = json.loads(out)
    assert summary["invoices_created"] == 0 and len(summary["failures"]) == 8
    assert "support desk unreachable" in summary["failures"][0]["error"]
    assert Invoice.select().count() == 0 and InvoiceLine.select().count() == 0


def test_raising_plugin_in_process_then_fixed_run_bills_everything(customers, ctx):
    billing_charges.MODE = "raise"
    try:
        summary = engine.run(date(2026, 2, 1))
    finally:
        billing_charges.MODE = None
    assert summary["invoices_created"] == 0 and len(summary["failures"]) == 8
    assert Invoice.select().count() == 0
    summary = engine.run(date(2026, 2, 1))
    assert summary["invoices_created"] == 8 and not summary["failures"]
    check_exactly_once(customers)


def test_usage_import_validates_every_row_first(customers, cli, tmp_path):
    sub_id = Invoice._meta.database.execute_sql("select min(id) from subscription").fetchone()[0]
    bad = tmp_path / "usage.csv"
    bad.write_text(
        "external_id,subscription_id,quantity,date\n"
        f"e1,{sub_id},10,2026-01-05\n"
        f"e2,99999,1,2026-01-05\n"
        f"e3,{sub_id},-4,2026-01-05\n"
        f"e4,{sub_id},2,05/01/2026\n"
    )
    proc = cli("usage", "import", str(bad))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert ":3: subscription_id: unknown subscription '99999'" in err
    assert ":4: quantity" in err and ":5: date" in err
    assert UsageRecord.select().count() == 0  # nothing imported
    for _ in range(2):  # idempotent by external id
        proc = cli("usage", "import", "--skip-bad", str(bad))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert "already present" in out
    assert UsageRecord.select().count() == 1
