"""How the reseller_accounts tables came to be, one step per change, applied in order by the
core. Never edit a released step: append a new one (``billhive migrate --draft
reseller_accounts`` prints the step that turns the tables into the current models).

1. the tables as release 0.1.0 made them (``reseller_settings``, ``reseller_wholesale_link``),
   from frozen copies of the models; on an install whose tables the plugin made before it
   declared migrations, nothing changes;
2. the tables carry the plugin's name (``reseller_accounts_settings``,
   ``reseller_accounts_wholesale_link``), with their indexes; rows and keys stay;
3. no placeholder rows in the core's subscriptions: the "anchor" subscriptions 0.1.0 gave
   each reseller are deleted (``charges_since`` does their work now).
"""

from __future__ import annotations

import logging

import peewee as pw

from core.kit import (
    Account,
    Coverage,
    InvoiceLine,
    PricePlan,
    Subscription,
    UsageRecord,
    migrations,
)

log = logging.getLogger("billhive.plugins.reseller_accounts")


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
    migrations.rename_table(migrator, "reseller_settings", "reseller_accounts_settings")
    migrations.rename_table(migrator, "reseller_wholesale_link", "reseller_accounts_wholesale_link")


#: the external id of the placeholder subscriptions 0.1.0 wrote (step 3 deletes them)
ANCHOR = "reseller-wholesale-anchor"


def drop_wholesale_anchors(migrator):
    """0.2.0: the plugin writes no placeholder rows into the core's subscriptions.

    Release 0.1.0 gave each reseller, on linking a plan, one "anchor" subscription to the
    wholesale plan (external id ``reseller-wholesale-anchor``, quantity 0, start == end: active
    no day, never billed) only so that a bill run billed the reseller from its customers'
    first day; the ``charges_since`` hook says that day now. Each anchor is deleted; a row
    with that external id that is not one (another account type, a day of service, billed,
    or with usage, invoice lines or coverage of its own) is kept and logged."""
    rows = list(
        Subscription.select(Subscription, Account.type)
        .join(Account, on=(Subscription.account == Account.id))
        .where(Subscription.external_id == ANCHOR)
        .objects()
    )
    if not rows:
        return
    ids = [row.id for row in rows]
    sources = {f"{kind}:{i}" for i in ids for kind in ("subscription", "usage")}
    used = {
        *(u.subscription_id for u in UsageRecord.select(UsageRecord.subscription)
          .where(UsageRecord.subscription.in_(ids))),
        *(int(line.source.split(":")[1]) for line in InvoiceLine.select(InvoiceLine.source)
          .where(InvoiceLine.source.in_(sorted(sources)))),
        *(int(c.key.split(":")[1]) for c in Coverage.select(Coverage.key)
          .where(Coverage.key.in_([f"subscription:{i}" for i in ids]))),
    }  # fmt: skip
    anchors = []
    for row in rows:
        if (row.type == "reseller" and row.start == row.end and not row.quantity
                and row.billed_through is None and row.id not in used):  # fmt: skip
            anchors.append(row.id)
        else:
            log.warning("reseller_accounts migration 3: subscription %s has the anchors' "
                        "external id but is not one; kept", row.id)  # fmt: skip
    for i in range(0, len(anchors), 500):
        Subscription.delete().where(Subscription.id.in_(anchors[i : i + 500])).execute()
    log.info("reseller_accounts migration 3: %d anchor subscriptions deleted", len(anchors))


MIGRATIONS = [(1, create_tables), (2, tables_carry_the_plugin_name), (3, drop_wholesale_anchors)]
