"""The core's own hook implementations: an essential plugin like any other, registered first.

Declaring the core's privileges, account types and default roles through the same hooks as
plugins keeps one code path for the catalog, and lets a plugin see the whole of it.
"""

from __future__ import annotations

from core import hookimpl
from core.registry import (
    ALL,
    AccountType,
    DefaultRole,
    MenuItem,
    PluginMeta,
    Privilege,
)

PLUGIN = PluginMeta(
    name="core",
    title="Billhive core",
    version="0.1.0",
    description="Accounts, users, roles, plugins, licences, audit.",
    essential=True,
    api_version=2,  # dashboard_alerts, invoice_overdue
)

P, R, C = "provider", "reseller", "customer"

CORE_PRIVILEGES = [
    Privilege("accounts.view", "View accounts", "Accounts", (P, R, C), "See accounts below yours."),
    Privilege(
        "accounts.manage",
        "Manage accounts",
        "Accounts",
        (P, R, C),
        "Create and edit child accounts.",
    ),
    Privilege(
        "accounts.billing_terms",
        "Set billing terms",
        "Accounts",
        (P, R),
        "Set currency, bill cycle day, tax rate, payment terms and the reseller profile of "
        "accounts below yours (never of your own account).",
    ),
    Privilege(
        "accounts.lifecycle",
        "Suspend and close accounts",
        "Accounts",
        (P, R),
        "Suspend, reactivate and close accounts below yours (never your own).",
    ),
    Privilege("users.view", "View users", "Users", (P, R, C), "See users and their roles."),
    Privilege("users.manage", "Manage users", "Users", (P, R, C), "Create users, assign roles."),
    Privilege(
        "users.impersonate",
        "Log in as users",
        "Users",
        (P, R),
        "Act as a user of an account below yours ('Log in as'), audited, with a way back.",
    ),
    Privilege("roles.manage", "Manage roles", "Users", (P, R, C), "Create, edit, delete roles."),
    Privilege("catalog.view", "View catalog", "Catalog", (P, R), "See products and price plans."),
    Privilege(
        "catalog.manage", "Manage catalog", "Catalog", (P, R), "Edit products and price plans."
    ),
    Privilege("billing.view", "View billing", "Billing", (P, R, C), "See invoices and balances."),
    Privilege("billing.edit", "Edit Billing", "Billing", (P, R, C), "Access to the Billing page."),
    Privilege("invoices.issue", "Issue invoices", "Billing", (P, R, C), "Issue, void, credit."),
    Privilege("payments.record", "Record payments", "Billing", (P, R, C), "Record payments."),
    Privilege("billruns.run", "Run bill runs", "Bill runs", (P, R), "Start bill runs."),
    Privilege("plugins.manage", "Manage plugins", "Operations", (P,), "Enable, disable add-ons."),
    Privilege("licenses.manage", "Manage licences", "Operations", (P,), "Install licences."),
    Privilege("audit.view", "View audit log", "Operations", (P,), "Read the audit log."),
    Privilege(
        "servicedesk.submit",
        "Submit service desk tickets",
        "Service desk",
        (R, C),
        "What the Service Desk Only role holds.",
    ),
]

CUSTOMER_MANAGEMENT = (
    "accounts.view",
    "accounts.manage",
    "accounts.billing_terms",
    "accounts.lifecycle",
    "users.view",
    "users.manage",
    "roles.manage",
    "catalog.view",
    "billing.view",
    "billing.edit",
    "invoices.issue",
    "payments.record",
)


@hookimpl
def register_privileges():
    return CORE_PRIVILEGES


@hookimpl
def register_account_types():
    return [
        AccountType("provider", "Provider", P, None, child_types=("customer",)),
        AccountType("customer", "Standard", C, None, parent_types=("provider",)),
    ]


@hookimpl
def register_default_roles():
    return [
        DefaultRole(P, "full_access", "Full Access", "Full access role", ALL),
        DefaultRole(R, "full_access", "Full Access", "Full access role", ALL),
        DefaultRole(
            R,
            "customer_full_access",
            "Customer Full Access",
            "Role granting full access to managing your customers",
            CUSTOMER_MANAGEMENT,
        ),
        DefaultRole(
            R,
            "service_desk_only",
            "Service Desk Only",
            "Only able to submit tickets to the service desk",
            ("servicedesk.submit",),
        ),
        DefaultRole(C, "full_access", "Full Access", "Full access role", ALL),
    ]


