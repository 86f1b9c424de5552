"""Find (issue 20 item 1) in a real browser, at the three levels that use it: the provider's
operator, a reseller's admin and a customer's admin. The header's search box (keyboard
only), the list pages' search, filters, sorting and paging, the account tree with its
breadcrumbs; no page logs a console error or breaks the CSP."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD
from tests.test_authz_matrix import PROFILE

pytestmark = pytest.mark.browser


@pytest.fixture
def app(make_app):
    return make_app(plugins=["role_wizard", "reseller_accounts"], csrf=True)


@pytest.fixture
def tree(world, ctx, install_license):
    """The World plus a reseller (Acme) with an admin and 12 customers, one of which has an
    invoice; the provider gets a 13th customer outside Acme."""
    from core.billing.invoicing import lifecycle as invoices

    install_license(["FT-3001.007"])
    host = ctx.extensions["billhive"].host
    host.set_enabled("reseller_accounts", True)
    host.set_enabled("role_wizard", True)
    acme = world.add_account(world.provider, "Acme Reseller", "reseller", profile=PROFILE)
    admin = world.add_user(acme, "admin@acme.example")
    customers = [world.add_account(acme, f"Acme Client {n:02d}") for n in range(12)]
    line = [{"description": "Work", "quantity": "1", "unit_price": "10"}]
    invoice = invoices.issue(invoices.create_draft(None, customers[3], acme, line))
    world.add_account(world.provider, "Outside Client")
    return {"acme": acme, "admin": admin, "customers": customers, "invoice": invoice}


class Console:
    """Console errors of a page (CSP refusals and script errors are console errors), with
    the address they came from. The browser's own request for /favicon.ico is not the
    panel's (the favicon is issue 20 item 6's), so it is left out."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _console(self, message):
        where = (message.location or {}).get("url", "")
        if message.type == "error" and not where.endswith("/favicon.ico"):
            self.errors.append(f"{message.text} ({where})")


def log_in(page, base, email):
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))


def search_box(page, text):
    """Type ``text`` into the header's box and wait for the answers to that text."""
    box = page.locator("#global-search")
    box.fill("")
    box.type(text, delay=20)
    page.locator("#global-search-option-all", has_text=f"“{text}”").wait_for()
    return box


def options(page) -> list[str]:
    return page.locator("#global-search-list [role=option] .hit-label").all_inner_texts()


def test_operator_finds_a_section_an_account_and_an_invoice_by_keyboard(
    world, tree, live_server, page
):
    console = Console(page)
    base = live_server
    log_in(page, base, world.operator.email)

    # "/" puts the cursor in the box; "roles" offers the Roles page (a tab of the account)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "global-search"
    box = search_box(page, "roles")
    assert "Roles" in options(page)
    assert box.get_attribute("aria-expanded") == "true"
    page.keyboard.press("ArrowDown")
    assert box.get_attribute("aria-activedescendant") == "global-search-option-0"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base}/accounts/{world.provider.id}/roles"

    # an account by name, any case
    search_box(page, "acme client 07")
    assert options(page) == ["Acme Client 07"]
    page.keyboard.press("ArrowDown")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{base}/accounts/{tree['customers'][7].id}"
    # the account page shows its path: Provider > Acme Reseller > Acme Client 07
    assert page.locator("nav.crumbs a").all_inner_texts() == ["Provider", "Acme Reseller"]
    assert page.locator("nav.crumbs [aria-current=page]").inner_text() == "Acme Client 07"

    # an invoice by its number; Escape closes the list, Enter then opens the results page
    number = tree["invoice"].number
    search_box(page, number)
    assert number in options(page)
    page.keyboard.press("Escape")
    assert page.locator("#global-search-list").is_hidden()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.startswith(f"{base}/search?q=")
    assert page.locator("ul.hits a", has_text=number).count() == 1
    assert console.errors == []


