"""Issue 16 item 8 (deployment): trusted proxies (BILLHIVE_BEHIND_PROXY), Secure cookies under
https, and the security headers every response carries (``hostapp/security.py``), with a
Content-Security-Policy the whole panel passes in a real Chromium (no inline script)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def _assert_headers(resp, https=False):
    csp = resp.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    assert resp.headers.get("Referrer-Policy") == "same-origin"
    assert resp.headers.get("X-Frame-Options") == "DENY"
    assert ("Strict-Transport-Security" in resp.headers) == https


def _session_cookies(resp) -> list[str]:
    return [c for c in resp.headers.getlist("Set-Cookie") if c.startswith("session=")]


def test_tenant_data_is_never_cached_static_files_may_be(ctx, world, panel, api):
    assert panel(world.operator).get("/accounts").headers["Cache-Control"] == "no-store"
    assert api(world.operator).get("/api/v1/accounts").headers["Cache-Control"] == "no-store"
    assert ctx.test_client().get("/login").headers["Cache-Control"] == "no-store"
    static = ctx.test_client().get("/static/panel/panel.js")
    assert "no-store" not in static.headers.get("Cache-Control", "")


def test_every_kind_of_response_carries_the_headers(ctx, world, panel, api):
    client = ctx.test_client()
    _assert_headers(client.get("/login"))
    _assert_headers(client.get("/static/panel/panel.css"))
    _assert_headers(client.get("/static/panel/panel.js"))
    _assert_headers(client.get("/no/such/page"))
    _assert_headers(client.get("/api/v1/openapi.json"))
    _assert_headers(client.get("/api/v1/accounts"))  # 401
    _assert_headers(panel(world.operator).get(f"/accounts/{world.provider.id}"))
    _assert_headers(api(world.operator).get("/api/v1/accounts"))


def test_https_gets_hsts_and_secure_cookies_http_does_not(ctx, world):
    data = {"email": world.operator.email, "password": PASSWORD}
    plain = ctx.test_client().post("/login", data=data)
    assert plain.status_code == 302
    _assert_headers(plain)
    assert _session_cookies(plain) and all("Secure" not in c for c in _session_cookies(plain))
    tls = ctx.test_client().post("/login", data=data, base_url="https://billing.example")
    assert tls.status_code == 302
    _assert_headers(tls, https=True)
    cookies = tls.headers.getlist("Set-Cookie")
    assert _session_cookies(tls) and all(
        re.search(r";\s*Secure(;|$)", c) and "HttpOnly" in c and "SameSite=Lax" in c
        for c in cookies
    ), cookies


def test_forwarded_headers_are_ignored_unless_a_proxy_is_trusted(make_app, world):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7",
                 "X-Forwarded-Host": "billing.example"}  # fmt: skip
    direct = make_app(plugins=[])
    resp = direct.test_client().get("/login", headers=forwarded)
    _assert_headers(resp, https=False)  # a client cannot claim https by itself

    proxied = make_app(plugins=[], BEHIND_PROXY=1)
    seen = {}

    @proxied.before_request
    def _remember():
        from flask import request

        seen.update(addr=request.remote_addr, secure=request.is_secure, host=request.host)

    resp = proxied.test_client().post(
        "/login", data={"email": world.operator.email, "password": PASSWORD}, headers=forwarded
    )
    assert resp.status_code == 302
    _assert_headers(resp, https=True)
    assert all("Secure" in c for c in resp.headers.getlist("Set-Cookie"))
    assert seen == {"addr": "203.0.113.7", "secure": True, "host": "billing.example"}
    # only the last hop is trusted: a client-supplied first value is not the address
    proxied.test_client().get(
        "/login", headers={**forwarded, "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    )
    assert seen["addr"] == "203.0.113.9"


def test_the_behind_proxy_setting_comes_from_the_environment(monkeypatch, tmp_path):
    from hostapp import config

    monkeypatch.setenv("BILLHIVE_BEHIND_PROXY", "2")
    assert config.load({"DATA_DIR": str(tmp_path)})["BEHIND_PROXY"] == 2
    monkeypatch.delenv("BILLHIVE_BEHIND_PROXY")
    assert config.load({"DATA_DIR": str(tmp_path)})["BEHIND_PROXY"] == 0


def test_no_template_has_inline_script_or_event_handler_attributes():
    """The CSP allows scripts from files only: page behaviour lives in panel.js."""
    templates = list((ROOT / "core" / "panel" / "templates").rglob("*.html"))
    templates += list((ROOT / "plugins").glob("*/templates/**/*.html"))
    assert len(templates) > 30
    problems = []
    for path in templates:
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag:
                problems.append(f"{path.relative_to(ROOT)}: inline {tag}")
        for attr in re.findall(r"\son[a-z]+\s*=", text):
            problems.append(f"{path.relative_to(ROOT)}: event handler attribute {attr.strip()}")
        if "javascript:" in text:
            problems.append(f"{path.relative_to(ROOT)}: javascript: URL")
    assert not problems, "\n".join(problems)


# -- the panel in a real Chromium under the CSP -----------------------------------------------


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.mark.browser
def test_the_panel_runs_under_its_csp_in_chromium(ctx, world, install_license, live_server, page):
    from tests.test_authz_matrix import Tree, object_rules, url_for

    tree = Tree(ctx, world, install_license)
    violations, errors = [], []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text or "Refused to" in m.text else None)  # fmt: skip
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.operator.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("header nav")

    pages = sorted({
        url_for(rule, tree, "P") if rule.arguments else rule.rule
        for rule in list(ctx.url_map.iter_rules()) + object_rules(ctx)
        if "GET" in rule.methods and not rule.rule.startswith(("/api/", "/static"))
        and not rule.endpoint.endswith("static") and not rule.rule.endswith((".json", ".csv",
        ".pdf")) and "/files/" not in rule.rule and "download" not in rule.rule
        and (not rule.arguments or rule in object_rules(ctx))
    } - {None, "/logout"})  # fmt: skip
    assert len(pages) > 30
    walked = 0
    for path in pages:
        resp = page.goto(f"{live_server}{path}")
        if (
            resp is None
            or resp.status != 200
            or "text/html" not in resp.headers.get("content-type", "")
        ):
            continue
        walked += 1
        assert "script-src 'self'" in resp.headers.get("content-security-policy", ""), path
    assert walked > 25

    # behaviour that moved from inline script to panel.js still works
    page.goto(f"{live_server}/accounts/{tree.accounts['P'].id}/billing/payment-methods")
    page.locator("form[data-confirm] button").first.click()
    dialog = page.locator("dialog#confirm-dialog")  # panel.js's styled confirmation
    assert "Remove this payment method?" in dialog.inner_text()
    dialog.locator("button[data-cancel]").click()
    assert not dialog.is_visible()
    assert page.locator("form[data-confirm]").count() >= 1  # cancelled: nothing removed

    page.goto(f"{live_server}/accounts/{tree.accounts['P'].id}/new")
    page.select_option("#f-type", "reseller")
    assert page.locator(".profile[data-type=reseller]").is_visible()
    page.select_option("#f-type", "customer")
    assert not page.locator(".profile[data-type=reseller]").is_visible()
    assert not violations, violations
    assert not errors, errors