@hookimpl
def register_menu_items():
    return [
        MenuItem("Dashboard", "panel.home", None, order=5),
        MenuItem("Accounts", "panel.accounts", "accounts.view", order=10),
        MenuItem("Users", "find.users_page", "users.view", order=12),
        MenuItem("Catalog", "billing.catalog_page", "catalog.view", order=20),
        MenuItem("Subscriptions", "billing.subscriptions_page", "billing.view", order=25),
        MenuItem("Invoices", "billing.invoices_page", "billing.view", order=30),
        MenuItem("Bill runs", "billing.runs_page", "billruns.run", order=35),
        MenuItem("Plugins & Licence", "panel.plugins", "plugins.manage", order=90),
        MenuItem("Audit log", "panel.audit", "audit.view", order=95),
        MenuItem("Outbox", "mail.outbox_page", "audit.view", order=96),
        MenuItem("Overview", "panel.account", None, where="account", order=0),
        MenuItem("Users", "panel.account_users", "users.view", where="account", order=10),
        # shown to whoever sees one of the Billing page's sub-tabs (core.panel.jinja)
        MenuItem("Billing", "billing_account.index", "billing.edit", where="account", order=45),
        MenuItem(
            "Connectors",
            "connectors.index",
            "billing.edit",
            where="account",
            order=62,
            levels=(P, R),
        ),  # fmt: skip
        MenuItem(
            "E-mail templates",
            "mail.templates_page",
            "billing.edit",
            where="billing",
            order=75,
            levels=(P, R),
        ),  # fmt: skip
    ]


def billing_coverage(migrator, db):
    from core.billing.coverage import migrate_coverage

    migrate_coverage(migrator, db)


def bill_run_heartbeat(migrator, db):
    from core.billing.runs.records import add_heartbeat_column

    add_heartbeat_column(migrator, db)


def login_session_last_seen(migrator, db):
    from core.models import add_session_last_seen

    add_session_last_seen(migrator, db)


def invoice_parties_backfill(migrator, db):
    from core.billing.invoicing.parties import backfill

    backfill(migrator, db)


def list_indexes(migrator, db):
    from core.find.indexes import add_list_indexes

    add_list_indexes(migrator, db)


def connectors_from_psa_mapping(migrator, db):
    """The psa_mapping plugin's own tables move into the connector tables (core.connectors)."""
    from core.connectors.migrations import move_psa_mapping

    move_psa_mapping(migrator, db)


def ledger_backfill(migrator, db):
    """Invoices issued before the ledger existed get their entries (core.billing.ledger)."""
    from core.billing.ledger.entries import backfill

    backfill()


def usage_indexes(migrator, db):
    """Usage records lose the two indexes no query uses (core.billing.models.UsageRecord)."""
    for name in ("usage_record_account_id", "usage_record_occurred_at"):
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')


# the core's own schema history (core.migrations): applied at start-up, after the models'
# missing tables are created; each step also runs (idempotently) on a brand-new database
MIGRATIONS = [
    (1, billing_coverage),
    (2, bill_run_heartbeat),
    (3, login_session_last_seen),
    (4, invoice_parties_backfill),
    (7, list_indexes),  # 5 and 6 are reserved for work landing in parallel (issue 19/20)
    (8, connectors_from_psa_mapping),
    (9, ledger_backfill),
    (10, usage_indexes),
]


@hookimpl
def register_models():
    from core.billing.invoicing.parties import PARTY_MODELS
    from core.billing.models import BILLING_MODELS
    from core.connectors.models import CONNECTOR_MODELS
    from core.mail.models import MAIL_MODELS
    from core.models import CORE_MODELS

    return CORE_MODELS + BILLING_MODELS + PARTY_MODELS + MAIL_MODELS + CONNECTOR_MODELS


@hookimpl
def dashboard_alerts(user):
    """Failed e-mail sends (core.mail) of the user's subtree, for holders of billing.view."""
    from flask import url_for

    from core import rbac
    from core.mail.models import MailMessage
    from core.registry import DashboardAlert

    if not rbac.has(user, "billing.view"):
        return []
    failed = rbac.scoped(MailMessage.select(), MailMessage.account, user).where(
        MailMessage.status == "failed"
    )
    count = failed.count()
    if not count:
        return []
    latest = list(failed.order_by(MailMessage.id.desc()).limit(3))
    lines = tuple(f"{m.subject or m.event} to {', '.join(m.recipients or []) or 'nobody'}: "
                  f"{(m.last_error or '')[:120]}" for m in latest)  # fmt: skip
    url = (url_for("mail.outbox_page", status="failed") if rbac.has(user, "audit.view")
           else url_for("mail.message_page", message_id=latest[0].id))  # fmt: skip
    return [DashboardAlert("Failed e-mail sends", count, url, lines)]


@hookimpl
def invoice_finalized(invoice):
    """Push the issued invoice through every enabled billing connector (core.connectors)."""
    from core.connectors.sync import on_invoice_finalized

    on_invoice_finalized(invoice)


@hookimpl
def register_invoice_formats():
    from core.billing.invoicing import raw
    from core.registry import InvoiceFormat

    return [InvoiceFormat("RAW", "RAW (CSV)", "text/csv", "csv", raw.render)]
