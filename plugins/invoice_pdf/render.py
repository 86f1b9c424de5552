"""PDF rendering of invoices and credit notes.

The billing engine hands over a plain document dict with every amount already
formatted; this module only lays it out. It uses a standalone Jinja2
environment (not Flask's) so it can run in a worker with no application.
"""

from __future__ import annotations

from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from xhtml2pdf import pisa

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
INVOICE_TEMPLATE = "invoice_pdf/invoice.html"

TITLES = {"invoice": "INVOICE", "credit_note": "CREDIT NOTE"}


@cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True)


def _sections(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Split the lines into consecutive sections, one per group.

    Ungrouped documents give a single section with no name. Lines of a group
    are contiguous, so a section ends where the line's group changes; each
    named section carries the subtotal the engine gave for that group.
    """
    lines = doc.get("lines") or []
    groups = doc.get("groups") or []
    if not groups:
        return [{"name": None, "subtotal": None, "lines": list(lines)}]
    subtotals = {g["name"]: g.get("subtotal") for g in groups}
    sections: list[dict[str, Any]] = []
    for line in lines:
        name = line.get("group")
        if not sections or sections[-1]["name"] != name:
            sections.append({"name": name, "subtotal": subtotals.get(name), "lines": []})
        sections[-1]["lines"].append(line)
    # A group announced with no lines still shows up with its subtotal.
    seen = {s["name"] for s in sections}
    for g in groups:
        if g["name"] not in seen:
            sections.append({"name": g["name"], "subtotal": g.get("subtotal"), "lines": []})
    return sections


def render_invoice_html(doc: dict[str, Any]) -> str:
    """The XHTML fed to xhtml2pdf, exposed for debugging and tests."""
    kind = doc.get("kind") or "invoice"
    template = _environment().get_template(INVOICE_TEMPLATE)
    return template.render(
        doc=doc,
        title=TITLES.get(kind, str(kind).replace("_", " ").upper()),
        is_credit_note=kind == "credit_note",
        issuer=doc.get("issuer") or {},
        recipient=doc.get("recipient") or {},
        sections=_sections(doc),
    )


def render_invoice_pdf(doc: dict[str, Any]) -> bytes:
    """Render an invoice or credit note document dict to PDF bytes (a statement document,
    ``kind == "statement"``, is rendered by :func:`render_statement_pdf`).

    Raises RuntimeError if xhtml2pdf reports errors.
    """
    if doc.get("kind") == "statement":
        return render_statement_pdf(doc)
    html = render_invoice_html(doc)
    out = BytesIO()
    result = pisa.CreatePDF(html, dest=out, encoding="utf-8")
    if result.err:
        raise RuntimeError(
            f"xhtml2pdf failed to render {doc.get('number', 'document')}: {result.err} error(s)"
        )
    return out.getvalue()


STATEMENT_TEMPLATE = "invoice_pdf/statement.html"


def render_statement_html(doc: dict[str, Any]) -> str:
    """The XHTML of an account statement (see core.billing.statements for the keys)."""
    template = _environment().get_template(STATEMENT_TEMPLATE)
    return template.render(doc=doc, account=doc.get("account") or {})


def render_statement_pdf(doc: dict[str, Any]) -> bytes:
    """Render an account statement document dict to PDF bytes.

    Raises RuntimeError if xhtml2pdf reports errors.
    """
    out = BytesIO()
    result = pisa.CreatePDF(render_statement_html(doc), dest=out, encoding="utf-8")
    if result.err:
        raise RuntimeError(f"xhtml2pdf failed to render the statement: {result.err} error(s)")
    return out.getvalue()
