"""`billhive run` as a real server for tests: a subprocess on a free 127.0.0.1 port against the
test's database, waited for until /login answers, killed (its whole process group) at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def billhive_run(app, database_url, *, plugins=(), workers: int = 0, wait: float = 60):
    """Serve ``app``'s data directory and ``database_url`` with ``billhive run`` (``workers``
    > 0: gunicorn with that many worker processes). Yields ``(process, base_url)``."""
    port = free_port()
    env = {**os.environ, "BILLHIVE_DATABASE_URL": database_url,
           "BILLHIVE_DATA_DIR": app.config["DATA_DIR"], "BILLHIVE_SECRET_KEY": "test",
           "BILLHIVE_PLUGINS": ",".join(plugins), "PYTHONPATH": str(ROOT)}  # fmt: skip
    billhive = shutil.which("billhive", path=str(Path(sys.executable).parent)) or "billhive"
    argv = [billhive, "run", "--port", str(port)]
    if workers:
        argv += ["--workers", str(workers)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                if requests.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"the server did not answer:\n{proc.communicate()[0]}")
            time.sleep(0.2)
        yield proc, base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=20)
