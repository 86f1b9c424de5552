"""How the reseller_accounts tables came to be, one step per change, applied in order by the
core. Never edit a released step: append a new one (``billhive migrate --draft
reseller_accounts`` prints the step that turns the tables into the current models).

1. the tables as release 0.1.0 made them (``reseller_settings``, ``reseller_wholesale_link``),
   from frozen copies of the models; on an install whose tables the plugin made before it
   declared migrations, nothing changes;
2. the tables carry the plugin's name (``reseller_accounts_settings``,
   ``reseller_accounts_wholesale_link``), with their indexes; rows and keys stay.
"""

from __future__ import annotations

import peewee as pw

from core.billing.models import PricePlan
from core.migrations import rename_table
from core.models import Account


def create_tables(migrator):
    """0.1.0: the tables as they were then (kept if they exist already)."""

    class Frozen(pw.Model):
        class Meta:
            database = migrator.database
            legacy_table_names = False  # as core.db.BaseModel: index names start with the table

    class ResellerSettings(Frozen):
        provider = pw.ForeignKeyField(Account, unique=True, backref="+", on_delete="CASCADE")
        allow_sub_resellers = pw.BooleanField()
        changed_at = pw.DateTimeField()

        class Meta:
            table_name = "reseller_settings"

    class WholesaleLink(Frozen):
        retail_plan = pw.ForeignKeyField(PricePlan, unique=True, backref="+", on_delete="CASCADE")
        wholesale_plan = pw.ForeignKeyField(PricePlan, backref="+", on_delete="RESTRICT")
        reseller = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "reseller_wholesale_link"

    migrator.database.create_tables([ResellerSettings, WholesaleLink], safe=True)


def tables_carry_the_plugin_name(migrator):
    """0.2.0: the tables start with the plugin's name (the host requires it)."""
    rename_table(migrator, "reseller_settings", "reseller_accounts_settings")
    rename_table(migrator, "reseller_wholesale_link", "reseller_accounts_wholesale_link")


MIGRATIONS = [(1, create_tables), (2, tables_carry_the_plugin_name)]
