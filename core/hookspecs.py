"""Every hook Billhive calls. Bodies are docstrings only; the docs are checked against them.

Four families are what the platform exists for (privileges, account types, invoice formats,
billing connectors); the rest is plumbing those need. ``register_*`` hooks return lists that
the core merges, refusing duplicate codes at start-up with an error naming both plugins.
Call hooks by keyword: pluggy passes arguments by name, and a default value on an
implementation's parameter means the argument is never passed.
"""

import pluggy

from core import PROJECT

hookspec = pluggy.HookspecMarker(PROJECT)


# -- evolving hooks (docs/plugin-api-policy.md) --------------------------------------------


class HookDeprecationWarning(DeprecationWarning):
    """A plugin implements a hook, or names a hook argument, that is on its way out."""


#: Hooks and hook arguments that still work but will go: ``"hook"`` or ``"hook(argument)"``
#: -> ``"since API N: what to use instead"``. The plugin host consults it when it loads a
#: plugin and warns (a :class:`HookDeprecationWarning` and a log line naming the plugin and
#: the hook) for every deprecated hook it implements and deprecated argument it names.
#: Nothing is deprecated in API 1.
DEPRECATED: dict[str, str] = {}


# -- the four families ---------------------------------------------------------------------


@hookspec
def register_privileges():
    """Privileges this plugin adds to the catalog.

    :return: a list of :class:`core.registry.Privilege`. Codes are ``area.action`` and must be
        unique across all plugins. ``levels`` names the account levels where the privilege
        exists (``provider``, ``reseller``, ``customer``).

    Called at start-up and whenever the enabled set changes. Since API 1.
    """


@hookspec
def register_account_types():
    """Account types this plugin adds to the account tree.

    :return: a list of :class:`core.registry.AccountType`: code, title, level, a marshmallow
        profile schema class (or ``None``) validated on create and update, and the codes of
        the child types an account of this type may own.

    Since API 1.
    """


@hookspec
def register_invoice_formats():
    """Formats an issued invoice can be rendered to (RAW, PDF, UBL ...).

    :return: a list of :class:`core.registry.InvoiceFormat`: code, title, media type, file
        extension and ``render(document: dict) -> bytes``. ``document`` is the invoice as
        plain data (see ``core.billing.invoicing.documents``).

    Since API 1.
    """


@hookspec
def register_billing_connectors():
    """Connectors that push issued invoices to an outside system (a PSA, an ERP, a webhook).

    The core runs them (:mod:`core.connectors`): settings per account (secrets encrypted),
    mappings, links, sync items, runs, retries and the push after ``invoice_finalized``.

    :return: a list of :class:`core.registry.BillingConnector`: code, title, a marshmallow
        settings schema, ``test(settings) -> str``, ``items(context) -> [PushItem]`` and
        ``push(session, item) -> PushResult`` (or raise ``PushFailed``).

    Since API 1.
    """


# -- plumbing ------------------------------------------------------------------------------


@hookspec
def register_models():
    """Peewee model classes this plugin owns; the core creates their tables.

    :return: a list of model classes bound to ``core.db.database``.

    Since API 1.
    """


@hookspec
def register_blueprints():
    """Flask blueprints this plugin serves (panel pages and API resources).

    :return: a list of :class:`flask.Blueprint` or ``flask_smorest.Blueprint``. They are
        registered once at start-up and answer 404 while the plugin is disabled.

    Since API 1.
    """


@hookspec
def register_default_roles():
    """Default roles created in every account of a level; read-only in the panel.

    :return: a list of :class:`core.registry.DefaultRole`. ``privileges`` is a tuple of codes
        or ``ALL`` for every privilege of that level (resolved at check time, so privileges of
        plugins enabled later are included).

    Since API 1.
    """


@hookspec
def register_menu_items():
    """Entries of the panel's navigation.

    :return: a list of :class:`core.registry.MenuItem`. ``where="main"`` for the top
        navigation; ``where="account"`` for a tab on an account's page (the endpoint then
        receives ``account_id``). Items whose privilege the user lacks are hidden; a tuple
        of privileges shows the item to a holder of any of them.

    Since API 1.
    """


