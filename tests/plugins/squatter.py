"""A plugin whose model takes a table without its name in front (``invoice``, a core table's
name): the host refuses it at start-up, naming plugin, model and table."""

from tests.plugins._table_taker import taking

PLUGIN, register_models = taking("squatter", "Ledger", "invoice")
