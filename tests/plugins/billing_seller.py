"""Test plugin: a licensed account type ``seller`` (a reseller-like issuer) and an
``invoice_options`` answer the tests set through ``OPTIONS``."""

from __future__ import annotations

from core import hookimpl
from core.registry import AccountType, InvoiceFormat, PluginMeta

PLUGIN = PluginMeta(name="billing_seller", title="Test seller", version="1.0",
                    license_feature="FT-TEST.SELL")  # fmt: skip
OPTIONS = None  # an InvoiceOptions or None
FAIL_RENDER = False  # the FLAKY format raises while True


def _render(document):
    if FAIL_RENDER:
        raise RuntimeError("renderer out of ink")
    return f"FLAKY {document['number']} {document['total']}".encode()


@hookimpl
def register_invoice_formats():
    return [InvoiceFormat("FLAKY", "Flaky", "text/plain", "txt", _render)]


@hookimpl
def register_account_types():
    return [AccountType("seller", "Seller", "reseller", None, child_types=("customer",),
                        parent_types=("provider",))]  # fmt: skip


@hookimpl
def invoice_options(issuer, account, period):
    return OPTIONS
