"""PSA mapping (ConnectWise Manage): Billing mappings pushed to ConnectWise Manage through a billing connector."""

from flask import url_for

from core.kit import (
    BillingConnector,
    DashboardAlert,
    MenuItem,
    PluginMeta,
    Privilege,
    SyncItem,
    hookimpl,
    rbac,
)
from plugins.psa_mapping import api, views
from plugins.psa_mapping.cli import psa
from plugins.psa_mapping.service import connector
from plugins.psa_mapping.service.integration import CODE, ConnectionSettingsSchema, clean

PLUGIN = PluginMeta(
    name="psa_mapping",
    title="PSA mapping (ConnectWise Manage)",
    version="0.1.0",
    license_feature="BH-PSA",
    description="Billing mappings pushed to ConnectWise Manage through a billing connector.",
    api_version=2,  # dashboard_alerts
)

P, R, C = "provider", "reseller", "customer"


@hookimpl
def register_privileges():
    return [
        Privilege(
            "psa.view",
            "View PSA billing",
            "PSA",
            (P, R, C),
            "See ConnectWise mappings, company links and the sync log.",
        ),
        Privilege(
            "psa.edit",
            "Edit PSA billing",
            "PSA",
            (P, R),
            "Edit ConnectWise connection settings, mappings and company links; run syncs.",
        ),
    ]


@hookimpl
def register_billing_connectors():
    return [
        BillingConnector(
            CODE,
            "ConnectWise Manage",
            ConnectionSettingsSchema,
            test=connector.test,
            push=connector.push,
            items=connector.items,
            session=connector.session,
            clean=clean,
            reconcile=connector.reconcile,
            report=connector.report,
            links=True,
            panel="psa_mapping.billing",
            view_privilege="psa.view",
            edit_privilege="psa.edit",
        )
    ]


@hookimpl
def register_blueprints():
    return [views.blueprint, api.blueprint]


@hookimpl
def register_menu_items():
    return [
        MenuItem(
            "PSA billing",
            "psa_mapping.billing",
            "psa.view",
            where="account",
            order=60,
            levels=(P, R),
        )
    ]


@hookimpl
def register_commands():
    return [psa]


@hookimpl
def dashboard_alerts(user):
    """Failed PSA sync items of the connections in the user's subtree (psa.view)."""
    if not rbac.has(user, "psa.view"):
        return []
    failed = rbac.scoped(SyncItem.select(), SyncItem.account, user).where(
        (SyncItem.connector == CODE) & (SyncItem.outcome == "failed")
    )
    count = failed.count()
    if not count:
        return []
    latest = list(failed.order_by(SyncItem.id.desc()).limit(3))
    lines = tuple(f"invoice {i.invoice_id}, {i.remote_product}: {i.message[:120]}" for i in latest)
    url = url_for("psa_mapping.sync_log", account_id=latest[0].account_id)
    return [DashboardAlert("Failed PSA syncs", count, url, lines)]
