"""The role wizard in a real browser: an account admin creates "Billing Clerk" with two
privileges, assigns it to a staff user, and that user finds the allowed pages open and the
others refused.

Twice: as the Full Access admin of a real ``reseller`` account (reseller_accounts licensed
with FT-3001.007 and enabled; the issue's scenario), and as the Full Access admin of a
customer-level account of the World (the same screens serve every level)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def app(make_app):
    # CSRF on, as in production: the wizard's forms must carry the token
    return make_app(plugins=["role_wizard", "reseller_accounts"], csrf=True)


def log_in(page, base, email):
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))


def submit(page, selector):
    """Click a submit button and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def status_of(page, url) -> int:
    return page.goto(url).status


def test_admin_creates_billing_clerk_and_the_clerk_gets_just_that(world, ctx, live_server, page):
    from core import rbac
    from core.models import Role

    ctx.extensions["billhive"].host.set_enabled("role_wizard", True)
    account = world.customer_a
    world.add_user(account, "clerk@a.example.com", None)
    base = live_server

    log_in(page, base, world.user_a.email)
    page.click(".tabs a:text-is('Roles')")
    page.wait_for_url(f"{base}/accounts/{account.id}/roles")
    assert page.locator("tr[data-role='Full Access']").count() == 1
    page.click("text=Add New Role")

    # step 1: Name and Description; an empty description is refused on its field
    page.fill("#f-name", "Billing Clerk")
    submit(page, "button[value=next]")
    assert page.locator("#error-description").is_visible()
    assert page.input_value("#f-name") == "Billing Clerk"
    page.fill("#f-description", "Views invoices and users")
    submit(page, "button[value=next]")

    # step 2: privileges, grouped, with select-all per group
    assert page.locator("#wizard[data-step='2']").count() == 1
    page.check("input[aria-label='Select all Billing']")
    assert page.is_checked("input[value='billing.edit']")
    page.uncheck("input[aria-label='Select all Billing']")
    page.check("input[value='billing.view']")
    page.check("input[value='users.view']")
    # Back keeps everything, Next brings the ticks back
    submit(page, "button[value=back]")
    assert page.input_value("#f-description") == "Views invoices and users"
    submit(page, "button[value=next]")
    assert page.is_checked("input[value='billing.view']")
    assert page.is_checked("input[value='users.view']")
    assert not page.is_checked("input[value='billing.edit']")
    submit(page, "button[value=next]")

    # step 3: review, then Finish
    review = page.inner_text("#review")
    assert "Billing Clerk" in review and "billing.view" in review and "users.view" in review
    submit(page, "button[value=finish]")
    page.wait_for_url(re.compile(r".*/roles/\d+$"))
    assert "Role 'Billing Clerk' created." in page.content()
    role = Role.get(Role.account == account, Role.name == "Billing Clerk")
    assert rbac.stored_privileges(role) == {"billing.view", "users.view"}

    # assign it to the staff user on the role's page
    submit(page, "button[aria-label='Assign clerk@a.example.com']")
    page.wait_for_selector("text=assigned to clerk@a.example.com")
    assert page.locator("tr[data-user='clerk@a.example.com'] td").nth(2).inner_text() == "yes"
    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/login$"))

    # the clerk: the pages of users.view are open, the rest refused
    log_in(page, base, "clerk@a.example.com")
    tabs = page.locator(".tabs a").all_inner_texts()
    assert "Users" in tabs and "Roles" in tabs
    assert status_of(page, f"{base}/accounts/{account.id}/users") == 200
    assert status_of(page, f"{base}/accounts/{account.id}/roles") == 200
    assert page.locator("text=Add New Role").count() == 0
    assert status_of(page, f"{base}/accounts/{account.id}/roles/privileges") == 200
    assert status_of(page, f"{base}/accounts/{account.id}/roles/new") == 403
    assert status_of(page, f"{base}/accounts/{account.id}/roles/{role.id}/edit") == 403
    assert status_of(page, f"{base}/accounts/{account.id}/edit") == 403
    assert status_of(page, f"{base}/accounts") == 403
    assert status_of(page, f"{base}/accounts/{world.customer_b.id}") == 404
    assert status_of(page, f"{base}/accounts/{world.customer_b.id}/roles") == 404
    assert status_of(page, f"{base}/audit") == 404


RESELLER_PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "PDF",
    "customer_billing_cycle_day": 15,
}


