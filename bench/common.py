"""What the benchmarks share: throwaway instances, bulk-built customers, worker and server
subprocesses, the machine description and the result table.

``python -m bench.common CONFIG_JSON ARGS...`` runs ``billhive ARGS`` against the app built
from CONFIG_JSON (how the benchmarks start workers and servers for an instance whose plugin
list the environment cannot express).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 2, 1)  # bills January 2026
FAST_HASH = "scrypt:1024:8:1"  # bench users log in often; production keeps werkzeug's default


# -- results ---------------------------------------------------------------------------------


@dataclass
class Figure:
    section: str
    what: str
    value: float
    unit: str
    baseline: str = ""
    base_value: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.base_value in (None, 0):
            return None
        return self.value / self.base_value


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)

    def add(self, section, what, value, unit, baseline="", base_value=None, note="") -> Figure:
        fig = Figure(section, what, value, unit, baseline, base_value, note)
        self.figures.append(fig)
        ratio = f"  ratio {fig.ratio:.3f}" if fig.ratio is not None else ""
        base = f"  (baseline {baseline}: {fmt(base_value)} {unit})" if baseline else ""
        print(f"  {section:<10} {what:<46} {fmt(value):>10} {unit:<10}{ratio}{base}"
              f"{'  ' + note if note else ''}", flush=True)  # fmt: skip
        return fig

    def markdown(self) -> str:
        rows = [
            "| section | figure | value | baseline (same run) | ratio |",
            "|---|---|---:|---|---:|",
        ]
        for f in self.figures:
            base = f"{f.baseline}: {fmt(f.base_value)} {f.unit}" if f.baseline else ""
            ratio = f"{f.ratio:.3f}" if f.ratio is not None else ""
            note = f" ({f.note})" if f.note else ""
            rows.append(
                f"| {f.section} | {f.what}{note} | {fmt(f.value)} {f.unit} | {base} | {ratio} |"
            )
        return "\n".join(rows)


def fmt(value) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}; "
            f"load average at start {load}")  # fmt: skip


# -- instances -------------------------------------------------------------------------------


def config_for(folder: Path, database_url: str | None = None, **extra) -> dict:
    """An instance's config; its database is the SQLite file in ``folder`` unless the folder
    names a PostgreSQL database (``database_url``, see :func:`use_postgres`)."""
    marker = folder / "database_url"
    if database_url is None and marker.exists():
        database_url = marker.read_text().strip()
    return {
        "DATA_DIR": str(folder),
        "DATABASE_URL": database_url or f"sqlite:///{folder / 'billhive.db'}",
        "SECRET_KEY": "bench",
        "PLUGINS": [],
        "PLUGIN_MODULES": {},
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "QUEUE": "sqlite",
        "QUEUE_PATH": str(folder / "queue.db"),
        "QUEUE_NAME": f"bench-{os.getpid()}-{folder.name}",
        "QUEUE_SWEEP_SECONDS": 30,
        **extra,
    }


def make_app(config: dict):
    from hostapp.app import create_app

    return create_app(dict(config))


class in_app:
    """``with in_app(app):`` an app context and an open connection."""

    def __init__(self, app):
        self.app = app
        self.ctx = app.app_context()

    def __enter__(self):
        self.ctx.push()
        self.app.extensions["billhive"].database.connect(reuse_if_open=True)
        self.app.extensions["billhive"].host.refresh()
        return self.app

    def __exit__(self, *exc):
        db = self.app.extensions["billhive"].database
        if not db.is_closed():
            db.close()
        self.ctx.pop()


def build_customers(customers: int, lines: int, *, users: int = 0) -> dict:
    """A provider selling ``lines`` plans and ``customers`` customers each subscribed to every
    plan (one invoice line each); the first ``users`` customers are made through the
    accounts service (default roles) with a Full Access user each. Bulk inserts, one
    transaction: the benchmarks time the runs, not this."""
    from core import accounts
    from core import users as users_service
    from core.billing.models import PricePlan, Product, Subscription
    from core.bootstrap import initialise
    from core.db import database
    from core.models import Account, Role

    provider, _, _ = initialise("Bench Provider", "bench@example.com", "bench-pass-1")
    logins = []
    for n in range(users):
        acc = accounts.create_account(
            None, {"name": f"Customer {n}", "type": "customer", "parent_id": provider.id}
        )
        role = Role.get((Role.account == acc.id) & (Role.default_code == "full_access"))
        email = f"customer{n}@example.com"
        users_service.create_user(
            None,
            {"email": email, "password": "bench-pass-1", "account_id": acc.id,
             "role_ids": [role.id]},
        )  # fmt: skip
        logins.append(email)
    with database.atomic():
        plans = []
        for i in range(lines):
            product = Product.create(account=provider, code=f"P{i}", name=f"Product {i}",
                                     unit="seat")  # fmt: skip
            plans.append(PricePlan.create(account=provider, product=product, name=f"Plan {i}",
                                          currency="EUR", recurring_price=f"{i + 1}.99"))  # fmt: skip
        first = (Account.select(Account.id).order_by(Account.id.desc()).scalar() or 0) + 1
        rows = [
            {"id": first + n, "parent": provider.id, "type": "customer",
             "name": f"Customer {users + n}", "path": f"{provider.path}{first + n}/",
             "currency": "EUR", "bill_cycle_day": 1}
            for n in range(customers - users)
        ]  # fmt: skip
        for chunk in chunked(rows, 500):
            Account.insert_many(chunk).execute()
        ids = [
            a
            for (a,) in Account.select(Account.id)
            .where(Account.parent == provider.id)
            .order_by(Account.id)
            .tuples()
        ]
        subs = ({"account": acc, "plan": plan.id, "quantity": "3", "start": date(2026, 1, 1)}
                for acc in ids for plan in plans)  # fmt: skip
        for chunk in chunked(subs, 1000):
            Subscription.insert_many(chunk).execute()
    if database.obj.__class__.__name__.startswith("Sqlite"):
        database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"provider": provider.id, "customers": len(ids), "logins": logins}


def chunked(iterable, size):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_instance(source: Path, target: Path) -> Path:
    """A copy of an instance folder: the SQLite file (checkpointed and closed), or a new
    PostgreSQL database made from the source's as a template."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("billhive.db", "secret_key"):
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    marker = source / "database_url"
    if marker.exists():
        template = marker.read_text().strip().rsplit("/", 1)[1]
        (target / "database_url").write_text(_pg_create(target.name, template))
    return target


