"""In a real Chromium, the demo walked as an operator, a reseller admin and a customer admin:
every page reachable from the menu by following the panel's links (account tabs, billing
sub-tabs, "Add" and "Edit" forms, the accounts below) loads without a console error
or warning, without a server error, without raw values (True, None, microseconds), and with a
title of its own (a user with three tabs open
tells them apart by the title)."""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import urlparse

import pytest

from tests.conftest import BUILTIN_PLUGINS

pytestmark = pytest.mark.browser

DEMO_PASSWORD = "billhive-demo-2026"
# what a page shows people is never Python's own spelling of a value: booleans, None, a
# moment with microseconds, marshmallow's "missing"
RAW_VALUES = re.compile(r"\b(?:True|False|None)\b|\d\d:\d\d:\d\d\.\d+|<marshmallow")


@pytest.fixture
def app(make_app):
    return make_app(plugins=BUILTIN_PLUGINS)


@pytest.fixture
def demo(ctx):
    from core.billing.runs import engine
    from hostapp.demo import load_demo

    load_demo(ctx, lambda *a: None)
    engine.run(date.today())  # invoices, statements and runs to look at
    return ctx


def _login(page, live_server, email):
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("header nav")


def _links(page, selector) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.href)")


def walk(page, live_server, email) -> dict[str, str]:
    """{path: title} of every page reached; asserts on console messages and statuses."""
    problems: list[str] = []
    page.on(
        "console",
        lambda m: m.type in ("error", "warning") and problems.append(f"{m.type}: {m.text}"),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: r.status >= 500 and problems.append(f"{r.status} from {r.url}"),
    )
    _login(page, live_server, email)
    assert not problems, f"{email} logging in: {problems}"
    home = urlparse(page.url).path
    queue = [home] + [urlparse(u).path for u in _links(page, "header nav a")]
    titles: dict[str, str] = {}
    while queue:
        path = queue.pop(0)
        if path in titles or path.startswith(("/logout", "/api/")):
            continue
        before = len(problems)
        resp = page.goto(f"{live_server}{path}")
        assert resp is not None and resp.status == 200, f"{email}: {path} answered {resp.status}"
        page.wait_for_load_state("load")
        assert len(problems) == before, f"{email} on {path}: {problems[before:]}"
        landed = urlparse(page.url).path  # a tab that redirects to its first sub-tab
        titles[path] = None
        if landed != path and landed in titles:
            continue
        titles[landed] = page.title()
        shown = page.inner_text("main")
        raw = RAW_VALUES.findall(shown)
        assert not raw, f"{email} on {path}: raw values {raw} in " + " | ".join(
            line for line in shown.splitlines() if RAW_VALUES.search(line)
        )
        for href in _links(page, "main a[href], .tabs a[href]"):
            url = urlparse(href)
            if url.netloc == urlparse(live_server).netloc and not _download(url.path):
                queue.append(url.path)
    return {path: title for path, title in titles.items() if title is not None}


def _download(path: str) -> bool:
    """Files (CSV exports, invoice PDFs and RAW files) are not pages."""
    last = path.rsplit("/", 1)[-1]
    return "." in last or last in ("csv", "pdf", "raw", "download") or "/files/" in path


@pytest.mark.parametrize(
    "email",
    [
        "operator@demo.billhive.test",
        "reseller@demo.billhive.test",
        "customer@demo.billhive.test",
    ],
)
def test_every_page_of_the_walk_is_clean_and_titled(demo, live_server, page, email):
    titles = walk(page, live_server, email)
    assert len(titles) >= 5, titles
    by_title: dict[str, list[str]] = {}
    for path, title in titles.items():
        by_title.setdefault(title, []).append(path)
    shared = {t: paths for t, paths in by_title.items() if len(paths) > 1}
    assert not shared, f"{email}: pages sharing a title: {shared}"
    assert all(t.endswith("· Billhive") and t != "Billhive · Billhive" for t in titles.values())
