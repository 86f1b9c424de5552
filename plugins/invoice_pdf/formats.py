"""PDF rendering of invoices and credit notes.

The billing engine hands over a plain document dict (core.billing.invoicing.documents); this module
lays it out in the buyer's invoice language. Amounts are formatted here from the document's
integer minor units with :mod:`core.i18n` (Babel: ``1.234,56 €`` in German), and every text
of the template goes through the gettext catalogue of core/translations, so the PDF of one
invoice reads the same as its other formats. It uses a standalone Jinja2 environment per
language (not Flask's) so it can run in a worker with no application.

The footer's "Page 2 of 5" needs the page total. Asked with ``<pdf:pagecount>``, xhtml2pdf
lays the document out twice (its second pass is cheaper than a new render: it keeps the
parsed document). Most invoices fit one page, so one of at most ``ONE_PAGE_LINES`` lines is
rendered once with "of 1" written in, and kept when the result has one page; anything
longer (or a short one that did not fit after all) is rendered with ``<pdf:pagecount>``.
"""

from __future__ import annotations

from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from pypdf import PdfReader
from xhtml2pdf import pisa

from core.kit import i18n

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
INVOICE_TEMPLATE = "invoice_pdf/invoice.html"
# lines that fit the first page under the header blocks, unless descriptions wrap a lot
ONE_PAGE_LINES = 15


def language_of(doc: dict[str, Any]) -> str:
    """The supported locale the document is rendered in: the buyer's invoice language from
    its billing details, English when it has none (core.i18n.negotiate)."""
    recipient = doc.get("recipient") or {}
    return i18n.negotiate(doc.get("language") or recipient.get("language"))


@cache
def _environment(locale: str) -> Environment:
    """One environment per language: its gettext catalogue and its Babel filters, bound once
    (an environment is shared by every render in the process, so nothing is swapped per
    call)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)
    env.filters.update(
        money=lambda minor, currency: i18n.format_money(minor, currency, locale),
        price=lambda value, currency: i18n.format_price(value, currency, locale),
        number=lambda value: i18n.format_number(value, locale),
        rate=lambda percent: i18n.format_rate(str(percent).rstrip("% "), locale),
        day=lambda value: i18n.format_date(value, locale),
        country=lambda code: i18n.country_name(code, locale),
        line=lambda text: i18n.line_text(text, locale),
    )
    env.globals["locale"] = locale
    return env


def _sections(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Split the lines into consecutive sections, one per group.

    Ungrouped documents give a single section with no name. Lines of a group
    are contiguous, so a section ends where the line's group changes; each
    named section carries the subtotal the engine gave for that group.
    """
    lines = doc.get("lines") or []
    groups = doc.get("groups") or []
    if not groups:
        return [{"name": None, "subtotal_minor": None, "lines": list(lines)}]
    subtotals = {g["name"]: g.get("subtotal_minor") for g in groups}
    sections: list[dict[str, Any]] = []
    for line in lines:
        name = line.get("group")
        if not sections or sections[-1]["name"] != name:
            sections.append({"name": name, "subtotal_minor": subtotals.get(name), "lines": []})
        sections[-1]["lines"].append(line)
    # A group announced with no lines still shows up with its subtotal.
    seen = {s["name"] for s in sections}
    for g in groups:
        if g["name"] not in seen:
            sections.append({"name": g["name"], "subtotal_minor": g.get("subtotal_minor"),
                             "lines": []})  # fmt: skip
    return sections


def _breakdown(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Taxable amount and tax per rate (article 226 (8)-(10)); a document without
    ``tax_breakdown`` has the one rate of its ``tax_rate``."""
    rows = doc.get("tax_breakdown")
    if rows:
        return rows
    rate = str(doc.get("tax_rate") or "0").rstrip("% ")
    return [{"rate_percent": rate, "taxable_minor": doc.get("subtotal_minor", 0),
             "tax_minor": doc.get("tax_minor", 0)}]  # fmt: skip


def render_invoice_html(doc: dict[str, Any], pages: int | None = None) -> str:
    """The XHTML fed to xhtml2pdf, exposed for debugging and tests. ``pages``: the page
    total the footer states (None: xhtml2pdf counts it, in a second layout pass)."""
    kind = doc.get("kind") or "invoice"
    locale = language_of(doc)
    template = _environment(locale).get_template(INVOICE_TEMPLATE)
    return template.render(
        doc=doc,
        kind=kind,
        is_credit_note=kind == "credit_note",
        page_total=Markup("<pdf:pagecount>") if pages is None else pages,
        issuer=doc.get("issuer") or {},
        recipient=doc.get("recipient") or {},
        sections=_sections(doc),
        breakdown=_breakdown(doc),
        # what is owed (paid, credit applied, due) is an invoice's, once issued
        owed=kind == "invoice"
        and doc.get("status") != "draft"
        and doc.get("amount_due_minor") is not None,
    )


def render_invoice_pdf(doc: dict[str, Any]) -> bytes:
    """Render an invoice or credit note document dict to PDF bytes (a statement document,
    ``kind == "statement"``, is rendered by :func:`render_statement_pdf`).

    Raises RuntimeError if xhtml2pdf reports errors.
    """
    if doc.get("kind") == "statement":
        return render_statement_pdf(doc)
    name = doc.get("number") or "document"
    if len(doc.get("lines") or ()) <= ONE_PAGE_LINES:
        pdf = _pdf(render_invoice_html(doc, pages=1), name)
        if len(PdfReader(BytesIO(pdf)).pages) == 1:
            return pdf
    return _pdf(render_invoice_html(doc), name)


def _pdf(html: str, name: str) -> bytes:
    out = BytesIO()
    result = pisa.CreatePDF(html, dest=out, encoding="utf-8")
    if result.err:
        raise RuntimeError(f"xhtml2pdf failed to render {name}: {result.err} error(s)")
    return out.getvalue()


STATEMENT_TEMPLATE = "invoice_pdf/statement.html"


def render_statement_html(doc: dict[str, Any]) -> str:
    """The XHTML of an account statement (see core.billing.ledger.statements for the keys; the
    statement is an English operator document, formatted by the statement module)."""
    template = _environment(i18n.DEFAULT_LOCALE).get_template(STATEMENT_TEMPLATE)
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
