"""Faults, on SQLite and PostgreSQL: whatever breaks, nothing is half-written, lost or billed
twice.

* A failure inside the transaction that writes an invoice (after its row, its lines and its
  number are written) rolls all of it back: no invoice, no line, no ledger entry, no audit
  entry, and its number is given back; the run goes on, a re-run bills what was left.
* A process killed with SIGKILL while it is inside that transaction leaves nothing behind
  either; a re-run bills every account once, numbers gap-free, totals as expected.
  (``tests/test_billing_runs.py`` kills a run between invoices, on both backends too.)
* A plugin whose ``invoice_finalized`` raises does not undo or fail an issued invoice, and
  does not stop a bill run (the invoice was committed before the plugins heard of it).
* A ConnectWise timeout in the middle of a sync loses nothing: the items after it are pushed,
  the timed-out one is completed by the next sync, and ConnectWise holds each addition once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from core.billing.models import Invoice, InvoiceLine, InvoiceSequence
from core.billing.runs import engine
from core.models import AuditEntry
from tests.billing_support import setup_catalog, subscribe

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["invoice_pdf"]
AS_OF = date(2026, 2, 1)
N = 6


# -- a plugin made at run time: its invoice_finalized raises --------------------------------

FINALIZED: list = []


def _raising_plugin() -> str:
    from core import hookimpl
    from core.registry import PluginMeta

    name = "tests_fault_finalized"
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.PLUGIN = PluginMeta(name="finalized_raising", title="Raising", version="1.0")

        @hookimpl
        def invoice_finalized(invoice):
            FINALIZED.append(invoice.id)
            raise RuntimeError(f"the fax machine is on fire ({invoice.number})")

        module.invoice_finalized = invoice_finalized
        sys.modules[name] = module
    return name


@pytest.fixture
def app(make_app):
    return make_app(plugins=PLUGINS, modules={"finalized_raising": _raising_plugin()})


@pytest.fixture
def customers(world):
    _, plan = setup_catalog(world.provider, price="30.00")
    accounts = [world.customer_a, world.customer_b]
    for i in range(N - 2):
        accounts.append(world.add_account(world.provider, f"Customer {i:02d}"))
    for acc in accounts:
        subscribe(acc, plan, start="2026-01-01")
    return accounts


def ledger_entries(invoice_ids=None) -> int:
    try:
        from core.billing.models import LedgerEntry
    except ImportError:  # pragma: no cover - a core without the ledger
        return 0
    query = LedgerEntry.select()
    if invoice_ids is not None:
        query = query.where(LedgerEntry.invoice.in_(invoice_ids))
    return query.count()


def billed_once(accounts):
    """One issued invoice per account, numbers INV-000001.. gap-free, 30.00 each, no orphan
    line, one ledger entry per invoice."""
    invoices = list(Invoice.select().order_by(Invoice.number))
    assert sorted(i.account_id for i in invoices) == sorted(a.id for a in accounts)
    assert [i.number for i in invoices] == [f"INV-{n:06d}" for n in range(1, len(accounts) + 1)]
    for inv in invoices:
        assert inv.status == "issued" and inv.total == 3000
        assert [line.amount for line in inv.lines] == [3000]
    orphans = InvoiceLine.select().where(InvoiceLine.invoice.not_in(Invoice.select(Invoice.id)))
    assert orphans.count() == 0
    assert InvoiceLine.select().count() == len(accounts)
    seq = InvoiceSequence.get(InvoiceSequence.kind == "invoice")
    assert seq.next_number == len(accounts) + 1
    if ledger_entries():
        assert ledger_entries([i.id for i in invoices]) == len(invoices)


# -- a failure inside the invoice's transaction ----------------------------------------------


def test_a_failure_inside_the_invoice_transaction_rolls_all_of_it_back(customers, monkeypatch):
    from core import audit

    victim = customers[2]
    real = audit.record

    def failing(actor, action, *args, **kwargs):
        if action == "invoice.issue" and kwargs.get("account") == victim.id:
            raise RuntimeError("disk full while auditing")
        return real(actor, action, *args, **kwargs)

    monkeypatch.setattr(audit, "record", failing)
    summary = engine.run(AS_OF)
    assert [f["account_id"] for f in summary["failures"]] == [victim.id]
    assert "disk full" in summary["failures"][0]["error"]
    assert summary["invoices_created"] == N - 1
    assert Invoice.select().where(Invoice.account == victim.id).count() == 0
    numbers = sorted(i.number for i in Invoice.select())
    assert numbers == [f"INV-{n:06d}" for n in range(1, N)]  # the victim's number given back
    assert InvoiceLine.select().count() == N - 1
    assert (
        not AuditEntry.select()
        .where((AuditEntry.action == "invoice.issue") & (AuditEntry.account == victim.id))
        .exists()
    )

    monkeypatch.setattr(audit, "record", real)
    summary = engine.run(AS_OF)
    assert summary["invoices_created"] == 1 and not summary["failures"]
    billed_once(customers)


# -- SIGKILL inside the invoice's transaction ------------------------------------------------

KILLED_RUN = f"""
import sys, time
from pathlib import Path
from datetime import date
from hostapp.app import create_app
app = create_app({{"DATABASE_URL": sys.argv[1], "DATA_DIR": sys.argv[2], "SECRET_KEY": "t",
                  "PLUGINS": {PLUGINS!r}}})
