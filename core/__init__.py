"""Billhive core: the platform every add-on plugs into.

Plugins import ``hookimpl`` from here and nothing else is required to write one::

    from core import hookimpl

    @hookimpl
    def register_privileges():
        return [Privilege("reports.view", "View reports", "Reports", ("provider",))]
"""

import pluggy

PROJECT = "billhive"
HOOK_API_VERSION = 3

hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["hookimpl", "PROJECT", "HOOK_API_VERSION"]
