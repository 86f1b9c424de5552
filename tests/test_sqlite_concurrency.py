"""Concurrent writers, on SQLite (WAL, busy timeout) and on PostgreSQL alike.

* Several processes issue invoices of one issuer at once: numbers stay gap-free and unique.
* Threads of one web process issue invoices through the API at once: the same, and nobody gets
  an error.
* Several processes write everything else at once through the services (accounts, users,
  roles, catalog, subscriptions, usage, billing units, numbers, teams): every write succeeds;
  "database is locked" never reaches anybody, as a 500 or as a message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.billing.models import Invoice

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["invoice_pdf", "billing_units"]
PROCESSES = 4

RUNNER = f"""
import json, sys, traceback
from hostapp.app import create_app
app = create_app({{"DATABASE_URL": sys.argv[1], "DATA_DIR": sys.argv[2], "SECRET_KEY": "t",
                  "PLUGINS": {PLUGINS!r}, "PASSWORD_HASH_METHOD": "scrypt:1024:8:1"}})
job = json.loads(sys.argv[3])
db = app.extensions["billhive"].database
done, errors = 0, []
with app.app_context(), db.connection_context():
    app.extensions["billhive"].host.refresh()
    from tests import test_sqlite_concurrency as work
    for step in work.steps(job):
        try:
            step()
            done += 1
        except Exception as exc:
            errors.append(f"{{type(exc).__name__}}: {{exc}}")
