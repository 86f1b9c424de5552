"""Declares the privilege ``reports.view``; so does ``dup_b``: start-up must refuse both."""

from core import hookimpl
from core.registry import PluginMeta, Privilege

PLUGIN = PluginMeta(name="dup_a", title="Duplicate A", version="1.0")


@hookimpl
def register_privileges():
    return [Privilege("reports.view", "View reports", "Reports")]
