"""`billhive run --workers N` serves the panel and the API with gunicorn (N worker
processes) on 127.0.0.1; the server is killed at the end of the test."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import BUILTIN_PLUGINS, PASSWORD
from tests.servers import billhive_run

pytestmark = pytest.mark.slow


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
    with billhive_run(app, database_url, plugins=BUILTIN_PLUGINS, workers=2) as served:
        yield served


def test_run_with_workers_serves_the_panel_and_the_api_with_gunicorn(world, gunicorn):
    proc, base = gunicorn
    # the master (exec'd in place) forks two workers; the first may answer before the second
    # has booted, so wait (bounded) for both
    deadline = time.monotonic() + 30
    while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(children(proc.pid)) == 2
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
