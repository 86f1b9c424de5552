"""A plugin named ``billing`` whose model takes ``billing_units_team``, a table of the
billing_units plugin: refused at start-up when both are installed, naming the table and
its owner."""

from tests.plugins._table_taker import taking

PLUGIN, register_models = taking("billing", "Crew", "billing_units_team")
