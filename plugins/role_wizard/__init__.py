"""Role wizard: Custom billing roles per provider, reseller and customer, with the Add New Role wizard."""

from core.registry import PluginMeta

PLUGIN = PluginMeta(
    name="role_wizard",
    title="Role wizard",
    version="0.1.0",
    license_feature=None,
    description="Custom billing roles per provider, reseller and customer, with the Add New Role wizard.",
)
