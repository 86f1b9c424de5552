"""Test plugin: a licensed account type ``seller`` (a reseller-like issuer) and an
``invoice_options`` answer the tests set through ``OPTIONS``."""

from __future__ import annotations

from core import hookimpl
from core.registry import AccountType, PluginMeta

PLUGIN = PluginMeta(name="billing_seller", title="Test seller", version="1.0",
                    license_feature="FT-TEST.SELL")  # fmt: skip
OPTIONS = None  # an InvoiceOptions or None


@hookimpl
def register_account_types():
    return [AccountType("seller", "Seller", "reseller", None, child_types=("customer",),
                        parent_types=("provider",))]  # fmt: skip


@hookimpl
def invoice_options(issuer, account, period):
    return OPTIONS
