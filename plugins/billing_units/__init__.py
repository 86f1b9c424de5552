"""Billing units: Billing units of a contact center: users, teams and phone numbers, with cost reports per unit."""

from core.registry import PluginMeta

PLUGIN = PluginMeta(
    name="billing_units",
    title="Billing units",
    version="0.1.0",
    license_feature="BH-UNITS",
    description="Billing units of a contact center: users, teams and phone numbers, with cost reports per unit.",
)
