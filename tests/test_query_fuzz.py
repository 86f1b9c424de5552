"""Issue 16 item 10: bad query values answer 400/404 (or are ignored), never 500.

Every GET route of the panel and the API (read from the URL map, ids filled with real
objects as in ``tests/test_authz_matrix.py``) is asked with every query parameter the
code base reads set to hostile values: non-numbers, huge numbers, NUL and control
characters, impossible dates, SQL and markup."""

from __future__ import annotations

import pytest

from tests.test_authz_matrix import Tree, object_rules, url_for

# every name the views read from request.args (grep request.args) and a few common ones
NAMES = ["watch", "page", "per_page", "from", "to", "start", "end", "currency", "kind",
         "tab", "next", "q", "status", "account_id", "customer_id", "date", "format", "limit",
         "offset", "period", "month", "unit_id", "type", "product", "sort", "level",
         "psa_company_id", "mapping_type", "psa_product", "step", "run_id", "invoice_id"]  # fmt: skip
VALUES = ["abc", "-1", "0", "99999999999999999999999", "1e309", "NaN", "\x00", "%00", "\r\n",
          "2026-13-45", "0000-00-00", "'; DROP TABLE account; --", "<script>x</script>", "",
          "[]", "{}", "\u202e", "\u00b2", "1" * 5000]  # fmt: skip


@pytest.fixture
def tree(ctx, world, install_license):
    return Tree(ctx, world, install_license)


def _get_rules(app):
    plain = [r for r in app.url_map.iter_rules() if not r.arguments and "GET" in r.methods
             and r.endpoint != "static" and not r.endpoint.endswith(".static")]  # fmt: skip
    with_ids = [r for r in object_rules(app) if "GET" in r.methods]
    return sorted(plain + with_ids, key=lambda r: r.rule)


def test_no_get_route_answers_500_to_bad_query_values(ctx, tree, api, panel):
    clients = {True: api(tree.admins["P"]), False: panel(tree.admins["P"])}
    problems, checked = [], 0
    for rule in _get_rules(ctx):
        if rule.endpoint == "panel.logout":
            continue
        url = url_for(rule, tree, "P") if rule.arguments else rule.rule
        if url is None:
            continue
        client = clients[rule.rule.startswith("/api/")]
        for value in VALUES:
            resp = client.get(url, query_string={name: value for name in NAMES})
            checked += 1
            if resp.status_code >= 500 and resp.status_code != 502:  # 502: no ConnectWise here
                problems.append(f"GET {url} ?*={value[:20]!r}: {resp.status_code}")
    assert checked > 500
    assert not problems, f"{len(problems)} of {checked}:\n" + "\n".join(problems)


@pytest.mark.parametrize("value", ["abc", "999999", "99999999999999999999999", "-1"])
def test_watching_a_run_that_is_not_there_is_404(ctx, world, panel, value):
    resp = panel(world.operator).get("/billing/runs", query_string={"watch": value})
    assert resp.status_code == 404
    assert "not found" in resp.get_data(as_text=True)


def test_a_nul_in_a_panel_query_is_400(ctx, world, panel):
    client = panel(world.operator)
    for url in ("/billing/invoices?status=issued%00", "/billing/runs?watch=1%00",
                f"/accounts/{world.customer_a.id}/billing/transactions?kind=%00"):  # fmt: skip
        resp = client.get(url)
        assert resp.status_code == 400, url
        assert "NUL" in resp.get_data(as_text=True)


def test_watching_a_visible_run_shows_it(ctx, world, panel):
    from core.billing.models import BillRun

    run = BillRun.create(as_of="2026-02-01", scope=world.provider)
    resp = panel(world.operator).get("/billing/runs", query_string={"watch": run.id})
    assert resp.status_code == 200
    assert f"Bill run {run.id}:" in resp.get_data(as_text=True)
