"""The plugin host of the app serving this request, task or command.

Each application has one :class:`core.plugins.PluginHost` (``app.extensions["billhive"]``);
code that runs inside the app (a view, a service, a queue task, a ``billhive`` command) asks
for it here instead of reaching into the app. This module imports nothing of the core, so any
module may use it without tying itself to the plugin machinery.
"""

from __future__ import annotations

from flask import current_app


def host():
    """The :class:`core.plugins.PluginHost` of the current app."""
    return current_app.extensions["billhive"].host


def require_licensed(plugin: str) -> None:
    """Refuse new work of ``plugin`` (403, naming the feature) while its licence does not
    cover it; what it stored stays readable."""
    host().require_licensed(plugin)
