"""Tables of the psa_mapping plugin.

* ``PsaConnection``: the ConnectWise Manage site of one account (a provider or reseller that
  runs ConnectWise). Keys are stored encrypted (Fernet, key derived from the instance's
  SECRET_KEY) and only ever shown back masked.
* ``CompanyLink``: a customer account linked to a ConnectWise company and the agreement its
  quantities are pushed to. A suggestion is a link with ``confirmed_at`` unset; only a
  person's confirmation makes it active — nothing is pushed for an unconfirmed link.
* ``PsaMapping``: one billing mapping (the document's Billing Setup row): a Billhive service
  (product code of the account's catalog), its type, the ConnectWise catalog item, the unique
  ID/plan and the level. ``source`` is ``billhive`` for mappings made here; anything else was
  set up by another source and is read-only.
* ``SyncRun`` / ``SyncItem``: a sync and each pushed (customer, mapping) with its outcome.
"""

from __future__ import annotations

import peewee as pw

from core.db import BaseModel, JSONField, utcnow
from core.models import Account, User

MAPPING_TYPES = {
    "per_unit": "Per unit (the quantity invoiced for the service)",
    "per_account": "Per account (1 whenever the service is invoiced)",
}
ALL_PLANS = "*"
OUTCOMES = ("pending", "created", "updated", "unchanged", "failed", "uncertain", "superseded")


class PsaConnection(BaseModel):
    account = pw.ForeignKeyField(Account, unique=True, backref="+", on_delete="CASCADE")
    site_url = pw.CharField(max_length=500)
    company_id = pw.CharField(max_length=100)
    public_key_enc = pw.TextField()
    private_key_enc = pw.TextField()
    client_id_enc = pw.TextField()
    timeout = pw.FloatField(default=10.0)
    max_retries = pw.IntegerField(default=3)
    backoff = pw.FloatField(default=0.5)
    last_test_at = pw.DateTimeField(null=True)
    last_test_ok = pw.BooleanField(null=True)
    last_test_message = pw.TextField(default="")
    updated_at = pw.DateTimeField(default=utcnow)
    updated_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")


class CompanyLink(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")  # connection owner
    customer = pw.ForeignKeyField(Account, unique=True, backref="+", on_delete="CASCADE")
    psa_company_id = pw.IntegerField()
    psa_company_name = pw.CharField(max_length=300, default="")
    psa_company_identifier = pw.CharField(max_length=100, default="")
    agreement_id = pw.IntegerField(null=True)
    agreement_name = pw.CharField(max_length=300, default="")
    suggested_at = pw.DateTimeField(default=utcnow)
    confirmed_at = pw.DateTimeField(null=True)
    confirmed_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


class PsaMapping(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    product_code = pw.CharField(max_length=100, index=True)
    mapping_type = pw.CharField(max_length=40)
    psa_product = pw.CharField(max_length=100)  # ConnectWise catalog identifier
    psa_product_name = pw.CharField(max_length=300, default="")
    unique_id = pw.CharField(max_length=100, default=ALL_PLANS)
    level = pw.IntegerField(default=0)
    source = pw.CharField(max_length=60, default="billhive")
    created_at = pw.DateTimeField(default=utcnow)
    created_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")

    class Meta:
        indexes = ((("account", "product_code", "mapping_type", "unique_id"), True),)

    @property
    def read_only(self) -> bool:
        return self.source != "billhive"


class SyncRun(BaseModel):
    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    trigger = pw.CharField(max_length=40)  # invoice_finalized, cli, panel, api
    invoice_id = pw.IntegerField(null=True)
    started_at = pw.DateTimeField(default=utcnow)
    finished_at = pw.DateTimeField(null=True)
    status = pw.CharField(max_length=20, default="running")  # running, ok, partial, failed
    message = pw.TextField(default="")
    counts = JSONField(default=dict)


class SyncItem(BaseModel):
    """One (customer, mapping) quantity for one invoice. Failed items stay ``failed`` until a
    later sync pushes them (their run then changes) — nothing is dropped."""

    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")  # connection owner
    customer = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    run = pw.ForeignKeyField(SyncRun, null=True, backref="items", on_delete="SET NULL")
    mapping = pw.ForeignKeyField(PsaMapping, null=True, backref="+", on_delete="SET NULL")
    invoice_id = pw.IntegerField(index=True)
    product_code = pw.CharField(max_length=100)
    psa_product = pw.CharField(max_length=100)
    unique_id = pw.CharField(max_length=100, default=ALL_PLANS)
    level = pw.IntegerField(default=0)
    quantity = pw.CharField(max_length=40)  # exact decimal text
    agreement_id = pw.IntegerField(null=True)
    external_key = pw.CharField(max_length=100)
    outcome = pw.CharField(max_length=20, default="pending", index=True)
    message = pw.TextField(default="")
    addition_id = pw.IntegerField(null=True)
    attempts = pw.IntegerField(default=0)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("invoice_id", "mapping"), True),)


MODELS = [PsaConnection, CompanyLink, PsaMapping, SyncRun, SyncItem]
