"""core.kit.testing, the fixtures plugin authors get, used in-process (the generated plugin's own
tests in test_devkit_scaffold.py use them through pytest): accounts at every level, users
holding exactly the privileges asked for, issued invoices, and clear refusals."""

from __future__ import annotations

import pytest

from core import rbac
from core.kit.testing import PASSWORD, Accounts


@pytest.fixture
def accounts(ctx):
    return Accounts(ctx)


def test_accounts_at_each_level_with_users_holding_exactly_the_privileges_asked(accounts):
    assert accounts.account("provider") == accounts.provider
    customer = accounts.account("customer")
    assert customer.type == "customer" and customer.parent_id == accounts.provider.id
    viewer = accounts.user("customer", privileges=["billing.view"])
    assert rbac.has(viewer, "billing.view") and not rbac.has(viewer, "invoices.issue")
    full = accounts.user("provider")
    assert full.account_id == accounts.provider.id and rbac.has(full, "plugins.manage")


def test_a_reseller_level_account_needs_a_plugin_declaring_one(accounts):
    with pytest.raises(LookupError) as err:
        accounts.account("reseller")
    assert "no enabled plugin declares an account type of level 'reseller'" in str(err.value)
    assert "add 'reseller_accounts' to billhive_plugins" in str(err.value)
    with pytest.raises(ValueError, match="level must be one of provider, reseller, customer"):
        accounts.account("partner")


def test_a_reseller_level_account_from_reseller_accounts_gets_a_sample_profile(
    ctx, accounts, install_license
):
    install_license(["FT-3001.007"])
    ctx.extensions["billhive"].host.set_enabled("reseller_accounts", True)
    reseller = accounts.account("reseller")
    assert reseller.type == "reseller" and reseller.profile["customer_invoice_type"] == "PDF"
    below = accounts.account("customer", parent=reseller)
    assert below.parent_id == reseller.id
    assert rbac.level_of(accounts.user("reseller", account=reseller).account) == "reseller"


def test_issue_invoice_gives_an_issued_numbered_invoice(accounts):
    invoice = accounts.issue_invoice()
    assert invoice.status == "issued" and invoice.number
    assert invoice.total == 6000  # 2 x 30.00, no tax


def test_users_log_in_with_the_shared_password(ctx, accounts):
    user = accounts.user("customer")
    resp = ctx.test_client().post("/login", data={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 302
