"""A plugin named ``billing`` whose model takes ``billing_units_team``, a table of the
billing_units plugin: refused at start-up when both are installed, naming the table and
its owner."""

import peewee as pw

from core import hookimpl
from core.db import BaseModel
from core.registry import PluginMeta

PLUGIN = PluginMeta(name="billing", title="Billing", version="1.0", description="Test plugin.")


class Crew(BaseModel):
    name = pw.CharField(max_length=200)

    class Meta:
        table_name = "billing_units_team"


@hookimpl
def register_models():
    return [Crew]
