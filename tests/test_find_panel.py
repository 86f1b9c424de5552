"""Issue 20 item 1 (Find), panel side: the list pages take the API's parameters and show its
messages (422), the account tree is browsable with breadcrumbs, the global search finds
accounts, invoices and the panel's sections within the caller's subtree and privileges.
Both backends."""

from __future__ import annotations

import re

import pytest

PAGES = ["/accounts", "/users", "/billing/subscriptions", "/billing/invoices", "/audit"]


def text(resp) -> str:
    return resp.get_data(as_text=True)


@pytest.mark.parametrize("url", PAGES)
@pytest.mark.parametrize(
    "query, shown",
    [
        ({"sort": "password_hash"}, "sort: must be one of"),
        ({"page": "0"}, "page: must be a page number from 1"),
        ({"per_page": str(10**9)}, "per_page: must be from 1 to"),
    ],
)
def test_bad_list_parameters_show_the_message_with_422(world, panel, url, query, shown):
    resp = panel(world.operator).get(url, query_string=query)
    assert resp.status_code == 422, text(resp)[:300]
    assert shown in text(resp)
    assert 'role="alert"' in text(resp)


def test_a_reversed_audit_range_is_shown_naming_to(world, panel):
    resp = panel(world.operator).get("/audit?from=2026-03-01&to=2026-02-01")
    assert resp.status_code == 422
    assert "to: must not be before &#39;from&#39; (2026-03-01)" in text(resp)
    resp = panel(world.operator).get("/audit?from=2026-02-31")
    assert resp.status_code == 422 and "from: must be a date in YYYY-MM-DD format" in text(resp)


@pytest.mark.parametrize("url", ["/users", "/billing/subscriptions", "/billing/invoices"])
def test_an_account_filter_outside_the_subtree_is_404(world, panel, url):
    client = panel(world.user_a)
    resp = client.get(url, query_string={"account_id": world.customer_b.id})
    assert resp.status_code == 404
    assert "Customer B" not in text(resp)


def test_the_tree_one_level_at_a_time_with_breadcrumbs(world, panel):
    client = panel(world.operator)
    resp = client.get("/accounts")
    body = text(resp)
    assert resp.status_code == 200
    assert "Customer A" in body and "Customer B" in body
    assert re.search(
        r'<nav class="crumbs"[^>]*>.*<span aria-current="page">Provider</span>', body, re.S
    )


def test_a_customer_browses_only_its_own_tree(world, panel):
    client = panel(world.user_a)
    body = text(client.get("/accounts"))
    assert ">Customer A</" in body
    assert "Customer B" not in body and ">Provider</a>" not in body
    assert client.get(f"/accounts?parent_id={world.provider.id}").status_code == 404
    found = text(client.get("/accounts?q=Customer"))
    assert "Customer A" in found and "Customer B" not in found


def test_the_accounts_page_pages_and_keeps_the_search(world, panel):
    for n in range(7):
        world.add_account(world.provider, f"Paged {n}")
    client = panel(world.operator)
    first = text(client.get("/accounts?q=paged&per_page=3"))
    assert "1–3 of 7 accounts" in first
    nxt = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert "q=paged" in nxt and "per_page=3" in nxt and "page=2" in nxt
    second = text(client.get(nxt))
    assert "4–6 of 7 accounts" in second
    names = re.findall(r">(Paged \d)</a>", first) + re.findall(r">(Paged \d)</a>", second)
    assert names == [f"Paged {n}" for n in range(6)]
    # sorting by name descending from the heading's link
    down = text(client.get("/accounts?q=paged&sort=-name"))
    assert re.findall(r">(Paged \d)</a>", down)[0] == "Paged 6"


def test_global_search_finds_accounts_invoices_and_sections(world, panel):
    from core.billing.invoicing import lifecycle as invoices

    line = [{"description": "Work", "quantity": "1", "unit_price": "10"}]
    inv = invoices.issue(invoices.create_draft(None, world.customer_b, world.provider, line))
    op = panel(world.operator)
    hits = op.get("/search.json?q=customer b").get_json()["hits"]
    assert [h["label"] for h in hits if h["kind"] == "account"] == ["Customer B"]
    hits = op.get("/search.json", query_string={"q": inv.number}).get_json()["hits"]
    assert [h["label"] for h in hits if h["kind"] == "invoice"] == [inv.number]
    assert hits[0]["url"].endswith(f"/billing/invoices/{inv.id}")
    hits = op.get("/search.json?q=audit").get_json()["hits"]
    assert ("section", "Audit log", "/audit") in {(h["kind"], h["label"], h["url"]) for h in hits}
    # the customer: its own account only, no invoice of B, no operator section
    a = panel(world.user_a)
    hits = a.get("/search.json?q=customer").get_json()["hits"]
    assert [h["label"] for h in hits if h["kind"] == "account"] == ["Customer A"]
    assert a.get("/search.json", query_string={"q": inv.number}).get_json()["hits"] == []
    assert not [h for h in a.get("/search.json?q=audit").get_json()["hits"]]
    page = text(a.get("/search?q=customer"))
    assert "Customer A" in page and "Customer B" not in page


def test_search_by_id_and_bad_search_text(world, panel):
    op = panel(world.operator)
    hits = op.get(f"/search.json?q={world.customer_a.id}").get_json()["hits"]
    assert "Customer A" in [h["label"] for h in hits]
    resp = op.get("/search.json", query_string={"q": "x" * 101})
    assert resp.status_code == 422 and "q: " in resp.get_json()["error"]
    resp = op.get("/search", query_string={"q": "a\x01b"})
    assert resp.status_code == 422 and "control characters" in text(resp)
    assert op.get("/search.json?q=").get_json()["hits"] == []


def test_list_pages_are_reachable_from_the_menu(world, panel):
    body = text(panel(world.operator).get("/accounts"))
    for href in ('href="/accounts"', 'href="/users"', 'href="/billing/invoices"',
                 'href="/billing/subscriptions"', 'href="/audit"', 'role="search"'):  # fmt: skip
        assert href in body, href
    customer = text(panel(world.user_a).get("/accounts"))
    assert 'href="/audit"' not in customer and 'href="/users"' in customer
