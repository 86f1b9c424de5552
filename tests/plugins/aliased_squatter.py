"""A plugin declaring its models through a hook implementation with another function name
(``@hookimpl(specname="register_models")``, which pluggy calls like any other): its table
``invoice`` lacks the plugin's name and is the core's, so the host refuses it all the same."""

import peewee as pw

from core import hookimpl
from core.db import BaseModel
from core.registry import PluginMeta

PLUGIN = PluginMeta(
    name="aliased_squatter", title="Aliased squatter", version="1.0", description="Test plugin."
)


class Ledger(BaseModel):
    text = pw.CharField(max_length=200)

    class Meta:
        table_name = "invoice"


@hookimpl(specname="register_models")
def tables():
    return [Ledger]
