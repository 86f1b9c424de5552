"""The benchmark suite in one command: every figure with its same-run baseline ratio.

Run from the repository root (``make bench``):

    python -m bench [--quick] [--only billrun,growth,pdf,api,hooks,usage,lists] [--markdown FILE]

Sections (full size; ``--quick`` divides the sizes by 10 for development):

* ``billrun`` — bill run of 10,000 customers x 20 lines: invoices/s in-process, queued with 1
  and with 2 workers (``billhive worker``); baseline: raw sqlite3 writing the same rows.
* ``growth`` — the queued 2-worker run at 100,000 customers against the same at 10,000:
  invoices/s and their ratio (1.0 = the cost grows linearly).
* ``pdf`` — invoice PDF pages/s for 1-, 5- and 25-page invoices; baseline: xhtml2pdf on a
  bare table of the same data (``bench.pdf``).
* ``api`` — under gunicorn (2 workers), requests/s and p99 latency of a customer listing its
  invoices on the billed 10,000-customer instance; baseline: a hello-world endpoint of the same
  server; the load comes from a second process on 127.0.0.1.
* ``hooks`` — a 2,000-customer bill run with 10 no-op plugins enabled; baseline: none.
* ``usage`` — importing 1,000,000 usage records; baseline: raw sqlite3 executemany.
* ``lists`` — the list and search pages of the panel and the API (``core.find``) at 100,000
  accounts, median milliseconds per page as the operator; baseline: the same page at 1,000
  accounts (``bench.lists``; a ratio near 1 means index-served).

Everything runs in throwaway folders (``BILLHIVE_BENCH_TMP`` picks where) in this process
tree: workers, servers and load generators are subprocesses, stopped at the end. Numbers
only: nothing is asserted about speed. Benchmarks are not tests (pytest never collects them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from bench.common import Report, machine, temp_root

SECTIONS = ("billrun", "growth", "pdf", "api", "hooks", "usage", "lists")


def pdf_section(report: Report, runs: int) -> None:
    from bench.pdf import SIZES, best_of, make_doc, page_count, render_baseline
    from plugins.invoice_pdf.formats import render_invoice_pdf

    for target, n_lines in SIZES.items():
        doc = make_doc(n_lines)
        ours_s, ours_pdf = best_of(render_invoice_pdf, doc, runs)
        base_s, base_pdf = best_of(render_baseline, doc, runs)
        pages, base_pages = page_count(ours_pdf), page_count(base_pdf)
        report.add("PDF", f"{pages}-page invoice ({n_lines} lines), best of {runs}",
                   pages / ours_s, "pages/s", "xhtml2pdf bare table", base_pages / base_s,
                   f"target {target} page(s)")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes divided by 10")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")  # fmt: skip
    parser.add_argument("--redis-url", default=None, help="queue on Redis instead of SQLite")
    parser.add_argument("--postgres", default=None, metavar="ADMIN_URL",
                        help="bill runs, API and hooks on PostgreSQL databases made through "
                        "this admin URL (dropped at the end); usage stays on SQLite")  # fmt: skip
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway folders")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    scale = 10 if args.quick else 1
    customers, big = 10_000 // scale, 100_000 // scale
    lines = 20

    header = (f"Billhive benchmarks ({'quick: sizes / 10' if args.quick else 'full size'}) "
              f"on {machine()}")  # fmt: skip
    print(header, flush=True)
    report = Report()
    root = temp_root()
    started = time.perf_counter()
    try:
        from bench import billrun

        results = {}
        template = None
        if {"billrun", "growth", "api"} & set(only):
            print(f"\n[bill run] {customers:,} customers x {lines} lines", flush=True)
            template, _ = billrun.build_template(root, customers, lines, users=20,
                                                 postgres=args.postgres)  # fmt: skip
        if "billrun" in only:
            results = billrun.bench(report, root, customers, lines, [0, 1, 2],
                                    redis_url=args.redis_url, template=template,
                                    postgres=args.postgres)  # fmt: skip
        if "growth" in only:
            print(f"\n[growth] {customers:,} vs {big:,} customers, queued, 2 workers", flush=True)
            small = results.get(f"queued-{customers}-w2") or billrun.run_queued(
                template, root, f"queued-{customers}-w2", 2, redis_url=args.redis_url
            )
            big_template, _ = billrun.build_template(root, big, lines, postgres=args.postgres)
            large = billrun.run_queued(big_template, root, f"queued-{big}-w2", 2,
                                       redis_url=args.redis_url)  # fmt: skip
            shutil.rmtree(big_template, ignore_errors=True)
            report.add("growth", f"{big:,} customers x {lines} lines, queued, 2 workers",
                       large["invoices"] / large["seconds"], "invoices/s",
                       f"{customers:,} customers, same run", small["invoices"] / small["seconds"],
                       f"{large['seconds']:.0f}s vs {small['seconds']:.0f}s; ratio 1.0 = linear")  # fmt: skip
        if "pdf" in only:
            print("\n[PDF] render_invoice_pdf vs xhtml2pdf on a bare table", flush=True)
            pdf_section(report, 1 if args.quick else 3)
        if "api" in only:
            from bench import api

            print(f"\n[API] gunicorn, {customers:,} billed customers", flush=True)
            billed = results.get(f"queued-{customers}-w1") or results.get(f"inline-{customers}")
            folder = billed["folder"] if billed else billrun.run_inline(
                template, root, f"api-{customers}")["folder"]  # fmt: skip
            logins = [f"customer{n}@example.com" for n in range(20)]
            api.bench(report, folder, logins, requests=1000 if args.quick else 5000,
                      seconds=20 if args.quick else 60,
                      label=f" ({customers:,} customers)")  # fmt: skip
        if "hooks" in only:
            from bench import hooks

            n = 2000 // scale
            print(f"\n[hooks] {n:,} customers x {lines} lines, in-process", flush=True)
            hook_template, _ = billrun.build_template(root, n, lines, postgres=args.postgres)
            hooks.bench(report, root, hook_template, n)
        if "usage" in only:
            from bench import usage

            records = 1_000_000 // scale
            print(f"\n[usage] {records:,} records", flush=True)
            usage.bench(report, root, records)
        if "lists" in only:
            from bench import lists

            print(f"\n[lists] {big:,} accounts vs {1000 // scale:,}", flush=True)
            lists.bench(report, root, big, 1000 // scale, 5 if args.quick else 15,
                        postgres=args.postgres)  # fmt: skip
    finally:
        from bench.common import drop_databases

        drop_databases()
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    table = report.markdown()
    took = time.perf_counter() - started
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    footer = f"Suite took {took / 60:.1f} min; load average at the end {load}."
    print(f"\n{header}\n\n{table}\n\n{footer}")
    if args.markdown:
        Path(args.markdown).write_text(f"{header}\n\n{table}\n\n{footer}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
