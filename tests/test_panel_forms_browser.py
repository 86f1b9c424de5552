"""In a real Chromium: what a person sees after a mistake (nothing to type again), and pages
that read well on a 1366 px laptop screen (the audit log without horizontal scrolling)."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def log_in(page, base, email, password=PASSWORD):
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("button[type=submit]")


def test_a_mistyped_password_keeps_the_email_and_focuses_the_password(world, live_server, page):
    log_in(page, live_server, world.operator.email, "wrong-password")
    assert "wrong e-mail or password" in page.locator(".flash.error").inner_text()
    assert page.input_value("#email") == world.operator.email
    assert page.input_value("#password") == ""
    assert page.evaluate("document.activeElement.id") == "password"
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/accounts/" in page.url


def test_add_user_after_a_mistake_keeps_the_ticked_roles(world, live_server, page):
    from core import roles
    from core.models import User

    for name in ("Billing clerk", "Viewer"):
        roles.create_role(
            None,
            world.customer_a,
            {"name": name, "description": name, "privileges": ["billing.view"]},
        )
    log_in(page, live_server, world.operator.email)
    page.goto(f"{live_server}/accounts/{world.customer_a.id}/users")
    boxes = page.locator("input[name=role_ids]")
    assert boxes.count() == 3
    boxes.nth(0).check()
    boxes.nth(boxes.count() - 1).check()
    page.fill("#f-email", "new.person@example.com")
    page.fill("#f-name", "New Person")
    page.fill("#f-password", "short")
    with page.expect_navigation():
        page.click("button:text-is('Add user')")
    assert "Password:" in page.locator(".flash.error").inner_text()
    assert page.locator("#e-password").is_visible()
    boxes = page.locator("input[name=role_ids]")
    assert boxes.nth(0).is_checked() and boxes.nth(boxes.count() - 1).is_checked()
    assert page.input_value("#f-email") == "new.person@example.com"
    assert page.input_value("#f-name") == "New Person"
    page.fill("#f-password", PASSWORD)  # only the password is typed again
    with page.expect_navigation():
        page.click("button:text-is('Add user')")
    user = User.get(User.email == "new.person@example.com")
    assert len(list(user.role_links)) == 2


def test_the_audit_log_fits_a_1366_px_screen(world, live_server, page):
    from core import accounts

    long_address = "Building 7, " + "Very Long Street Name " * 20
    accounts.update_account(None, world.customer_a, {"address": long_address, "name": "A <&>"})
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server, world.operator.email)
    page.goto(f"{live_server}/audit")
    table = page.locator("table#audit")
    assert "A <&>" in table.inner_text() and "\\u003c" not in table.inner_text()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the audit log is {overflow}px wider than the screen"
