"""Benchmark: invoice PDF rendering throughput, in pages per second.

Run from the repository root:

    python -m bench.pdf [--runs N]

For invoices of about 1, 5 and 25 pages it times ``render_invoice_pdf`` and,
in the same run, a baseline: xhtml2pdf rendering a bare, unstyled HTML table
of the same data. Each measurement is the best of N runs after one warm-up.
It reports numbers only; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import html
import time
from collections.abc import Callable
from io import BytesIO

from pypdf import PdfReader
from xhtml2pdf import pisa

from plugins.invoice_pdf.formats import render_invoice_pdf

# Line counts that give invoices of 1, 5 and 25 A4 pages with the shipped
# template (first page holds ~19 lines under the header blocks, later pages
# ~41). The actual page count is measured and printed, not assumed.
SIZES = {1: 12, 5: 165, 25: 965}


def make_doc(n_lines: int) -> dict:
    lines = []
    for i in range(n_lines):
        qty = i % 7 + 1
        lines.append(
            {
                "description": f"Managed hosting, tier {i % 4 + 1}, instance #{i + 1}",
                "quantity": str(qty),
                "unit": "seat",
                "unit_price": "12.50",
                "amount": f"{12.5 * qty:,.2f}",
                "amount_minor": 1250 * qty,
                "group": None,
            }
        )
    return {
        "kind": "invoice",
        "number": "INV-000042",
        "status": "issued",
        "currency": "EUR",
        "issue_date": "2026-11-15",
        "due_date": "2026-11-29",
        "period_start": "2026-10-15",
        "period_end": "2026-11-14",
        "issuer": {
            "name": "Acme Hosting GmbH",
            "address": ["Hauptstrasse 1", "10115 Berlin", "Germany"],
            "tax_id": "DE123456789",
            "email": "billing@acme.example",
        },
        "recipient": {
            "name": "Globex Reseller Ltd",
            "address": ["221B Baker Street", "London NW1 6XE"],
            "account_ref": "C-12",
        },
        "lines": lines,
        "groups": [],
        "subtotal": "1,234.56",
        "tax_rate": "20%",
        "tax": "246.91",
        "total": "1,481.47 EUR",
        "subtotal_minor": 123456,
        "tax_minor": 24691,
        "total_minor": 148147,
        "credit_note_for": None,
        "notes": "Payment terms: net 14 days",
    }


def render_baseline(doc: dict) -> bytes:
    """xhtml2pdf on a bare HTML table of the same data: no CSS, no header/footer."""
    e = html.escape
    rows = [
        "<tr><th>Description</th><th>Qty</th><th>Unit</th><th>Unit price</th><th>Amount</th></tr>"
    ]
    for line in doc["lines"]:
        rows.append(
            f"<tr><td>{e(line['description'])}</td><td>{e(line['quantity'])}</td>"
            f"<td>{e(line['unit'])}</td><td>{e(line['unit_price'])}</td>"
            f"<td>{e(line['amount'])}</td></tr>"
        )
    for label, key in (("Subtotal", "subtotal"), ("Tax", "tax"), ("Total", "total")):
        rows.append(f"<tr><td>{label}</td><td></td><td></td><td></td><td>{e(doc[key])}</td></tr>")
    source = f"<html><body><table>{''.join(rows)}</table></body></html>"
    out = BytesIO()
    result = pisa.CreatePDF(source, dest=out)
    if result.err:
        raise RuntimeError(f"baseline render failed: {result.err} error(s)")
    return out.getvalue()


def page_count(pdf: bytes) -> int:
    return len(PdfReader(BytesIO(pdf)).pages)


def best_of(render: Callable[[dict], bytes], doc: dict, runs: int) -> tuple[float, bytes]:
    """Best wall time of `runs` renders, after one untimed warm-up render."""
    pdf = render(doc)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        pdf = render(doc)
        best = min(best, time.perf_counter() - start)
    return best, pdf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per case (best is kept)")
    args = parser.parse_args(argv)

    print(f"invoice PDF rendering, best of {args.runs} runs after a warm-up")
    print(
        f"{'target':>6} {'lines':>6} {'pages':>6} {'seconds':>8} {'pages/s':>8}"
        f" {'base pages':>10} {'base s':>7} {'base pages/s':>12} {'ratio':>6}"
    )
    for target, n_lines in SIZES.items():
        doc = make_doc(n_lines)
        ours_s, ours_pdf = best_of(render_invoice_pdf, doc, args.runs)
        base_s, base_pdf = best_of(render_baseline, doc, args.runs)
        pages, base_pages = page_count(ours_pdf), page_count(base_pdf)
        ours_rate, base_rate = pages / ours_s, base_pages / base_s
        print(
            f"{target:>6} {n_lines:>6} {pages:>6} {ours_s:>8.3f} {ours_rate:>8.2f}"
            f" {base_pages:>10} {base_s:>7.3f} {base_rate:>12.2f} {ours_rate / base_rate:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
