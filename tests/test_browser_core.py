"""In a real Chromium: the operator enables a licensed add-on from Plugins & Licence."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, issue

pytestmark = pytest.mark.browser


@pytest.fixture
def app(make_app):
    return make_app(plugins=["reseller_accounts"])


def test_the_operator_installs_a_licence_and_enables_reseller_accounts(
    world, live_server, page, license_keys
):
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.operator.email)
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    assert "wrong e-mail or password" in page.content()
    page.fill("input[name=email]", world.operator.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    page.click("header nav >> text=Plugins & Licence")
    page.wait_for_selector("h1:has-text('Plugins & Licence')")
    row = page.locator("tr[data-plugin=reseller_accounts]")
    assert "FT-3001.007" in row.inner_text()
    assert "not covered" in row.inner_text()

    row.locator("button:has-text('Enable')").click()  # no licence yet: refused
    flash = page.locator(".flash.error")
    assert "FT-3001.007" in flash.inner_text()
    assert "disabled" in page.locator("tr[data-plugin=reseller_accounts]").inner_text()

    page.fill("#license_text", issue(license_keys, ["FT-3001.007"]))
    page.click("button:has-text('Install licence')")
    assert "Test Licensee" in page.locator(".flash").first.inner_text()
    assert "valid" in page.locator("#license").inner_text()
    row = page.locator("tr[data-plugin=reseller_accounts]")
    assert "covered" in row.inner_text() and "not covered" not in row.inner_text()

    row.locator("button:has-text('Enable')").click()
    assert "Plugin 'reseller_accounts' enabled." in page.locator(".flash").first.inner_text()
    row = page.locator("tr[data-plugin=reseller_accounts]")
    assert "enabled" in row.locator("td").nth(3).inner_text()
    assert row.locator("button:has-text('Disable')").count() == 1
    page.screenshot(path="/tmp/billhive-plugins.png", full_page=True)

    page.click("button:has-text('Log out')")
    page.wait_for_selector("input[name=password]")
    assert "logged out" in page.content()
    page.goto(f"{live_server}/plugins")
    assert "/login" in page.url
