"""A plugin adds a sub-tab to the Billing page with ``MenuItem(..., where="billing")`` (how an
add-on such as billing units joins the page): shown while the plugin is enabled and the user
holds its privilege, gone when it is disabled.

This module is also the throwaway plugin the test loads (``billing_tab``)."""

from __future__ import annotations

import pytest
from flask import Blueprint

from core import hookimpl
from core.registry import MenuItem, PluginMeta

PLUGIN = PluginMeta(name="billing_tab", title="Billing tab", version="0.1.0",
                    description="Test plugin: a Billing sub-tab.")  # fmt: skip

blueprint = Blueprint("billing_tab", __name__)


@blueprint.route("/accounts/<int:account_id>/billing/extra")
def extra(account_id):
    return f"extra tab of account {account_id}"


@hookimpl
def register_blueprints():
    return [blueprint]


@hookimpl
def register_menu_items():
    return [MenuItem("Extra units", "billing_tab.extra", "billing.edit", where="billing", order=40)]


app = pytest.fixture(
    lambda make_app: make_app(plugins=[], modules={"billing_tab": "tests.test_ledger_subtab"}),
    name="app",
)


def test_a_plugin_adds_a_billing_sub_tab(world, panel, ctx):
    host = ctx.extensions["billhive"].host
    client = panel(world.user_a)
    target = f"/accounts/{world.customer_a.id}/billing/my-account"
    assert "Extra units" not in client.get(target).get_data(as_text=True)
    host.set_enabled("billing_tab", True)
    html = client.get(target).get_data(as_text=True)
    assert f'href="/accounts/{world.customer_a.id}/billing/extra"' in html
    # after Payment settings (30), before Prepaid invoices (50)
    assert html.index("Payment settings") < html.index("Extra units") < html.index("Prepaid")
    host.set_enabled("billing_tab", False)
    assert "Extra units" not in client.get(target).get_data(as_text=True)
