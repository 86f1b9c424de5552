"""A plugin whose model takes a table without its name in front (``invoice``, a core table's
name): the host refuses it at start-up, naming plugin, model and table."""

import peewee as pw

from core import hookimpl
from core.db import BaseModel
from core.registry import PluginMeta

PLUGIN = PluginMeta(name="squatter", title="Squatter", version="1.0", description="Test plugin.")


class Ledger(BaseModel):
    text = pw.CharField(max_length=200)

    class Meta:
        table_name = "invoice"


@hookimpl
def register_models():
    return [Ledger]