def test_operator_browses_the_tree_and_pages_sorts_and_filters_accounts(
    world, tree, live_server, page
):
    console = Console(page)
    base = live_server
    log_in(page, base, world.operator.email)
    page.click("header nav a:text-is('Accounts')")
    page.wait_for_url(f"{base}/accounts")
    # the first level: the provider's children, Acme with its 12 below
    row = page.locator("tr", has=page.locator("a:text-is('Acme Reseller')"))
    with page.expect_navigation():
        row.locator("a[aria-label^='Show the 12 accounts']").click()
    assert page.locator("nav.crumbs a").first.inner_text() == "Provider"
    assert page.locator("nav.crumbs [aria-current=page]").inner_text() == "Acme Reseller"
    names = page.locator("tbody tr td:first-child a").all_inner_texts()
    assert names == [f"Acme Client {n:02d}" for n in range(12)]
    # by name ascending at first; the heading sorts descending, then ascending again
    assert page.locator("th[aria-sort=ascending]").inner_text().upper().startswith("NAME")
    with page.expect_navigation():
        page.click("th a.sort:has-text('Name')")
    assert page.locator("th[aria-sort=descending]").inner_text().upper().startswith("NAME")
    assert page.locator("tbody tr td:first-child a").first.inner_text() == "Acme Client 11"
    with page.expect_navigation():
        page.click("th a.sort:has-text('Name')")
    assert page.locator("tbody tr td:first-child a").first.inner_text() == "Acme Client 00"

    # search over the whole subtree, 5 per page: pages keep the search
    page.fill("form.filters input[name=q]", "client")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    page.goto(page.url + "&per_page=5")
    assert "1–5 of 13 accounts" in page.locator("nav.pager").inner_text()
    with page.expect_navigation():
        page.click("nav.pager a[rel=next]")
    assert "6–10 of 13 accounts" in page.locator("nav.pager").inner_text()
    assert page.locator("form.filters input[name=q]").input_value() == "client"
    with page.expect_navigation():
        page.click("nav.pager a[rel=last]")
    assert "11–13 of 13 accounts" in page.locator("nav.pager").inner_text()

    # a bad parameter shows its message, not an error page
    page.goto(f"{base}/accounts?q=client&sort=secret")
    assert "sort: must be one of" in page.locator("[role=alert]").inner_text()
    assert console.errors == [] or all("422" in e for e in console.errors)


def test_operator_filters_the_audit_log_and_invoices(world, tree, live_server, page):
    console = Console(page)
    base = live_server
    log_in(page, base, world.operator.email)
    page.goto(f"{base}/audit")
    page.fill("input[name=action]", "account.create")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    actions = set(page.locator("tbody tr td:nth-child(4)").all_inner_texts())
    assert actions == {"account.create"}
    # a reversed range is refused naming "to"
    page.fill("input[name=from]", "2026-03-01")
    page.fill("input[name=to]", "2026-02-01")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    assert "to: must not be before 'from' (2026-03-01)" in page.locator("[role=alert]").inner_text()

    page.goto(f"{base}/billing/invoices")
    page.select_option("select[name=status]", "issued")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    assert page.locator("tbody tr").count() == 1
    assert page.locator("tbody tr td:first-child").inner_text() == tree["invoice"].number
    assert [e for e in console.errors if "422" not in e] == []


def test_reseller_admin_finds_only_its_customers(world, tree, live_server, page):
    console = Console(page)
    base = live_server
    log_in(page, base, tree["admin"].email)
    search_box(page, "client")
    labels = options(page)
    assert "Outside Client" not in labels and "Acme Client 00" in labels
    search_box(page, "customer a")  # the provider's customer: not there
    assert [o for o in options(page) if o.startswith("Customer")] == []

    page.goto(f"{base}/accounts")
    assert page.locator("nav.crumbs [aria-current=page]").inner_text() == "Acme Reseller"
    assert page.locator("tbody tr").count() == 12
    # the users list of its subtree: its own admin, nobody of the provider
    page.click("header nav a:text-is('Users')")
    page.wait_for_url(f"{base}/users")
    emails = page.locator("tbody tr td:first-child").all_inner_texts()
    assert emails == ["admin@acme.example"]
    # a filter naming an account outside answers 404
    assert page.goto(f"{base}/billing/invoices?account_id={world.customer_a.id}").status == 404
    # the invoice of its customer, found by number from the Invoices page
    page.goto(f"{base}/billing/invoices")
    page.fill("form.filters input[name=q]", tree["invoice"].number[-3:])
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    assert page.locator("tbody tr td:first-child").all_inner_texts() == [tree["invoice"].number]
    assert [e for e in console.errors if "404" not in e] == []


def test_customer_admin_searches_its_own_world(world, tree, live_server, page):
    console = Console(page)
    base = live_server
    world.add_user(world.customer_a, "clerk@a.example.com")
    log_in(page, base, world.user_a.email)
    search_box(page, "users")
    assert "Users" in options(page)
    search_box(page, "customer")
    assert [o for o in options(page) if o.startswith("Customer")] == ["Customer A"]
    page.goto(f"{base}/users")
    page.fill("form.filters input[name=q]", "CLERK")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    assert page.locator("tbody tr td:first-child").all_inner_texts() == ["clerk@a.example.com"]
    with page.expect_navigation():
        page.click("th a.sort:has-text('E-mail')")
    page.fill("form.filters input[name=q]", "")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    emails = page.locator("tbody tr td:first-child").all_inner_texts()
    assert emails == ["clerk@a.example.com", "a@example.com"]  # sorted descending, kept
    assert console.errors == []
