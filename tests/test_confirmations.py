"""Confirmations before every destructive action (issue 20, item 3): one mechanism, a
``data-confirm`` attribute on the form that panel.js turns into a styled <dialog> (no inline
script: the CSP forbids it). A template check finds any destructive form of the core or a
built-in plugin without it; a real Chromium cancels and confirms, with no console error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
FORM = re.compile(r"<form\b(?P<tag>[^>]*)>(?P<body>.*?)</form>", re.S | re.I)
# what a button of a destructive form says (its text, title, aria-label or value)
DESTRUCTIVE = re.compile(
    r"\b(delete|remove|disable|void|unassign|unlink|deactivate|suspend|close account|"
    r"reverse|reversal)\b|&#128465;|×",
    re.I,
)


def _templates():
    for base in (ROOT / "core", ROOT / "plugins"):
        yield from sorted(base.rglob("templates/**/*.html"))


def _destructive_forms_without_confirmation(text: str) -> list[str]:
    missing = []
    for match in FORM.finditer(text):
        tag, body = match.group("tag"), match.group("body")
        if not re.search(r'method="post"', tag, re.I):
            continue
        buttons = " ".join(re.findall(r"<button\b[^>]*>.*?</button>", body, re.S | re.I))
        if DESTRUCTIVE.search(buttons) and "data-confirm" not in tag:
            missing.append(buttons.strip()[:120])
    return missing


def test_the_check_itself_finds_a_destructive_form_without_confirmation():
    bad = '<form method="post"><button type="submit">Delete</button></form>'
    good = '<form method="post" data-confirm="Sure?"><button>Delete</button></form>'
    harmless = '<form method="post"><button type="submit">Save</button></form>'
    assert _destructive_forms_without_confirmation(bad)
    assert not _destructive_forms_without_confirmation(good + harmless)


def test_every_destructive_form_of_the_core_and_built_in_plugins_asks_first():
    templates = list(_templates())
    assert len(templates) > 30
    missing = {
        str(path.relative_to(ROOT)): found
        for path in templates
        if (found := _destructive_forms_without_confirmation(path.read_text()))
    }
    assert not missing, missing


def test_panel_js_asks_in_a_dialog_not_window_confirm():
    script = (ROOT / "core/panel/static/panel.js").read_text()
    assert "form[data-confirm]" in script
    assert "window.confirm" not in script  # a browser box cannot be styled


# -- in Chromium -------------------------------------------------------------------------------


@pytest.fixture
def app(make_app):
    return make_app(plugins=["role_wizard"], csrf=True)


def _login(page, base, email):
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))


@pytest.mark.browser
def test_deleting_a_role_and_suspending_an_account_ask_first(world, ctx, live_server, page):
    from core import roles
    from core.models import Account, Role

    ctx.extensions["billhive"].host.set_enabled("role_wizard", True)
    role = roles.create_role(
        None, world.customer_a, {"name": "Clerks", "description": "Desk", "privileges": []}
    )
    errors = []
    page.on("console", lambda m: errors.append((m.text, m.location.get("url", "")))
            if m.type in ("error", "warning") else None)  # fmt: skip
    page.on("pageerror", lambda e: errors.append((str(e), "")))
    _login(page, live_server, world.operator.email)

    page.goto(f"{live_server}/accounts/{world.customer_a.id}/roles/{role.id}")
    page.click("button.danger:has-text('Delete')")
    dialog = page.locator("dialog#confirm-dialog")
    assert dialog.is_visible()
    assert "Delete the role Clerks? This cannot be undone." in dialog.inner_text()
    assert dialog.locator("button[data-ok]").inner_text() == "Delete role"
    dialog.locator("button[data-cancel]").click()  # cancelled: nothing happens
    assert not dialog.is_visible()
    assert Role.get_or_none(Role.id == role.id) is not None
    page.click("button.danger:has-text('Delete')")
    with page.expect_navigation():
        dialog.locator("button[data-ok]").click()
    assert Role.get_or_none(Role.id == role.id) is None

    # the account lifecycle: Suspend asks, with what it does, and takes the reason along
    page.goto(f"{live_server}/accounts/{world.customer_b.id}")
    page.fill("input[aria-label='Reason to suspend Customer B']", "unpaid since May")
    page.click(".lifecycle button:has-text('Suspend')")
    assert "cannot log in until it is reactivated" in dialog.inner_text()
    with page.expect_navigation():
        dialog.locator("button[data-ok]").click()
    assert "Account 'Customer B' suspended." in page.locator(".flash").first.inner_text()
    assert page.locator("#account-status").inner_text() == "Suspended"
    assert "unpaid since May" in page.locator("table.status-history").inner_text()
    assert Account.get_by_id(world.customer_b.id).status == "suspended"
    # Escape closes the dialog without submitting
    page.click(".lifecycle button:has-text('Close account')")
    assert dialog.is_visible()
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    assert Account.get_by_id(world.customer_b.id).status == "suspended"
    page.screenshot(path="/tmp/billhive-confirm.png", full_page=True)
    # the browser's own favicon request is the only thing allowed to fail (the panel has no
    # favicon yet: issue 20 item 6, not this change)
    assert not [(text, url) for text, url in errors if not url.endswith("/favicon.ico")], errors
