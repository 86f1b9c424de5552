"""The plugin API: everything a Billhive plugin may import, in one place.

A plugin (built in, under examples/, or a third party's) imports from ``core.kit`` and its
submodules and from nothing else of ``core`` or ``hostapp``; ``tests/test_layout_imports.py``
checks every plugin and what ``billhive new-plugin`` writes. What is here is kept working
across releases (``HOOK_API_VERSION``, docs/plugin-api-policy.md); the rest of the core may
move. Contents:

Declaring a plugin (docs/hooks.md)
    ``hookimpl``, ``HOOK_API_VERSION``, and what the ``register_*`` hooks return:
    ``PluginMeta``, ``Privilege``, ``AccountType``, ``DefaultRole``, ``MenuItem``,
    ``DashboardAlert``, ``InvoiceFormat``, ``InvoiceOptions``, ``BillingConnector``, ``Charge``;
    ``LEVELS`` and ``ALL`` (every privilege of a role's level).
The host
    ``host()`` (the plugin host of the app serving this request, task or command: ``call``,
    ``menu_items``, ``privileges``, ``is_enabled``, ``set_enabled``...),
    ``require_licensed(plugin)`` (403 naming the licence feature before new work of an add-on
    whose licence lapsed), ``migrations`` (each plugin's ``MIGRATIONS`` as applied: ``history``,
    ``plan``; ``rename_table`` for a step).
Storing data (peewee)
    ``BaseModel`` (every table's base), ``JSONField``, ``database`` (``atomic()``),
    ``utcnow()``, ``is_postgres()``, ``write_transaction()`` (a transaction that writes: on
    SQLite it takes the write lock at BEGIN, so ``lock_row`` guards there too),
    ``lock_row(Model, id)`` (a read-then-write's row, locked); the core's ``Account``, ``User``,
    ``Role``; the billing tables ``Product``, ``PricePlan``, ``Subscription``,
    ``UsageRecord``, ``Invoice``, ``InvoiceLine``, ``Coverage``.
Input and errors
    ``load(schema, payload)`` (a marshmallow schema's load; bad input is a 422
    ``ValidationFailed`` naming each field), ``marshmallow_errors``, the errors a person can act
    on (``BillhiveError``, ``ValidationFailed``, ``NotFound``, ``Forbidden``, ``Conflict``,
    ``LicenseRequired``), and the core's input fields ``Id``, ``Text``, ``Quantity``,
    ``Price``, ``MAX_INT32``.
The core's services (modules)
    ``rbac`` (privilege checks, what an actor may see: ``require``, ``has``, ``get_account``,
    ``visible_accounts``...), ``roles``, ``accounts`` (creating and changing accounts, billing
    terms), ``audit`` (``record``), ``outbound`` (HTTP to third parties, with the core's
    timeouts and checks), ``i18n``, ``clock`` (``today()`` in the instance's time zone),
    ``csv_export``.
Money, periods, billing
    Amounts are integer minor units plus ``Decimal``: ``ExactRatio``, ``parse_decimal``,
    ``to_decimal``, ``to_minor``, ``line_amount``, ``tiered_unit_price``, ``format_money``,
    ``exponent``, ``check_currency``, ``MoneyError``, the columns ``MinorUnitsField`` and
    ``DecimalTextField``; billing periods ``parse_date``, ``prorated_label``,
    ``PeriodError``; ``catalog`` (products, plans, subscriptions, usage: ``check_usage``,
    ``insert_usage``), ``coverage`` (what was invoiced for which period) and ``rating`` (the
    one place proration, volume tiers and one-off charges are computed).
Billing connectors (``register_billing_connectors``; the core runs them, ``core/connectors/``)
    What a connector gets and returns: ``PushContext``, ``PushItem``, ``PushResult``,
    ``PushFailed``; the core's tables it reads ``ConnectorSettings``, ``ConnectorMapping``
    (``ALL_PLANS``: a mapping for every plan), ``ConnectorLink``, ``SyncRun``, ``SyncItem``;
    ``connector_settings`` (an account's settings: ``get``, ``save``, ``values_of``,
    ``integration_account``...) and ``connector_sync`` (recording an invoice's items, pushing
    them, retries: ``pending_items``, ``sync``, ``retry``...).
The web: JSON API (flask-smorest blueprints)
    ``api_login_required``, ``api_user()``, ``UtcDateTime`` (a field that reads and writes
    UTC), ``AccountOut`` (the core's account schema).
The web: panel (Flask blueprints, Jinja templates extending ``core/base.html``)
    ``form_errors(exc, labels)`` (a service error as ``{field: message}`` worded with the
    form's labels, for the macros of ``core/_field.html``), ``keep(form)`` (what was typed,
    to show again), ``schema_fields(Schema)`` (a schema's fields for a generic form),
    ``billing_subtabs(account)`` (the account's billing sub-tabs, for a plugin's own tab),
    ``redirect_next(value, fallback)`` (a caller-chosen redirect, same-origin paths only).
The command line (``register_commands``)
    ``AppGroup`` (a click group whose commands run inside the instance's app with a database
    connection, errors shown as one line), ``with_app`` (the same for one function),
    ``parse_day`` (a ``YYYY-MM-DD`` option).
Testing
    ``core.kit.testing``: pytest fixtures (``pytest_plugins = ["core.kit.testing"]``).
"""