stop_at, flag = int(sys.argv[3]), Path(sys.argv[4])
from core import audit
real = audit.record
seen = []
def record(actor, action, *args, **kwargs):
    entry = real(actor, action, *args, **kwargs)
    if action == "invoice.issue":
        seen.append(1)
        if len(seen) == stop_at:  # inside the transaction of this invoice: wait to be killed
            flag.write_text("inside")
            time.sleep(120)
    return entry
audit.record = record
from core.billing.runs import engine
db = app.extensions["billhive"].database
with app.app_context(), db.connection_context():
    app.extensions["billhive"].host.refresh()
    engine.run(date(2026, 2, 1))
"""


def test_sigkill_inside_an_invoice_transaction_then_rerun(customers, ctx, database_url, tmp_path):
    flag = tmp_path / "inside.flag"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, database_url, ctx.config["DATA_DIR"], "3", str(flag)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), proc.communicate(timeout=10)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # the third invoice's row, lines and number were written but never committed
    assert Invoice.select().count() == 2
    assert InvoiceLine.select().count() == 2
    assert InvoiceSequence.get(InvoiceSequence.kind == "invoice").next_number == 3
    assert AuditEntry.select().where(AuditEntry.action == "invoice.issue").count() == 2
    if ledger_entries():
        assert ledger_entries() == 2

    summary = engine.run(AS_OF)
    assert summary["invoices_created"] == N - 2 and not summary["failures"]
    assert {s["reason"] for s in summary["invoices_skipped"]} <= {"already invoiced"}
    billed_once(customers)
    assert summary["totals"]["EUR"]["minor"] == (N - 2) * 3000


# -- a plugin that raises after the commit ---------------------------------------------------


@pytest.fixture
def raising(ctx):
    ctx.extensions["billhive"].host.set_enabled("finalized_raising", True)
    FINALIZED.clear()
    return FINALIZED


def test_a_raising_invoice_finalized_does_not_fail_an_issued_invoice(world, api, raising):
    from core.billing.invoicing import lifecycle as invoices

    draft = invoices.create_draft(
        None, world.customer_a, world.provider, [{"description": "x", "unit_price": "5"}]
    )
    resp = api(world.operator).post(f"/api/v1/invoices/{draft.id}/issue")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["number"] == "INV-000001"
    assert raising == [draft.id]  # the plugin was told, and its failure was logged
    assert Invoice.get_by_id(draft.id).status == "issued"
    assert ledger_entries([draft.id]) in (0, 1)


def test_a_raising_invoice_finalized_does_not_stop_a_bill_run(customers, raising):
    summary = engine.run(AS_OF)
    assert summary["invoices_created"] == N and not summary["failures"]
    assert len(raising) == N
    billed_once(customers)


# -- a ConnectWise timeout in the middle of a sync -------------------------------------------


@pytest.fixture
def psa_setup(make_app, license_keys):
    """psa_mapping licensed and enabled, three services mapped, Customer A linked."""
    from tests.conftest import World, issue
    from tests.fakes.connectwise import FakeConnectWise

    # a POST whose answer is lost is looked for, by its key, for 0.3 s (30 s in production)
    app = make_app(plugins=["psa_mapping"], PSA_CONFIRM_SECONDS=0.3)
    db = app.extensions["billhive"].database
    with FakeConnectWise() as fake, app.app_context(), db.connection_context():
        from core import license_store
        from core.billing import catalog
        from plugins.psa_mapping.service import integration as service

        host = app.extensions["billhive"].host
        host.refresh()
        license_store.install(issue(license_keys, ["BH-PSA"]), host.license_key_paths)
        host.set_enabled("psa_mapping", True)
        world = World()
        company = fake.add_company("Customer A Holdings", "CustA")
        agreement = fake.add_agreement(company["id"], "Managed Services")
        service.save_connection(
            None,
            world.provider,
            {"site_url": fake.url, "company_id": fake.company_id, "public_key": fake.public_key,
             "private_key": fake.private_key, "client_id": fake.client_id, "timeout": "0.5",
             "max_retries": "0", "backoff": "0.01"},
        )  # fmt: skip
        for code in ("M365", "BACKUP", "AV"):
            fake.add_catalog_item(f"{code}-CW", code, Decimal("1.00"))
            catalog.create_product(
                None, {"account_id": world.provider.id, "code": code, "name": code}
            )
            service.create_mapping(
                None,
                world.provider,
                {"product_code": code, "mapping_type": "per_unit", "psa_product": f"{code}-CW",
                 "unique_id": "*", "level": 1},
            )  # fmt: skip
        service.confirm_link(
            None,
            world.provider,
            {"customer_id": world.customer_a.id, "psa_company_id": company["id"],
             "agreement_id": agreement["id"]},
        )  # fmt: skip
        yield types.SimpleNamespace(app=app, fake=fake, world=world, service=service)


def test_a_connectwise_timeout_mid_sync_loses_nothing(psa_setup):
    from core.billing.invoicing import lifecycle as invoices
    from core.connectors.models import SyncItem, SyncRun

    fake, world, service = psa_setup.fake, psa_setup.world, psa_setup.service
    # the second addition: ConnectWise refuses the POST (503, nothing stored) and answers only
    # after the client's timeout: the client cannot know that nothing was stored
    fake.fail_next("/additions", 503, method="POST", skip=1)
    fake.delay_next("/additions", 1.5, method="POST", skip=1)
    draft = invoices.create_draft(
        None,
        world.customer_a,
        world.provider,
        [{"description": c, "quantity": q, "unit_price": "1", "product_code": c}
         for c, q in (("M365", "3"), ("BACKUP", "8"), ("AV", "2"))],
    )  # fmt: skip
    invoice = invoices.issue(draft)
    assert invoice.status == "issued"  # ConnectWise trouble never breaks issuing
    items = {i.product_code: i for i in SyncItem.select()}
    assert items["M365"].outcome == "created"
    # never posted blindly again: uncertain until a sync finds it by key or finds it absent
    assert items["BACKUP"].outcome == "uncertain"
    assert items["AV"].outcome == "created"  # ... and AV, after it, was still pushed

    for _ in range(3):  # the next syncs complete it; more syncs change nothing
        run = service.sync(world.provider, "test")
        assert run.status == "ok", run.message
    assert {i.product_code: i.outcome for i in SyncItem.select()}["BACKUP"] in (
        "created",
        "unchanged",
    )
    additions = sorted((a["product"]["identifier"], a["quantity"]) for a in fake.additions.values())
    assert additions == [("AV-CW", Decimal(2)), ("BACKUP-CW", Decimal(8)), ("M365-CW", Decimal(3))]
    assert SyncRun.select().count() == 4
