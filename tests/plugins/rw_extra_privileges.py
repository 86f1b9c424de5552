"""Throwaway plugin for the role wizard tests: declares one privilege at every level, and one
that exists only at the provider level."""

from core import hookimpl
from core.registry import PluginMeta, Privilege

PLUGIN = PluginMeta(name="rw_extra", title="Role wizard test privileges", version="0.0.1")


@hookimpl
def register_privileges():
    return [
        Privilege("extra.use", "Use the extra feature", "Extra", description="Test privilege."),
        Privilege("extra.admin", "Administer the extra feature", "Extra", ("provider",)),
    ]
