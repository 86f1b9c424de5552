"""A small but complete plugin: it implements every hook of ``core.hookspecs`` so tests can
check enabling, disabling, routes, menus, data and hook calls against one real plugin.

``CALLS`` records every behaviour hook call as ``(hook, kwargs)``.
"""

from __future__ import annotations

from decimal import Decimal

import click
import peewee as pw
from flask import Blueprint
from marshmallow import Schema, fields, validate

from core import hookimpl
from core.db import BaseModel
from core.registry import (
    AccountType,
    BillingConnector,
    Charge,
    DashboardAlert,
    DefaultRole,
    InvoiceFormat,
    InvoiceOptions,
    MenuItem,
    PluginMeta,
    Privilege,
    PushItem,
    PushResult,
)

PLUGIN = PluginMeta(
    name="notes", title="Notes", version="1.2.3", description="Test plugin.", api_version=3
)  # invoice_overdue

CALLS: list[tuple[str, dict]] = []


class Note(BaseModel):
    text = pw.CharField(max_length=200)

    class Meta:
        table_name = "notes_note"


class AgencyProfile(Schema):
    agency_code = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$"))
    discount_percent = fields.Integer(load_default=0, validate=validate.Range(0, 50))


class ConnectorSettings(Schema):
    url = fields.Url(required=True)


blueprint = Blueprint("notes", __name__, url_prefix="/notes")


@blueprint.route("/")
def index():
    return "notes: " + ", ".join(n.text for n in Note.select().order_by(Note.id))


@hookimpl
def register_privileges():
    return [Privilege("notes.view", "View notes", "Notes", ("provider", "reseller"))]


@hookimpl
def register_account_types():
    return [
        AccountType(
            "agency",
            "Agency",
            "reseller",
            AgencyProfile,
            child_types=("customer",),
            parent_types=("provider",),
        )
    ]


def render_text(document: dict) -> bytes:
    return f"invoice {document.get('number', '?')}".encode()


@hookimpl
def register_invoice_formats():
    return [InvoiceFormat("TXT", "Plain text", "text/plain", "txt", render_text)]


@hookimpl
def register_billing_connectors():
    return [
        BillingConnector(
            "notebook",
            "Notebook",
            ConnectorSettings,
            test=lambda settings: f"reached {settings['url']}",
            items=lambda context: [PushItem("invoice", f"note:{context.invoice.id}")],
            push=lambda session, item: PushResult("created", 1, f"noted {item.external_key}"),
        )
    ]


@hookimpl
def register_models():
    return [Note]


@hookimpl
def register_blueprints():
    return [blueprint]


@hookimpl
def register_default_roles():
    return [DefaultRole("provider", "note_taker", "Note Taker", "Reads notes", ("notes.view",))]


@hookimpl
def register_menu_items():
    return [MenuItem("Notes", "notes.index", None, order=50)]


@hookimpl
def charges_for_period(account, period):
    CALLS.append(("charges_for_period", {"account": account, "period": period}))
    return [Charge("Note keeping", Decimal(2), Decimal("1.50"), unit="note")]


@hookimpl
def charges_since(account):
    CALLS.append(("charges_since", {"account": account}))
    return account.created_at.date()  # notes are kept from the account's creation on


@hookimpl
def account_created(account, actor):
    CALLS.append(("account_created", {"account": account, "actor": actor}))


@hookimpl
def account_updated(account, actor, before):
    CALLS.append(("account_updated", {"account": account, "actor": actor, "before": before}))


@hookimpl
def invoice_finalized(invoice):
    CALLS.append(("invoice_finalized", {"invoice": invoice}))


@hookimpl
def invoice_overdue(invoice, level):
    CALLS.append(("invoice_overdue", {"invoice": invoice, "level": level}))


@click.command("notes-count")
def notes_count():
    """How many notes are stored."""
    click.echo(f"{Note.select().count()} notes")


@hookimpl
def register_commands():
    return [notes_count]


@hookimpl
def dashboard_alerts(user):
    CALLS.append(("dashboard_alerts", {"user": user}))
    return [DashboardAlert("Unread notes", Note.select().count(), None, ("a note",))]


@hookimpl
def invoice_options(issuer, account, period):
    CALLS.append(("invoice_options", {"issuer": issuer, "account": account, "period": period}))
    return InvoiceOptions(create=True, formats=("TXT",))