@hookspec
def charges_for_period(account, period):
    """Invoice lines this plugin adds to ``account``'s invoice for ``period``.

    :param account: the :class:`core.models.Account` being billed.
    :param period: a ``(start, end)`` tuple of dates, end exclusive.
    :return: a list of :class:`core.registry.Charge`; the engine rounds each line once and
        writes all lines of an invoice in one transaction, so a raising hook rolls the whole
        invoice back. Each day is billed once: a charge names its ``coverage`` key and
        ``service_start``/``service_end``, and bills from what the key is billed through
        (``core.billing.coverage.key_through``); see :class:`core.registry.Charge`.

    Since API 1.
    """


@hookspec
def charges_since(account):
    """The first day this plugin's ``charges_for_period`` may have something to bill
    ``account`` for, when that is before the account's own days.

    A bill run bills an account's periods from the first of: the day it was created, its
    subscriptions' starts and the days these hooks answer. A plugin whose charges bill what
    other accounts consumed answers the first day of that (a reseller pays its parent for
    what its customers consumed, from the first day they did, which may be before the
    reseller was created); periods before all of these are never billed.

    :param account: the :class:`core.models.Account` a bill run is about to bill.
    :return: a ``datetime.date``, or None (nothing before the account's own days).

    Since API 3.
    """


@hookspec
def account_created(account, actor):
    """Event: an account was created (inside the creating transaction).

    :param account: the new :class:`core.models.Account`.
    :param actor: the :class:`core.models.User` who created it, or ``None`` from the CLI.

    Since API 1.
    """


@hookspec
def account_updated(account, actor, before):
    """Event: an account's fields or profile were edited (inside the editing transaction).

    :param account: the edited :class:`core.models.Account`, with its new values.
    :param actor: the :class:`core.models.User` who edited it, or ``None`` from the CLI.
    :param before: the account's values before the edit, as the audit log records them
        (``core.accounts.snapshot``: name, email, currency, bill_cycle_day, profile, ...).

    Since API 1.
    """


@hookspec
def invoice_finalized(invoice):
    """Event: an invoice was issued (after its transaction committed).

    :param invoice: the issued :class:`core.models.Invoice`.

    Since API 1.
    """


@hookspec
def invoice_overdue(invoice, level):
    """Event: a dunning step was taken for an overdue invoice (after its transaction
    committed, before its reminder is mailed), once per invoice and level.

    :param invoice: the overdue :class:`core.billing.models.Invoice` (issued, unpaid).
    :param level: the :class:`core.billing.ledger.dunning.Level` reached: ``code`` (``reminder_1``,
        ``reminder_2`` or ``final_notice``), ``days`` after the due date, ``fee`` /
        ``fee_currency`` of the late fee (0: none) and ``suspend``.

    A plugin that raises is logged; the step stays taken (a PSA note, a suspension in
    another system: whatever the plugin does is its own). Since API 2.
    """


@hookspec
def register_commands():
    """Click commands this plugin adds to the ``billhive`` CLI (e.g. ``billhive psa``).

    :return: a list of ``click.Command`` or ``click.Group``. They are listed only while the
        plugin is enabled.

    Since API 1.
    """


@hookspec(firstresult=True)
def invoice_options(issuer, account, period):
    """Whether and in which formats ``issuer`` invoices ``account`` for ``period``.

    :param issuer: the :class:`core.models.Account` whose plans were used (the seller).
    :param account: the :class:`core.models.Account` being billed.
    :param period: ``(start, end)`` dates, end exclusive.
    :return: a :class:`core.registry.InvoiceOptions`, or ``None`` to leave the default
        (create the invoice; render every enabled format). The first answer wins, so the
        plugin that owns the issuer's account type decides (e.g. a reseller's profile).

    Since API 1.
    """


@hookspec
def dashboard_alerts(user):
    """What went wrong that ``user`` should look at, for the panel's dashboard (failed
    e-mail sends, failed PSA syncs, ...), each scoped by the plugin to the user's subtree and
    to what the user may see.

    :param user: the :class:`core.models.User` looking at the dashboard.
    :return: a list of :class:`core.registry.DashboardAlert` (those with ``count`` 0 are not
        shown), or ``None``.

    Since API 2.
    """
