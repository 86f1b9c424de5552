"""The plugin's tables (named reseller_accounts_*, kept when the plugin is disabled): per-provider
reseller settings and wholesale links. Every change here needs a step in migrations.py."""

from __future__ import annotations

import peewee as pw

from core.kit import Account, BaseModel, PricePlan, utcnow


class ResellerSettings(BaseModel):
    """Settings the provider (the root account) makes for its resellers."""

    provider = pw.ForeignKeyField(Account, unique=True, backref="+", on_delete="CASCADE")
    allow_sub_resellers = pw.BooleanField(default=False)
    changed_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "reseller_accounts_settings"


MODELS = [ResellerSettings]


class WholesaleLink(BaseModel):
    """A reseller's retail price plan sold on the provider's (its parent's) wholesale plan:
    what the reseller's customers consume on ``retail_plan`` is invoiced to the reseller at
    ``wholesale_plan``'s prices."""

    retail_plan = pw.ForeignKeyField(PricePlan, unique=True, backref="+", on_delete="CASCADE")
    wholesale_plan = pw.ForeignKeyField(PricePlan, backref="+", on_delete="RESTRICT")
    reseller = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "reseller_accounts_wholesale_link"


MODELS.append(WholesaleLink)
