"""Invoice PDF: renders issued invoices to PDF with xhtml2pdf (the RAW format is in core)."""

from core.kit import InvoiceFormat, PluginMeta, hookimpl

PLUGIN = PluginMeta(
    name="invoice_pdf",
    title="Invoice PDF",
    version="0.1.0",
    description="A professional A4 PDF of every issued invoice and credit note.",
)


def _render(document: dict) -> bytes:
    from plugins.invoice_pdf.formats import render_invoice_pdf  # xhtml2pdf loads on first use

    return render_invoice_pdf(document)


@hookimpl
def register_invoice_formats():
    return [InvoiceFormat("PDF", "PDF", "application/pdf", "pdf", _render)]