from core import (
    HOOK_API_VERSION,
    accounts,
    audit,
    clock,
    csv_export,
    hookimpl,
    i18n,
    migrations,
    outbound,
    rbac,
    roles,
)
from core.api.schemas import AccountOut, UtcDateTime
from core.auth import api_login_required, api_user
from core.billing import catalog, coverage, rating
from core.billing.models import (
    Coverage,
    Invoice,
    InvoiceLine,
    PricePlan,
    Product,
    Subscription,
    UsageRecord,
)
from core.billing.money import (
    DecimalTextField,
    ExactRatio,
    MinorUnitsField,
    MoneyError,
    check_currency,
    exponent,
    format_money,
    line_amount,
    parse_decimal,
    tiered_unit_price,
    to_decimal,
    to_minor,
)
from core.billing.periods import PeriodError, parse_date, prorated_label
from core.billing.web.account_views import subtabs as billing_subtabs
from core.commands import AppGroup, parse_day, with_app
from core.connectors import settings as connector_settings
from core.connectors import sync as connector_sync
from core.connectors.models import (
    ALL_PLANS,
    ConnectorLink,
    ConnectorMapping,
    ConnectorSettings,
    SyncItem,
    SyncRun,
)
from core.current import host, require_licensed
from core.db import (
    BaseModel,
    JSONField,
    database,
    is_postgres,
    lock_row,
    utcnow,
    write_transaction,
)
from core.errors import (
    BillhiveError,
    Conflict,
    Forbidden,
    LicenseRequired,
    NotFound,
    ValidationFailed,
    load,
    marshmallow_errors,
)
from core.fields import MAX_INT32, Id, Price, Quantity, Text
from core.models import Account, Role, User
from core.panel.forms import form_errors, keep
from core.panel.jinja import schema_fields
from core.redirects import redirect_next
from core.registry import (
    ALL,
    LEVELS,
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
    PushContext,
    PushFailed,
    PushItem,
    PushResult,
)

__all__ = [
    # declaring a plugin
    "hookimpl", "HOOK_API_VERSION", "PluginMeta", "Privilege", "AccountType", "DefaultRole",
    "MenuItem", "DashboardAlert", "InvoiceFormat", "InvoiceOptions", "BillingConnector",
    "Charge", "LEVELS", "ALL",
    # the host
    "host", "require_licensed", "migrations",
    # storing data
    "BaseModel", "JSONField", "database", "utcnow", "is_postgres", "write_transaction",
    "lock_row",
    "Account", "User", "Role",
    "Product", "PricePlan", "Subscription", "UsageRecord", "Invoice", "InvoiceLine", "Coverage",
    # input and errors
    "load", "marshmallow_errors", "BillhiveError", "ValidationFailed", "NotFound", "Forbidden",
    "Conflict", "LicenseRequired", "Id", "Text", "Quantity", "Price", "MAX_INT32",
    # the core's services
    "rbac", "roles", "accounts", "audit", "outbound", "i18n", "clock", "csv_export",
    # money, periods, billing
    "ExactRatio", "parse_decimal", "to_decimal", "to_minor", "line_amount", "tiered_unit_price",
    "format_money", "exponent", "check_currency", "MoneyError", "MinorUnitsField",
    "DecimalTextField", "parse_date", "prorated_label", "PeriodError",
    "catalog", "coverage", "rating",
    # billing connectors
    "PushContext", "PushItem", "PushResult", "PushFailed", "ConnectorSettings",
    "ConnectorMapping", "ALL_PLANS", "ConnectorLink", "SyncRun", "SyncItem",
    "connector_settings", "connector_sync",
    # web: API
    "api_login_required", "api_user", "UtcDateTime", "AccountOut",
    # web: panel
    "form_errors", "keep", "schema_fields", "billing_subtabs", "redirect_next",
    # command line
    "AppGroup", "with_app", "parse_day",
]  # fmt: skip
