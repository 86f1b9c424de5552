"""Billing units: Billing units of a contact center: users, teams and phone numbers, with cost reports per unit."""

from core.kit import MenuItem, PluginMeta, Privilege, hookimpl
from plugins.billing_units import api, cli, views
from plugins.billing_units.migrations import MIGRATIONS
from plugins.billing_units.models import MODELS
from plugins.billing_units.service import units

PLUGIN = PluginMeta(
    name="billing_units",
    title="Billing units",
    version="0.2.0",
    license_feature="BH-UNITS",
    description="Billing units of a contact center: users, teams and phone numbers, with cost reports per unit.",
)

__all__ = ["PLUGIN", "MIGRATIONS"]  # MIGRATIONS is read by the core (core.migrations)

LEVELS = ("provider", "reseller", "customer")


@hookimpl
def register_privileges():
    return [
        Privilege(
            "billing_units.view",
            "View Billing unit",
            "Billing",
            LEVELS,
            "See billing units, their users and numbers, and the cost report.",
        ),
        Privilege(
            "billing_units.edit",
            "Edit Billing unit",
            "Billing",
            LEVELS,
            "Create, edit and delete billing units, teams, phone numbers and call records.",
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
    # Sub-tabs of the account's Billing page (the contact-center document's order: after
    # Payment settings, and Call recording last), shown to holders of either unit privilege
    # alone: "one or both of the View Billing unit and Edit Billing unit privileges".
    either = ("billing_units.view", "billing_units.edit")
    return [
        MenuItem("Billing units", "billing_units.units", either, where="billing", order=40),
        MenuItem(
            "Call recording", "billing_units.recording_page", either, where="billing", order=90
        ),  # fmt: skip
    ]


@hookimpl
def register_commands():
    return [cli.units]


@hookimpl
def charges_for_period(account, period):
    return units.charges(account, period)