def test_reseller_admin_creates_billing_clerk_and_the_clerk_gets_just_that(
    world, ctx, live_server, page, install_license
):
    from core import rbac
    from core.models import Role, UserRole

    install_license(["FT-3001.007"])
    host = ctx.extensions["billhive"].host
    host.set_enabled("reseller_accounts", True)
    host.set_enabled("role_wizard", True)
    reseller = world.add_account(
        world.provider, "Acme Reseller", "reseller", profile=RESELLER_PROFILE
    )
    assert rbac.level_of(reseller) == "reseller"
    own_customer = world.add_account(reseller, "Acme Customer")
    admin = world.add_user(reseller, "admin@acme.example")  # the reseller's Full Access role
    held = Role.select().join(UserRole).where(UserRole.user == admin.id)
    assert [(r.name, r.default_code, r.account_id) for r in held] == [
        ("Full Access", "full_access", reseller.id)
    ]
    world.add_user(reseller, "clerk@acme.example", None)
    base = live_server

    log_in(page, base, admin.email)
    assert page.url == f"{base}/accounts/{reseller.id}"
    page.click(".tabs a:text-is('Roles')")
    page.wait_for_url(f"{base}/accounts/{reseller.id}/roles")
    # the reseller level's default roles
    assert page.locator("tr[data-role]").evaluate_all("rows => rows.map(r => r.dataset.role)") == [
        "Customer Full Access",
        "Full Access",
        "Service Desk Only",
    ]
    assert "admin@acme.example" in page.locator("tr[data-role='Full Access']").inner_text()
    page.click("text=Add New Role")

    # step 1: Name and Description
    page.fill("#f-name", "Billing Clerk")
    page.fill("#f-description", "Sees invoices and the reseller profile")
    submit(page, "button[value=next]")

    # step 2: the reseller level's privileges the admin holds; provider-only ones are absent
    assert page.locator("#wizard[data-step='2']").count() == 1
    offered = set(
        page.locator("input[name=privileges]").evaluate_all("els => els.map(e => e.value)")
    )
    assert {"billing.view", "resellers.view", "users.view", "servicedesk.submit"} <= offered
    assert not offered & {"plugins.manage", "licenses.manage", "audit.view"}
    page.check("input[value='billing.view']")
    page.check("input[value='resellers.view']")
    submit(page, "button[value=next]")

    # step 3: review, then Finish
    review = page.inner_text("#review")
    assert "Billing Clerk" in review and "billing.view" in review and "resellers.view" in review
    submit(page, "button[value=finish]")
    page.wait_for_url(re.compile(r".*/roles/\d+$"))
    assert "Role 'Billing Clerk' created." in page.content()
    role = Role.get(Role.account == reseller, Role.name == "Billing Clerk")
    assert rbac.stored_privileges(role) == {"billing.view", "resellers.view"}

    # assign it to the reseller's staff user
    submit(page, "button[aria-label='Assign clerk@acme.example']")
    page.wait_for_selector("text=assigned to clerk@acme.example")
    assert page.locator("tr[data-user='clerk@acme.example'] td").nth(2).inner_text() == "yes"
    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/login$"))

    # the clerk: billing and reseller pages open, users, roles and management refused
    log_in(page, base, "clerk@acme.example")
    assert page.url == f"{base}/accounts/{reseller.id}"
    tabs = page.locator(".tabs a").all_inner_texts()
    assert "Reseller" in tabs
    assert "Users" not in tabs and "Roles" not in tabs
    nav = page.locator("header nav a").all_inner_texts()
    assert "Invoices" in nav and "Resellers" in nav and "Accounts" not in nav
    for url in (
        f"/accounts/{reseller.id}",
        "/billing/invoices",
        "/billing/subscriptions",
        "/resellers",
        f"/resellers/{reseller.id}",
    ):
        assert status_of(page, f"{base}{url}") == 200, url
    for url in (
        f"/accounts/{reseller.id}/users",
        f"/accounts/{reseller.id}/roles",
        f"/accounts/{reseller.id}/roles/new",
        f"/accounts/{reseller.id}/roles/{role.id}/edit",
        f"/accounts/{reseller.id}/edit",
        f"/resellers/{reseller.id}/profile",
        "/accounts",
        "/billing/catalog",
        "/billing/runs",
    ):
        assert status_of(page, f"{base}{url}") == 403, url
    # its own customer is inside the subtree but needs accounts.view (403); the World's
    # other accounts do not exist for it (404)
    assert status_of(page, f"{base}/accounts/{own_customer.id}") == 403
    for url in (
        f"/accounts/{world.customer_a.id}",
        f"/accounts/{world.customer_a.id}/roles",
        f"/accounts/{world.provider.id}",
        "/audit",
    ):
        assert status_of(page, f"{base}{url}") == 404, url
