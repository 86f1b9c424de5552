"""A plugin named ``invoice`` whose model takes ``invoice_line``, the core's invoice lines
table: the name passes the prefix rule, but the table is the core's, so the host refuses it
at start-up, naming the table and its owner."""

import peewee as pw

from core import hookimpl
from core.db import BaseModel
from core.registry import PluginMeta

PLUGIN = PluginMeta(name="invoice", title="Invoice", version="1.0", description="Test plugin.")


class Line(BaseModel):
    text = pw.CharField(max_length=200)

    class Meta:
        table_name = "invoice_line"


@hookimpl
def register_models():
    return [Line]
