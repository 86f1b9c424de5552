"""Issue 16 item 10: the ``billhive`` command against a database it cannot reach says so in
one line (the URL with its password masked, and the cause) and exits with status 2; a
traceback only with BILLHIVE_DEBUG=1. ``billhive --help`` writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = [["plugins", "list"], ["run", "--port", "0"], ["worker", "--threads"], ["bill-run"]]
PG_URL = "postgresql://billhive:s3cret-pw@127.0.0.1:1/billhive"


def billhive(args, tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("BILLHIVE_")}
    base.update({"BILLHIVE_QUEUE": "sqlite", "PYTHONPATH": str(ROOT), **env})
    return subprocess.run(
        [sys.executable, "-c", "from hostapp.cli import main; main()", *args],
        cwd=tmp_path, env=base, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_an_unreachable_postgresql_server_is_one_line_and_status_2(tmp_path, args):
    result = billhive(args, tmp_path, BILLHIVE_DATABASE_URL=PG_URL,
                      BILLHIVE_DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "postgresql://billhive:***@127.0.0.1:1/billhive" in line
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Connection refused" in line or "connect" in line.lower()
    assert "Traceback" not in result.stderr


def test_an_unopenable_sqlite_file_is_one_line_and_status_2(tmp_path):
    url = f"sqlite:///{tmp_path}/missing-folder/billhive.db"
    result = billhive(["plugins", "list"], tmp_path, BILLHIVE_DATABASE_URL=url,
                      BILLHIVE_DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert url in result.stderr and "unable to open database file" in result.stderr


def test_billhive_debug_shows_the_traceback(tmp_path):
    result = billhive(["plugins", "list"], tmp_path, BILLHIVE_DATABASE_URL=PG_URL,
                      BILLHIVE_DATA_DIR=str(tmp_path / "data"), BILLHIVE_DEBUG="1")  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_help_writes_nothing(tmp_path):
    result = billhive(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "plugins" in result.stdout
    assert list(tmp_path.iterdir()) == []  # no ./instance, no database, no secret key
    result = billhive([], tmp_path)
    assert list(tmp_path.iterdir()) == []
    # a configured data dir that does not exist yet is not created either
    folder = tmp_path / "elsewhere"
    result = billhive(["--help"], tmp_path, BILLHIVE_DATA_DIR=str(folder))
    assert result.returncode == 0 and not folder.exists()


def test_help_of_an_existing_instance_adds_no_file(tmp_path):
    """Where an instance exists, ``--help`` opens it (for enabled plugins' commands) and
    leaves no new file behind."""
    env = {"BILLHIVE_DATA_DIR": str(tmp_path / "data"), "BILLHIVE_PLUGINS": "psa_mapping"}
    init = billhive(["init", "--operator-email", "op@example.com", "--operator-password",
                     "a-long-pass-phrase-12"], tmp_path, **env)  # fmt: skip
    assert init.returncode == 0, init.stderr
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "data").iterdir())
    result = billhive(["--help"], tmp_path, **env)
    assert result.returncode == 0 and "Usage:" in result.stdout
    after = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "data").iterdir())
    assert [n for n, _ in after] == [n for n, _ in before]