print(json.dumps({{"done": done, "errors": errors}}))
"""


@pytest.fixture
def app(make_app):
    return make_app(plugins=PLUGINS)


@pytest.fixture
def run_all(app, database_url):
    """Start one process per job at once; return what each did."""

    def start(jobs):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    RUNNER,
                    database_url,
                    app.config["DATA_DIR"],
                    json.dumps(job),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for job in jobs
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results

    return start


def steps(job: dict):
    """The work of one process (run inside it): a list of callables, one write each."""
    from core import accounts, roles, users
    from core.billing import catalog
    from core.billing.invoicing import lifecycle as invoices
    from core.models import Account

    if job["kind"] == "issue":
        return [lambda i=i: invoices.issue(Invoice.get_by_id(i)) for i in job["drafts"]]
    if job["kind"] == "credit":
        return [lambda i=i: invoices.credit_note(Invoice.get_by_id(i)) for i in job["invoices"]]

    from plugins.billing_units.service import units

    n, provider = job["n"], Account.get_by_id(job["provider"])
    plan_id = job["plan"]
    out = []

    def customer(i):
        acc = accounts.create_account(
            None, {"name": f"P{n} customer {i}", "type": "customer", "parent_id": provider.id}
        )
        role = roles.create_role(
            None, acc, {"name": "Viewer", "description": "v", "privileges": ["users.view"]}
        )
        users.create_user(
            None,
            {"email": f"p{n}-{i}@x.test", "password": "long-enough-1", "account_id": acc.id,
             "role_ids": [role.id]},
        )  # fmt: skip
        sub = catalog.create_subscription(
            None, {"account_id": acc.id, "plan_id": plan_id, "start": "2026-01-01"}
        )
        good, bad = catalog.check_usage(
            [{"subscription_id": sub.id, "quantity": "2", "date": "2026-01-05",
              "external_id": f"p{n}-{i}"}]
        )  # fmt: skip
        assert not bad, bad
        catalog.insert_usage(good)
        number = units.create_number(None, acc, {"e164": f"+44207946{n}{i:03d}"})
        team = units.create_team(None, acc, {"name": "Team"})
        units.create_unit(None, acc, {"name": "Unit", "team_ids": [team.id],
                                      "number_ids": [number.id]})  # fmt: skip
        accounts.update_account(None, acc, {"name": f"P{n} customer {i} Ltd"})

    for i in range(job["count"]):
        out.append(lambda i=i: customer(i))
    return out


def _drafts(world, count, lines=1):
    from core.billing.invoicing import lifecycle as invoices

    return [
        invoices.create_draft(
            None,
            world.customer_a if i % 2 else world.customer_b,
            world.provider,
            [{"description": f"line {k}", "unit_price": "1.10"} for k in range(lines)],
        ).id
        for i in range(count)
    ]


def _numbers(prefix="INV-"):
    rows = Invoice.select(Invoice.number).where(Invoice.number.startswith(prefix))
    return sorted(r.number for r in rows if not r.number[len(prefix) :].startswith("CN"))


def test_processes_issuing_at_once_number_gap_free_and_unique(world, run_all):
    per_process = 8
    drafts = _drafts(world, PROCESSES * per_process)
    jobs = [{"kind": "issue", "drafts": drafts[i::PROCESSES]} for i in range(PROCESSES)]
    results = run_all(jobs)
    assert [r["errors"] for r in results] == [[]] * PROCESSES
    total = PROCESSES * per_process
    assert _numbers() == [f"INV-{n:06d}" for n in range(1, total + 1)]
    # credit notes of those invoices, at once too: their own gap-free sequence
    issued = [i.id for i in Invoice.select().where(Invoice.status == "issued")][: PROCESSES * 3]
    results = run_all([{"kind": "credit", "invoices": issued[i::PROCESSES]}
                       for i in range(PROCESSES)])  # fmt: skip
    assert [r["errors"] for r in results] == [[]] * PROCESSES
    notes = sorted(i.number for i in Invoice.select().where(Invoice.kind == "credit_note"))
    assert notes == [f"INV-CN{n:06d}" for n in range(1, len(issued) + 1)]


def test_api_threads_issuing_at_once_all_succeed_with_gap_free_numbers(world, ctx, api):
    from werkzeug.serving import make_server

    drafts = _drafts(world, 24)
    token = api(world.operator).headers["Authorization"]
    server = make_server("127.0.0.1", 0, ctx, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    import requests

    base = f"http://127.0.0.1:{server.server_port}"
    answers: list = []
    start = threading.Barrier(6)

    def issue(ids):
        session = requests.Session()
        start.wait()
        for invoice_id in ids:
            resp = session.post(f"{base}/api/v1/invoices/{invoice_id}/issue",
                                headers={"Authorization": token}, timeout=120)  # fmt: skip
            answers.append((resp.status_code, resp.text[:300]))

    try:
        workers = [threading.Thread(target=issue, args=(drafts[i::6],)) for i in range(6)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    finally:
        server.shutdown()
    assert [a for a in answers if a[0] != 200] == []
    assert not any("locked" in text for _, text in answers)
    assert _numbers() == [f"INV-{n:06d}" for n in range(1, 25)]


def test_processes_writing_everything_at_once_all_succeed(world, ctx, install_license, run_all):
    from core.models import Account, User

    install_license(["BH-UNITS"])
    ctx.extensions["billhive"].host.set_enabled("billing_units", True)
    _, plan = _catalog(world)
    count = 6
    jobs = [{"kind": "write", "n": n, "count": count, "provider": world.provider.id,
             "plan": plan.id} for n in range(PROCESSES)]  # fmt: skip
    results = run_all(jobs)
    errors = [e for r in results for e in r["errors"]]
    assert errors == [], errors
    assert sum(r["done"] for r in results) == PROCESSES * count
    made = Account.select().where(Account.name.endswith(" Ltd"))
    assert made.count() == PROCESSES * count
    assert User.select().where(User.email.endswith("@x.test")).count() == PROCESSES * count


def _catalog(world):
    from core.billing import catalog

    product = catalog.create_product(
        None, {"account_id": world.provider.id, "code": "GB", "name": "Storage", "unit": "GB",
               "kind": "usage"}
    )  # fmt: skip
    plan = catalog.create_plan(
        None, {"product_id": product.id, "name": "Std", "currency": "EUR",
               "recurring_price": "3.00", "usage_rate": "0.10"}
    )  # fmt: skip
    return product, plan
