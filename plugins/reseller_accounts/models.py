"""The plugin's own table: per-provider reseller settings (kept when the plugin is disabled)."""

from __future__ import annotations

import peewee as pw

from core.db import BaseModel, utcnow
from core.models import Account


class ResellerSettings(BaseModel):
    """Settings the provider (the root account) makes for its resellers."""

    provider = pw.ForeignKeyField(Account, unique=True, backref="+", on_delete="CASCADE")
    allow_sub_resellers = pw.BooleanField(default=False)
    changed_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "reseller_settings"


MODELS = [ResellerSettings]
