"""Reseller accounts: Define Account as Reseller: reseller accounts with their own customers, catalog and invoicing."""

from core.registry import PluginMeta

PLUGIN = PluginMeta(
    name="reseller_accounts",
    title="Reseller accounts",
    version="0.1.0",
    license_feature="FT-3001.007",
    description="Define Account as Reseller: reseller accounts with their own customers, catalog and invoicing.",
)
