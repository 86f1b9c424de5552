"""Issue 16, reproduction 1 in a real browser: the holder of the reseller role "Role Admin
Lite" (roles.manage, users.manage, users.view, billing.view, accounts.view) presses the x
next to "Full Access" of the reseller's main admin on the Users page. It is refused, with
the reason, and the admin keeps the role. The same user removes a role they fully hold."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

LITE = ["roles.manage", "users.manage", "users.view", "billing.view", "accounts.view"]


@pytest.fixture
def app(make_app):
    return make_app(plugins=["role_wizard", "reseller_accounts"], csrf=True)


def test_role_admin_lite_cannot_remove_full_access_with_the_x(
    world, ctx, live_server, page, install_license
):
    from core import roles
    from core.models import Role, UserRole

    install_license(["FT-3001.007"])
    host = ctx.extensions["billhive"].host
    host.set_enabled("reseller_accounts", True)
    host.set_enabled("role_wizard", True)
    reseller = world.add_account(world.provider, "Acme Reseller", "reseller", profile={
        "customer_invoice_creation": True, "customer_invoice_type": "PDF",
        "customer_billing_cycle_day": 15})  # fmt: skip
    lite_role = roles.create_role(
        None, reseller, {"name": "Role Admin Lite", "description": "Roles and users",
                         "privileges": LITE})  # fmt: skip
    viewer = roles.create_role(
        None, reseller, {"name": "Viewer", "description": "Looks", "privileges": ["users.view"]}
    )
    admin = world.add_user(reseller, "admin@acme.example")
    world.add_user(reseller, "lite@acme.example", None, [lite_role])
    clerk = world.add_user(reseller, "clerk@acme.example", None, [viewer])
    full = Role.get(Role.account == reseller, Role.default_code == "full_access")

    base = live_server
    page.goto(f"{base}/login")
    page.fill("#email", "lite@acme.example")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))
    page.click(".tabs a:text-is('Users')")
    page.wait_for_url(f"{base}/accounts/{reseller.id}/users")

    row = page.locator("tr[data-user='admin@acme.example']")
    row.locator("button[title='Unassign Full Access']").click()
    dialog = page.locator("dialog#confirm-dialog")  # every destructive action asks first
    assert "Remove the role Full Access from admin@acme.example?" in dialog.inner_text()
    with page.expect_navigation():
        dialog.locator("button[data-ok]").click()
    error = page.locator(".flash.error").inner_text()
    assert "you cannot remove 'Full Access' from admin@acme.example" in error
    assert "billing.edit" in error  # the reason: what the remover lacks
    assert "removed" not in page.locator("main").inner_text()
    assert "Full Access" in page.locator("tr[data-user='admin@acme.example']").inner_text()
    assert UserRole.select().where(UserRole.user == admin.id, UserRole.role == full.id).exists()

    # deactivating that admin is refused the same way
    page.click("button[aria-label='Deactivate admin@acme.example']")
    with page.expect_navigation():
        page.click("dialog#confirm-dialog button[data-ok]")
    assert "you cannot deactivate admin@acme.example" in page.locator(".flash.error").inner_text()
    assert "active" == page.locator("tr[data-user='admin@acme.example'] td").nth(2).inner_text()

    # a role whose every privilege they hold: the x removes it
    page.locator("tr[data-user='clerk@acme.example'] button[title='Unassign Viewer']").click()
    with page.expect_navigation():
        page.click("dialog#confirm-dialog button[data-ok]")
    assert "Role 'Viewer' removed from clerk@acme.example." in page.content()
    assert not UserRole.select().where(UserRole.user == clerk.id).exists()
