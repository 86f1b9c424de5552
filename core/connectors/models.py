"""Tables of the billing connectors (core tables; ``connector`` is a connector's code).

* ``ConnectorSettings``: the settings of one connector for one account (a provider or
  reseller). ``values`` holds the plain fields; ``secrets`` the secret ones as one Fernet
  token (:mod:`core.connectors.secrets`), never shown back.
* ``ConnectorMapping``: a Billhive service (product code of the account's catalog), its
  mapping type, the outside system's product, the unique ID/plan and the level. ``source``
  is ``billhive`` for mappings made here; anything else was set up elsewhere: read-only.
* ``ConnectorLink``: a customer linked to the outside system's record (``remote_id``, e.g.
  a company) and the target its items go to (``target_id``, e.g. an agreement). A link
  counts only once a person confirmed it (``confirmed_at``).
* ``SyncRun`` / ``SyncItem``: a sync and each item it pushed with its outcome (the log).
"""

from __future__ import annotations

import peewee as pw

from core.db import BaseModel, JSONField, utcnow
from core.models import Account, User

ALL_PLANS = "*"
OUTCOMES = ("pending", "created", "updated", "unchanged", "failed", "uncertain", "superseded")


class ConnectorSettings(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    connector = pw.CharField(max_length=60)
    values = JSONField(default=dict)
    secrets = pw.TextField(default="")
    last_test_at = pw.DateTimeField(null=True)
    last_test_ok = pw.BooleanField(null=True)
    last_test_message = pw.TextField(default="")
    updated_at = pw.DateTimeField(default=utcnow)
    updated_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")

    class Meta:
        table_name = "connector_settings"
        indexes = ((("account", "connector"), True),)


class ConnectorMapping(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    connector = pw.CharField(max_length=60)
    product_code = pw.CharField(max_length=100, index=True)
    mapping_type = pw.CharField(max_length=40)
    remote_product = pw.CharField(max_length=100)
    remote_product_name = pw.CharField(max_length=300, default="")
    unique_id = pw.CharField(max_length=100, default=ALL_PLANS)
    level = pw.IntegerField(default=0)
    source = pw.CharField(max_length=60, default="billhive")
    created_at = pw.DateTimeField(default=utcnow)
    created_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")

    class Meta:
        table_name = "connector_mappings"
        indexes = ((("account", "connector", "product_code", "mapping_type", "unique_id"), True),)

    @property
    def read_only(self) -> bool:
        return self.source != "billhive"


class ConnectorLink(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")  # settings owner
    connector = pw.CharField(max_length=60)
    customer = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    remote_id = pw.IntegerField()
    remote_name = pw.CharField(max_length=300, default="")
    remote_identifier = pw.CharField(max_length=100, default="")
    target_id = pw.IntegerField(null=True)
    target_name = pw.CharField(max_length=300, default="")
    suggested_at = pw.DateTimeField(default=utcnow)
    confirmed_at = pw.DateTimeField(null=True)
    confirmed_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")

    class Meta:
        table_name = "connector_links"
        indexes = ((("connector", "customer"), True),)

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


class SyncRun(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    connector = pw.CharField(max_length=60)
    trigger = pw.CharField(max_length=40)  # invoice_finalized, cli, panel, api
    invoice_id = pw.IntegerField(null=True)
    started_at = pw.DateTimeField(default=utcnow)
    finished_at = pw.DateTimeField(null=True)
    status = pw.CharField(max_length=20, default="running")  # running, ok, partial, failed
    message = pw.TextField(default="")
    counts = JSONField(default=dict)

    class Meta:
        table_name = "connector_sync_runs"


class SyncItem(BaseModel):
    """One thing pushed for one invoice (``core.registry.PushItem``). Failed and uncertain
    items stay so until a later sync pushes them (their run then changes): nothing is
    dropped."""

    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")  # settings owner
    connector = pw.CharField(max_length=60)
    customer = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    run = pw.ForeignKeyField(SyncRun, null=True, backref="items", on_delete="SET NULL")
    mapping = pw.ForeignKeyField(ConnectorMapping, null=True, backref="+", on_delete="SET NULL")
    invoice_id = pw.IntegerField(index=True)
    key = pw.CharField(max_length=100)
    product_code = pw.CharField(max_length=100, default="")
    remote_product = pw.CharField(max_length=100, default="")
    unique_id = pw.CharField(max_length=100, default=ALL_PLANS)
    level = pw.IntegerField(default=0)
    quantity = pw.CharField(max_length=40, default="")  # exact decimal text
    target_id = pw.IntegerField(null=True)
    external_key = pw.CharField(max_length=200)
    payload = JSONField(default=dict)
    outcome = pw.CharField(max_length=20, default="pending", index=True)
    message = pw.TextField(default="")
    remote_id = pw.IntegerField(null=True)
    attempts = pw.IntegerField(default=0)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "connector_sync_items"
        indexes = ((("connector", "invoice_id", "key"), True),)


CONNECTOR_MODELS = [ConnectorSettings, ConnectorMapping, ConnectorLink, SyncRun, SyncItem]
