"""`billhive run --workers N` serves the panel and the API with gunicorn (N worker
processes) on 127.0.0.1; the server is killed at the end of the test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import BUILTIN_PLUGINS, PASSWORD

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture
def gunicorn(app, database_url):
    port = free_port()
    env = {**os.environ, "BILLHIVE_DATABASE_URL": database_url,
           "BILLHIVE_DATA_DIR": app.config["DATA_DIR"], "BILLHIVE_SECRET_KEY": "test",
           "BILLHIVE_PLUGINS": ",".join(BUILTIN_PLUGINS), "PYTHONPATH": str(ROOT)}  # fmt: skip
    billhive = shutil.which("billhive", path=str(Path(sys.executable).parent)) or "billhive"
    proc = subprocess.Popen(
        [billhive, "run", "--workers", "2", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"gunicorn did not answer:\n{proc.communicate()[0]}")
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


def test_run_with_workers_serves_the_panel_and_the_api_with_gunicorn(world, gunicorn):
    proc, base = gunicorn
    assert len(children(proc.pid)) == 2  # the master (exec'd in place) and two workers
    resp = requests.post(f"{base}/api/v1/tokens",
                         json={"email": world.operator.email, "password": PASSWORD}, timeout=10)  # fmt: skip
    assert resp.status_code == 201, resp.text
    headers = {"Authorization": f"Bearer {resp.json()['token']}"}
    for _ in range(6):  # several requests: whichever worker answers, the same data
        resp = requests.get(f"{base}/api/v1/accounts", headers=headers, timeout=10)
        assert resp.status_code == 200
        names = {a["name"] for a in resp.json()}
        assert {"Provider", "Customer A", "Customer B"} <= names
    assert requests.get(f"{base}/api/v1/openapi.json", timeout=10).status_code == 200
    proc.send_signal(signal.SIGTERM)  # graceful stop of the master and its workers
    out, _ = proc.communicate(timeout=30)
    assert "Starting gunicorn" in out and out.count("Booting worker") == 2