# -- PostgreSQL instances (--postgres ADMIN_URL) ----------------------------------------------

_PG: dict = {"admin": None, "created": []}


def use_postgres(folder: Path, admin_url: str) -> None:
    """Make the instance in ``folder`` live in a new PostgreSQL database (dropped by
    :func:`drop_databases`)."""
    _PG["admin"] = admin_url
    (folder / "database_url").write_text(_pg_create(folder.name))


def _pg_admin():
    import psycopg2

    conn = psycopg2.connect(_PG["admin"])
    conn.autocommit = True
    return conn


def _pg_create(name: str, template: str | None = None) -> str:
    from urllib.parse import urlparse

    db = f"bh_bench_{os.getpid()}_{name}".replace("-", "_").lower()[:63]
    conn = _pg_admin()
    try:
        conn.cursor().execute(
            f'CREATE DATABASE "{db}"' + (f' TEMPLATE "{template}"' if template else "")
        )
    finally:
        conn.close()
    _PG["created"].append(db)
    return urlparse(_PG["admin"])._replace(path=f"/{db}").geturl()


def pg_url(name: str) -> str:
    """A new empty database (for baselines)."""
    return _pg_create(name)


def drop_databases() -> None:
    if not _PG["created"]:
        return
    conn = _pg_admin()
    try:
        cur = conn.cursor()
        for db in reversed(_PG["created"]):
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,)
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{db}"')
        _PG["created"].clear()
    finally:
        conn.close()


def temp_root() -> Path:
    base = os.environ.get("BILLHIVE_BENCH_TMP") or None
    return Path(tempfile.mkdtemp(prefix="billhive-bench-", dir=base))


# -- subprocesses ----------------------------------------------------------------------------


def spawn_cli(config: dict, *args, **popen) -> subprocess.Popen:
    """``billhive ARGS`` for the app built from ``config``, in its own session."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.common", json.dumps(config), *args],
        cwd=ROOT, env=env, start_new_session=True, text=True,
        stdout=popen.pop("stdout", subprocess.PIPE), stderr=popen.pop("stderr", subprocess.STDOUT),
        **popen,
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if marker in line:
            return line
    stop(proc)
    raise RuntimeError(f"no '{marker}' from the subprocess:\n{''.join(seen[-30:])}")


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 30) -> None:
    """Stop a subprocess started by this module and everything it forked."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    for pipe in (proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of session ``sid`` (a
    subprocess started by :func:`spawn_cli` and the workers it forked)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_main(argv: list[str]) -> None:
    from hostapp import cli
    from hostapp.app import create_app

    cli._app = create_app(json.loads(argv[0]))
    sys.argv = ["billhive", *argv[1:]]
    cli.main()


if __name__ == "__main__":
    _cli_main(sys.argv[1:])
