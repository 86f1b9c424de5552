"""UBL 2.1 XML e-invoices: an example third-party Billhive plugin.

Installed as its own distribution (``billhive-ubl``), found through the entry point
``billhive.plugins: ubl = billhive_ubl``, and built on the public plugin API only: ``PLUGIN``
metadata and the ``register_invoice_formats`` hook.
"""

from core.kit import InvoiceFormat, PluginMeta, hookimpl

from billhive_ubl.ubl import render

PLUGIN = PluginMeta(
    name="ubl",
    title="UBL e-invoices",
    version="1.0.0",
    api_version=1,
    description="Every issued invoice and credit note as an OASIS UBL 2.1 XML document.",
)


@hookimpl
def register_invoice_formats():
    return [InvoiceFormat("UBL", "UBL 2.1 XML", "application/xml", "xml", render)]
