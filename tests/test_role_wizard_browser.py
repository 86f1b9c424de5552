"""The role wizard in a real browser: an account admin creates "Billing Clerk" with two
privileges, assigns it to a staff user, and that user finds the allowed pages open and the
others refused.

The reseller account type may not be installed here, so the admin is the Full Access user of
a customer-level account of the World (the same screens serve every level)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def app(make_app):
    # CSRF on, as in production: the wizard's forms must carry the token
    return make_app(plugins=["role_wizard"], csrf=True)


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
