"""A plugin named ``invoice`` whose model takes ``invoice_line``, the core's invoice lines
table: the name passes the prefix rule, but the table is the core's, so the host refuses it
at start-up, naming the table and its owner."""

from tests.plugins._table_taker import taking

PLUGIN, register_models = taking("invoice", "Line", "invoice_line")
