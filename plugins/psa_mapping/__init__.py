"""PSA mapping (ConnectWise Manage): Billing mappings pushed to ConnectWise Manage through a billing connector."""

from core import hookimpl
from core.registry import BillingConnector, MenuItem, PluginMeta, Privilege

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
    from plugins.psa_mapping import connector
    from plugins.psa_mapping.service import CODE, ConnectionSettingsSchema, clean

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
            panel="psa.billing",
        )
    ]


@hookimpl
def register_blueprints():
    from plugins.psa_mapping.api import blueprint as api_bp
    from plugins.psa_mapping.views import blueprint as panel_bp

    return [panel_bp, api_bp]


@hookimpl
def register_menu_items():
    return [
        MenuItem("PSA billing", "psa.billing", "psa.view", where="account", order=60, levels=(P, R))
    ]


@hookimpl
def register_commands():
    from plugins.psa_mapping.cli import psa

    return [psa]


@hookimpl
def dashboard_alerts(user):
    """Failed PSA sync items of the connections in the user's subtree (psa.view)."""
    from flask import url_for

    from core import rbac
    from core.connectors.models import SyncItem
    from core.registry import DashboardAlert
    from plugins.psa_mapping.service import CODE

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
    url = url_for("psa.sync_log", account_id=latest[0].account_id)
    return [DashboardAlert("Failed PSA syncs", count, url, lines)]
