"""A plugin written for a hook API newer than this Billhive provides."""

from core.registry import PluginMeta

PLUGIN = PluginMeta(name="future", title="From the future", version="9.0", api_version=99)
