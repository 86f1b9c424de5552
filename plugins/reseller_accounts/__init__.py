"""Reseller accounts: Define Account as Reseller: reseller accounts with their own customers, catalog and invoicing.

What the plugin adds (licence feature FT-3001.007):

* the account type ``reseller`` (title "Reseller", level ``reseller``) with the Reseller
  Profile (:mod:`.service.profile`): Customer Invoice Creation, Customer
  Invoice Type (RAW, PDF, Both) and Billing Cycle (1-28). A reseller sits under the provider
  or, when the provider allows sub-resellers (setting ``allow_sub_resellers``, off by
  default), under another reseller; it owns customers (and allowed sub-resellers).
* Billing Cycle: a customer created under a reseller gets the profile's Billing Cycle as its
  bill cycle day, whatever was asked; when the profile's day changes through the reseller
  pages, ``PATCH /api/v1/resellers/<id>/profile`` or the core's generic account edit
  (``PATCH /api/v1/accounts/<id>``, the panel's Edit), the reseller's existing customers
  follow (sub-resellers keep their own day): every one of those edits fires the core's
  ``account_updated`` event and the plugin's hook moves the customers
  (``service.resellers.profile_updated``).
* privileges ``resellers.view``, ``resellers.manage`` (create resellers, the sub-reseller
  setting) and ``resellers.profile`` (edit a reseller's profile), at provider and reseller
  level; panel pages (Resellers list, reseller detail with profile, customers, catalog and the
  wholesale link form) and
  the API ``/api/v1/resellers``.
* cascading billing through ``invoice_options``, ``charges_for_period`` and ``charges_since``
  (``service/billing.py``).

Disabled or unlicensed: existing resellers, their customers and invoices stay readable
through the core pages; creating a reseller is refused naming FT-3001.007 (the core checks
the type plugin's licence); the bill run reports the reseller's customer invoicing skipped.
"""

from core.kit import AccountType, MenuItem, PluginMeta, Privilege, hookimpl
from plugins.reseller_accounts import api, views
from plugins.reseller_accounts.migrations import MIGRATIONS
from plugins.reseller_accounts.models import MODELS
from plugins.reseller_accounts.service import billing, resellers
from plugins.reseller_accounts.service.profile import ResellerProfile

PLUGIN = PluginMeta(
    name="reseller_accounts",
    title="Reseller accounts",
    version="0.2.0",
    license_feature="FT-3001.007",
    api_version=3,  # charges_since
    description="Define Account as Reseller: reseller accounts with their own customers, catalog and invoicing.",
)

__all__ = ["PLUGIN", "MIGRATIONS"]  # MIGRATIONS is read by the core (core.migrations)

P, R = "provider", "reseller"


@hookimpl
def register_account_types():
    return [
        AccountType(
            "reseller",
            "Reseller",
            R,
            ResellerProfile,
            child_types=("customer", "reseller"),
            parent_types=("provider", "reseller"),
            check_parent=resellers.check_parent,
            child_terms=resellers.child_terms,
        )
    ]


@hookimpl
def register_privileges():
    return [
        Privilege(
            "resellers.view", "View resellers", "Resellers", (P, R), "See resellers and profiles."
        ),
        Privilege(
            "resellers.manage",
            "Manage resellers",
            "Resellers",
            (P, R),
            "Create resellers (sub-resellers where allowed); the sub-reseller setting.",
        ),
        Privilege(
            "resellers.profile",
            "Edit reseller profiles",
            "Resellers",
            (P, R),
            "Edit the Reseller Profile of resellers below you.",
        ),
    ]


@hookimpl
def register_models():
    return MODELS


@hookimpl
def register_blueprints():
    return [views.blueprint, api.blueprint]


@hookimpl
def register_menu_items():
    return [
        MenuItem("Resellers", "reseller_accounts.resellers", "resellers.view", order=50),
        MenuItem(
            "Reseller",
            "reseller_accounts.detail",
            "resellers.view",
            where="account",
            order=20,
            levels=(R,),
        ),
    ]


@hookimpl
def account_created(account, actor):
    """A customer created under a reseller bills on the reseller profile's Billing Cycle."""
    parent = account.parent
    if parent is None or parent.type != "reseller" or account.type == "reseller":
        return
    day = (parent.profile or {}).get("customer_billing_cycle_day")
    if day and account.bill_cycle_day != int(day):
        account.bill_cycle_day = int(day)
        account.save()


@hookimpl
def account_updated(account, actor, before):
    """A reseller's customers follow its profile's Billing Cycle day, however it was edited
    (the reseller pages and API, the core's account edit in the panel and the API)."""
    if account.type != "reseller":
        return
    resellers.profile_updated(actor, account, before)


@hookimpl
def invoice_options(issuer, account, period):
    """A reseller issuer invoices its customers as its Reseller Profile says."""
    return billing.options_for(issuer)


@hookimpl
def charges_for_period(account, period):
    """The provider's wholesale lines on a reseller's invoice (see ``service/billing.py``)."""
    if account.type != "reseller":
        return []
    return billing.wholesale_charges(account, period)


@hookimpl
def charges_since(account):
    """A reseller pays wholesale from the first day its customers consume a linked plan."""
    if account.type != "reseller":
        return None
    return billing.first_consumption(account)
