"""PSA mapping (ConnectWise Manage): Billing mappings pushed to ConnectWise Manage through a billing connector."""

from core.registry import PluginMeta

PLUGIN = PluginMeta(
    name="psa_mapping",
    title="PSA mapping (ConnectWise Manage)",
    version="0.1.0",
    license_feature="BH-PSA",
    description="Billing mappings pushed to ConnectWise Manage through a billing connector.",
)
