"""Declares the privilege ``reports.view``; so does ``dup_a``: start-up must refuse both."""

from core import hookimpl
from core.registry import PluginMeta, Privilege

PLUGIN = PluginMeta(name="dup_b", title="Duplicate B", version="1.0")


@hookimpl
def register_privileges():
    return [Privilege("reports.view", "View reports", "Reports")]
