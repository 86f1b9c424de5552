"""Benchmark: the REST API under gunicorn — requests/s and p99 latency of a customer-scoped
invoice list, against a hello-world endpoint of the same server.

Run from the repository root:

    python -m bench.api [--customers N] [--requests R] [--seconds S] [--concurrency C]

Builds (and bills) a throwaway instance of N customers, serves it with gunicorn exactly as
``billhive run --workers 2`` does (the app module adds ``/bench/hello``, which goes through
the same request set-up: database connection and plugin-state check), and loads it from a
second process on 127.0.0.1: customers' users listing their own invoices
(``GET /api/v1/invoices`` with their API token, scoped to their subtree), then the hello
endpoint, each for R requests or S seconds, whichever comes first. Asserts nothing.

``python -m bench.api load URL [TOKEN ...]`` is that load generator (JSON on stdout).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from bench.common import (
    AS_OF,
    ROOT,
    Report,
    config_for,
    free_port,
    in_app,
    make_app,
    stop,
    temp_root,
)

CONFIG_ENV = "BILLHIVE_BENCH_APP_CONFIG"


def create_bench_app():
    """The served app (gunicorn "bench.api:create_bench_app()"), configured from JSON in
    BILLHIVE_BENCH_APP_CONFIG, plus the hello-world endpoint."""
    from hostapp.app import create_app

    app = create_app(json.loads(os.environ[CONFIG_ENV]))

    @app.route("/bench/hello")
    def hello():
        return "hello, world\n", 200, {"Content-Type": "text/plain"}

    return app


# -- the load generator (a second process) ---------------------------------------------------


def load(url: str, tokens: list[str], requests: int, seconds: float, concurrency: int) -> dict:
    """GET ``url`` ``requests`` times (or for ``seconds``) from ``concurrency`` threads, one
    connection per request (gunicorn's sync workers close it); tokens are used in turn."""
    parsed = urlparse(url)
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.monotonic() + seconds

    def worker():
        while time.monotonic() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            headers = {"Connection": "close"}
            if tokens:
                headers["Authorization"] = f"Bearer {tokens[n % len(tokens)]}"
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                conn.close()
                ok = resp.status == 200
            except OSError as exc:
                ok, resp = False, exc
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors.append(str(getattr(resp, "status", resp)))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0

    return {"ok": len(latencies), "errors": len(errors), "error_sample": errors[:5],
            "seconds": wall, "rps": len(latencies) / wall if wall else 0,
            "p50_ms": pct(0.50) * 1000, "p99_ms": pct(0.99) * 1000}  # fmt: skip


def run_load(url, tokens, requests, seconds, concurrency) -> dict:
    """The load generator in a second process; its JSON result."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "bench.api", "load", url, *tokens, "--requests", str(requests),
         "--seconds", str(seconds), "--concurrency", str(concurrency)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=seconds + 120, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


# -- the server ------------------------------------------------------------------------------


def serve(config: dict, workers: int = 2):
    """gunicorn as `billhive run --workers N` starts it, on a free port; (process, base URL)."""
    import subprocess
    import urllib.request

    from hostapp.cli import gunicorn_argv

    port = free_port()
    argv = gunicorn_argv("127.0.0.1", port, workers)[:-1] + ["bench.api:create_bench_app()"]
    env = {**os.environ, CONFIG_ENV: json.dumps(config), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/bench/hello", timeout=2) as resp:
                if resp.status == 200:
                    return proc, base
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError("gunicorn did not start")
        time.sleep(0.2)


def tokens_for(base: str, logins: list[str], password: str = "bench-pass-1") -> list[str]:
    import urllib.request

    tokens = []
    for email in logins:
        req = urllib.request.Request(
            f"{base}/api/v1/tokens", method="POST",
            data=json.dumps({"email": email, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as resp:
            tokens.append(json.loads(resp.read())["token"])
    return tokens


def bench(report: Report, folder: Path, logins: list[str], *, requests: int, seconds: float,
          concurrency: int = 4, workers: int = 2, label: str = "") -> None:  # fmt: skip
    """Load a billed instance in ``folder`` whose customers ``logins`` have invoices."""
    config = config_for(folder, QUEUE="inline")
    proc, base = serve(config, workers)
    try:
        tokens = tokens_for(base, logins)
        # warm both endpoints in every worker before measuring
        run_load(f"{base}/bench/hello", [], 50, 30, concurrency)
        run_load(f"{base}/api/v1/invoices", tokens, 50, 30, concurrency)
        listed = run_load(f"{base}/api/v1/invoices", tokens, requests, seconds, concurrency)
        hello = run_load(f"{base}/bench/hello", [], requests, seconds, concurrency)
    finally:
        stop(proc)
    for result in (listed, hello):
        if result["errors"]:
            raise RuntimeError(f"API load failed: {result['error_sample']}")
    what = f"GET /api/v1/invoices as a customer{label}"
    setup = f"gunicorn {workers} workers, {concurrency} clients"
    report.add("API", f"{what}: requests/s", listed["rps"], "req/s",
               "hello-world on the same server", hello["rps"], setup)  # fmt: skip
    report.add("API", f"{what}: p99 latency", listed["p99_ms"], "ms",
               "hello-world on the same server", hello["p99_ms"],
               f"p50 {listed['p50_ms']:.1f} ms vs {hello['p50_ms']:.1f} ms")  # fmt: skip


def build_billed(root: Path, customers: int, users: int) -> tuple[Path, list[str]]:
    """An instance of ``customers`` customers (``users`` of them with a login), billed."""
    from bench.common import build_customers
    from core.billing.runs import engine

    folder = root / f"api-{customers}"
    folder.mkdir(parents=True, exist_ok=True)
    app = make_app(config_for(folder))
    with in_app(app):
        info = build_customers(customers, 20, users=users)
        engine.run(AS_OF)
    return folder, info["logins"]


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        parser = argparse.ArgumentParser(prog="bench.api load")
        parser.add_argument("url")
        parser.add_argument("tokens", nargs="*")
        parser.add_argument("--requests", type=int, default=2000)
        parser.add_argument("--seconds", type=float, default=30)
        parser.add_argument("--concurrency", type=int, default=4)
        args = parser.parse_args(argv[1:])
        print(json.dumps(load(args.url, args.tokens, args.requests, args.seconds,
                              args.concurrency)))  # fmt: skip
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    import shutil

    root = temp_root()
    try:
        folder, logins = build_billed(root, args.customers, users=20)
        bench(Report(), folder, logins, requests=args.requests, seconds=args.seconds,
              concurrency=args.concurrency, label=f" ({args.customers:,} customers)")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
