"""What the plugins that take another's table (squatter, invoice, billing) share: a plugin
``name`` whose one model ``model`` is on the table ``table``. The host refuses each at
start-up, naming the table and why (tests/test_core_plugins.py)."""

import peewee as pw

from core import hookimpl
from core.db import BaseModel
from core.registry import PluginMeta


def taking(name: str, model: str, table: str):
    """``(PLUGIN, register_models)`` for the plugin module to expose."""
    meta = type("Meta", (), {"table_name": table})
    taken = type(model, (BaseModel,), {"text": pw.CharField(max_length=200), "Meta": meta,
                                       "__module__": f"tests.plugins.{name}"})  # fmt: skip

    @hookimpl
    def register_models():
        return [taken]

    return PluginMeta(name=name, title=name.title(), version="1.0", description="Test."), (
        register_models
    )
