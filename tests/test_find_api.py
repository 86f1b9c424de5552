"""Issue 20 item 1 (Find), API side: search, filters, sorting and paging of accounts, users,
subscriptions, invoices and the audit log (core.find). Bad parameters answer 422 naming the
parameter; filters naming an account outside the caller's subtree answer 404 and leak
nothing; paging headers add up over every page. Both backends."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LISTS = ["/api/v1/accounts", "/api/v1/users", "/api/v1/subscriptions", "/api/v1/invoices",
         "/api/v1/audit"]  # fmt: skip


@pytest.fixture
def tree(world):
    """Customer A with sub-accounts? Customers have none: the provider gets a few more
    customers with names to search for, and each customer a second user."""
    names = ["Zebra Telecom", "alpha Networks", "Beta Voice", "Gamma 100% Fibre", "under_score"]
    extra = [world.add_account(world.provider, n, email=f"desk-{chr(97 + i)}@find.example") for i, n in
             enumerate(names)]  # fmt: skip
    world.add_user(world.customer_a, "second-a@example.com")
    return extra


def links(resp) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', resp.headers["Link"])}


# -- bad parameters: 422 naming the parameter, never a 500 ------------------------------------


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize(
    "query, name",
    [
        ({"sort": "password_hash"}, "sort"),
        ({"sort": "--id"}, "sort"),
        ({"page": "0"}, "page"),
        ({"page": "-3"}, "page"),
        ({"page": "abc"}, "page"),
        ({"per_page": str(10**9)}, "per_page"),
        ({"per_page": "0"}, "per_page"),
        ({"page": "99999999999999999999999"}, "page"),
    ],
)
def test_bad_paging_and_sort_answer_422_naming_the_parameter(world, api, url, query, name):
    resp = api(world.operator).get(url, query_string=query)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    body = resp.get_json()
    assert list(body["errors"]) == [name]
    assert name in body["message"]


@pytest.mark.parametrize(
    "query, name",
    [
        ({"from": "2026-02-30"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-01-05T10:00"}, "from"),
        ({"from": "2026-03-01", "to": "2026-02-28"}, "to"),
    ],
)
def test_bad_audit_dates_answer_422_naming_the_parameter(world, api, query, name):
    resp = api(world.operator).get("/api/v1/audit", query_string=query)
    assert resp.status_code == 422
    assert list(resp.get_json()["errors"]) == [name]


def test_unknown_status_and_kind_are_refused_not_ignored(world, api):
    client = api(world.operator)
    for name, value in (("status", "paid-ish"), ("kind", "refund")):
        resp = client.get("/api/v1/invoices", query_string={name: value})
        assert resp.status_code == 422
        assert list(resp.get_json()["errors"]) == [name]
    resp = client.get("/api/v1/subscriptions", query_string={"status": "cancelled"})
    assert resp.status_code == 422
    resp = client.get("/api/v1/accounts", query_string={"status": "gone"})
    assert resp.status_code == 422 and list(resp.get_json()["errors"]) == ["status"]


def test_oldest_and_newest_dates_are_fine(world, api):
    client = api(world.operator)
    resp = client.get("/api/v1/audit", query_string={"from": "0001-01-01", "to": "9999-12-31"})
    assert resp.status_code == 200
    assert int(resp.headers["X-Total-Count"]) == len(resp.get_json()) > 0
    resp = client.get("/api/v1/audit", query_string={"from": "9999-12-31"})
    assert resp.status_code == 200 and resp.get_json() == []
    resp = client.get("/api/v1/audit", query_string={"to": "0001-01-01"})
    assert resp.status_code == 200 and resp.get_json() == []


def test_the_largest_page_and_per_page_answer_empty_or_everything(world, api, tree):
    client = api(world.operator)
    resp = client.get("/api/v1/accounts", query_string={"page": "1000000", "per_page": "500"})
    assert resp.status_code == 200 and resp.get_json() == []
    assert resp.headers["X-Total-Count"] == "8"
    resp = client.get("/api/v1/accounts", query_string={"per_page": "500"})
    assert len(resp.get_json()) == 8


# -- scoping: nothing outside the subtree, never a leak ------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/users", "/api/v1/subscriptions", "/api/v1/invoices"])
def test_an_account_filter_outside_the_subtree_is_404_like_a_missing_one(world, api, url):
    client = api(world.user_a)
    outside = client.get(url, query_string={"account_id": world.customer_b.id})
    missing = client.get(url, query_string={"account_id": 10**12})
    assert outside.status_code == missing.status_code == 404
    assert outside.get_json()["message"].replace(str(world.customer_b.id), "N") == (
        missing.get_json()["message"].replace(str(10**12), "N")
    )
    # the provider (above a customer) is outside too
    assert client.get(url, query_string={"account_id": world.provider.id}).status_code == 404


def test_a_parent_filter_outside_the_subtree_is_404(world, api):
    client = api(world.user_a)
    assert (
        client.get("/api/v1/accounts", query_string={"parent_id": world.provider.id}).status_code
        == 404
    )


def test_search_never_finds_outside_the_subtree(world, api, tree):
    client = api(world.user_a)
    for q in ("Customer", "Zebra", str(world.customer_b.id), "example"):
        body = client.get("/api/v1/accounts", query_string={"q": q}).get_json()
        assert {a["id"] for a in body} <= {world.customer_a.id}, q
        users = client.get("/api/v1/users", query_string={"q": q}).get_json()
        assert {u["account_id"] for u in users} <= {world.customer_a.id}, q
    body = client.get("/api/v1/users").get_json()
    assert sorted(u["email"] for u in body) == ["a@example.com", "second-a@example.com"]


def test_a_customer_without_users_view_cannot_list_users(world, api):
    from core.models import Role

    plain = world.add_user(
        world.customer_a, "desk@example.com", role_code=None,
        roles=[Role.get(Role.account == world.customer_a, Role.default_code == "full_access")],
    )  # fmt: skip
    assert api(plain).get("/api/v1/users").status_code == 200
    nobody = world.add_user(world.customer_a, "nobody@example.com", role_code=None)
    assert api(nobody).get("/api/v1/users").status_code == 403


def test_a_second_root_is_outside_the_first_roots_lists(world, api, tree):
    """Scoping skips its condition only for the tree's single root (rbac.sees_every_account):
    with a second root (the operator's shell can make one) each root sees its own tree."""
    from core import accounts
    from core.billing.invoicing import lifecycle as invoices
    from core.models import AuditEntry

    other = accounts.create_account(None, {"name": "Other Root", "type": "provider",
                                           "parent_id": None})  # fmt: skip
    below = world.add_account(other, "Other Customer")
    line = [{"description": "Work", "quantity": "1", "unit_price": "10"}]
    invoices.issue(invoices.create_draft(None, below, other, line))
    client = api(world.operator)
    for url in ("/api/v1/accounts?per_page=500", "/api/v1/invoices", "/api/v1/accounts?q=other"):
        body = client.get(url).get_json()
        ids = {row.get("account_id", row["id"]) for row in body}
        assert not ids & {other.id, below.id}, url
    audit = client.get("/api/v1/audit?per_page=500").get_json()
    assert below.id not in {e["account_id"] for e in audit}
    assert AuditEntry.select().where(AuditEntry.account == below.id).exists()
    resp = client.get(f"/api/v1/invoices?account_id={below.id}")
    assert resp.status_code == 404


def test_the_audit_log_stays_the_operators(world, api):
    assert api(world.user_a).get("/api/v1/audit").status_code == 403


# -- what a user checks: search, filters, sort, paging -----------------------------------------


def test_search_accounts_by_name_email_and_id(world, api, tree):
    client = api(world.operator)

    def names(**query):
        return [a["name"] for a in client.get("/api/v1/accounts", query_string=query).get_json()]

    assert names(q="zebra") == ["Zebra Telecom"]
    assert names(q="ALPHA") == ["alpha Networks"]
    assert names(q="DESK-D@find") == ["Gamma 100% Fibre"]
    assert names(q=str(world.customer_b.id)) == ["Customer B"]
    # LIKE's wildcards are searched as themselves
    assert names(q="100%") == ["Gamma 100% Fibre"]
    assert names(q="_") == ["under_score"]
    assert names(q="%") == ["Gamma 100% Fibre"]
    assert names(q="no such thing") == []
    # digits that are not ASCII, or past a 64-bit id, are text to search, never an error
    assert names(q="\u00b2") == names(q="\u0663") == []
    assert names(q="9" * 30) == []


def test_sorting_accounts_both_ways(world, api, tree):
    client = api(world.operator)
    up = [a["name"] for a in client.get("/api/v1/accounts?sort=name").get_json()]
    down = [a["name"] for a in client.get("/api/v1/accounts?sort=-name").get_json()]
    assert up == down[::-1]
    assert up.index("Beta Voice") < up.index("Zebra Telecom")
    ids = [a["id"] for a in client.get("/api/v1/accounts?sort=-id").get_json()]
    assert ids == sorted(ids, reverse=True)
    # the default stays the tree order the API answered before
    tree_order = client.get("/api/v1/accounts").get_json()
    assert tree_order[0]["id"] == world.provider.id


def test_one_level_of_the_tree(world, api, tree):
    body = api(world.operator).get(f"/api/v1/accounts?parent_id={world.provider.id}").get_json()
    assert world.provider.id not in {a["id"] for a in body}
    assert len(body) == 7 and {a["parent_id"] for a in body} == {world.provider.id}


def test_paging_headers_walk_every_row_once(world, api, tree):
    client = api(world.operator)
    url, seen = "/api/v1/accounts?sort=name&per_page=3", []
    pages = 0
    while url:
        resp = client.get(url)
        assert resp.status_code == 200
        assert resp.headers["X-Total-Count"] == "8"
        seen += [a["id"] for a in resp.get_json()]
        url = links(resp).get("next")
        if url:
            assert "sort=name" in url and "per_page=3" in url
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 8
    last = links(client.get("/api/v1/accounts?sort=name&per_page=3"))["last"]
    assert "page=3" in last


def test_filters_users_by_account_and_activity(world, api, tree):
    from core import users

    client = api(world.operator)
    second = world.add_user(world.customer_a, "third-a@example.com")
    users.deactivate(world.operator, second)
    body = client.get(f"/api/v1/users?account_id={world.customer_a.id}").get_json()
    assert [u["email"] for u in body] == ["a@example.com", "second-a@example.com",
                                           "third-a@example.com"]  # fmt: skip
    inactive = client.get(f"/api/v1/users?account_id={world.customer_a.id}&active=false")
    assert [u["email"] for u in inactive.get_json()] == ["third-a@example.com"]
    assert client.get("/api/v1/users?active=perhaps").status_code == 422


def test_audit_filters_account_actor_action_and_days(world, api, tree):
    from core import audit
    from core.db import database
    from core.models import AuditEntry

    client = api(world.operator)
    with database.atomic():
        old = audit.record(world.operator, "find.test", object_type="x", object_id=1,
                           account=world.customer_a.id)  # fmt: skip
    AuditEntry.update(at=datetime(2026, 1, 31, 23, 59, 59)).where(AuditEntry.id == old.id).execute()

    def ids(**query):
        resp = client.get("/api/v1/audit", query_string=query)
        assert resp.status_code == 200, resp.get_json()
        return [e["id"] for e in resp.get_json()]

    assert ids(action="find.test") == [old.id]
    # the last character Unicode has: a prefix with nothing after it, never a 500
    assert ids(action="find.\U0010ffff") == []
    assert old.id in ids(action="find.")
    assert ids(action="find.test", **{"from": "2026-01-31", "to": "2026-01-31"}) == [old.id]
    assert ids(action="find.test", **{"from": "2026-02-01"}) == []
    assert ids(action="find.test", to="2026-01-30") == []
    assert ids(action="find.test", account_id=world.customer_a.id) == [old.id]
    assert ids(action="find.test", account_id=world.customer_b.id) == []
    assert ids(action="find.test", actor="OP@example") == [old.id]
    assert ids(action="find.test", actor="a@example.com") == []
    # newest first by time: the backdated entry comes last
    every = client.get("/api/v1/audit?per_page=500").get_json()
    assert [e["at"] for e in every] == sorted((e["at"] for e in every), reverse=True)
    assert every[-1]["id"] == old.id
    oldest_first = client.get("/api/v1/audit?per_page=500&sort=at").get_json()
    assert oldest_first[0]["id"] == old.id


def _invoices(world):
    """Customer A: two issued invoices and a draft; customer B: one issued invoice."""
    from datetime import date

    from core.billing.invoicing import lifecycle as invoices

    line = [{"description": "Work", "quantity": "1", "unit_price": "10"}]
    made = []
    for account, start in ((world.customer_a, date(2026, 1, 1)), (world.customer_a,
                           date(2026, 2, 1)), (world.customer_b, date(2026, 1, 1))):  # fmt: skip
        draft = invoices.create_draft(None, account, world.provider, line, period_start=start)
        made.append(invoices.issue(draft))
    made.append(invoices.create_draft(None, world.customer_a, world.provider, line))
    return made


def test_invoice_filters_search_and_sort(world, api):
    a1, a2, b1, draft = _invoices(world)
    client = api(world.operator)

    def ids(**query):
        resp = client.get("/api/v1/invoices", query_string=query)
        assert resp.status_code == 200, resp.get_json()
        assert int(resp.headers["X-Total-Count"]) >= len(resp.get_json())
        return [i["id"] for i in resp.get_json()]

    assert ids() == [draft.id, b1.id, a2.id, a1.id]
    assert ids(status="draft") == [draft.id]
    assert ids(account_id=world.customer_a.id, status="issued") == [a2.id, a1.id]
    assert ids(period="2026-01-01") == [b1.id, a1.id]
    assert ids(q=b1.number) == [b1.id]
    assert ids(q=b1.number.lower()) == [b1.id]
    assert ids(sort="number", status="issued") == [a1.id, a2.id, b1.id]
    assert ids(sort="-issued_at", status="issued") == [b1.id, a2.id, a1.id]
    assert ids(kind="credit_note") == []
    # the customer sees only its own, whatever it searches
    mine = api(world.user_a).get("/api/v1/invoices", query_string={"q": b1.number})
    assert mine.status_code == 200 and mine.get_json() == []
    assert api(world.user_a).get("/api/v1/invoices").headers["X-Total-Count"] == "3"
    resp = client.get("/api/v1/invoices", query_string={"period": "2026-1-1"})
    assert resp.status_code == 422 and list(resp.get_json()["errors"]) == ["period"]


def test_subscription_filters(world, api):
    from tests.billing_support import setup_catalog, subscribe

    _, plan = setup_catalog(world.provider)
    ended = subscribe(world.customer_a, plan, start="2025-01-01", end="2025-06-01")
    running = subscribe(world.customer_a, plan, start="2026-01-01")
    other = subscribe(world.customer_b, plan, start="2026-01-01")
    client = api(world.operator)

    def ids(**query):
        resp = client.get("/api/v1/subscriptions", query_string=query)
        assert resp.status_code == 200, resp.get_json()
        return [s["id"] for s in resp.get_json()]

    assert ids() == [ended.id, running.id, other.id]
    assert ids(status="ended") == [ended.id]
    assert ids(status="active", account_id=world.customer_a.id) == [running.id]
    assert ids(q="standard", sort="-start") == [other.id, running.id, ended.id]
    assert ids(plan_id=plan.id + 1000) == []
    assert api(world.user_b).get("/api/v1/subscriptions").get_json()[0]["id"] == other.id


def test_openapi_lists_every_list_parameter_and_the_paging_headers(ctx):
    doc = ctx.test_client().get("/api/v1/openapi.json").get_json()
    expected = {
        "/api/v1/accounts": {"q", "parent_id", "type", "status", "sort", "page", "per_page"},
        "/api/v1/users": {"q", "account_id", "active", "sort", "page", "per_page"},
        "/api/v1/subscriptions": {
            "q",
            "account_id",
            "plan_id",
            "status",
            "sort",
            "page",
            "per_page",
        },  # fmt: skip
        "/api/v1/invoices": {
            "q",
            "status",
            "kind",
            "account_id",
            "period",
            "sort",
            "page",
            "per_page",
        },  # fmt: skip
        "/api/v1/audit": {
            "account_id",
            "actor",
            "action",
            "from",
            "to",
            "sort",
            "page",
            "per_page",
        },  # fmt: skip
    }
    for path, names in expected.items():
        get = doc["paths"][path]["get"]
        params = {p["name"]: p for p in get["parameters"] if p["in"] == "query"}
        assert set(params) == names, path
        assert params["per_page"]["schema"]["maximum"] == 500
        assert (
            "-id" in params["sort"]["schema"]["enum"] or "-at" in params["sort"]["schema"]["enum"]
        )
        headers = get["responses"]["200"]["headers"]
        assert {"X-Total-Count", "Link"} <= set(headers), path
        assert {"403", "404", "422"} <= set(get["responses"]), path


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(per_page=st.integers(1, 9), sort=st.sampled_from(["name", "-name", "id", "-id", "tree",
                                                          "-tree"]))  # fmt: skip
def test_any_page_size_and_sort_covers_every_account_once(world, api, tree, per_page, sort):
    client = api(world.operator)
    seen, page = [], 1
    while True:
        resp = client.get("/api/v1/accounts", query_string={"sort": sort, "per_page": per_page,
                                                             "page": page})  # fmt: skip
        rows = resp.get_json()
        if not rows:
            break
        seen += [a["id"] for a in rows]
        page += 1
    assert len(seen) == len(set(seen)) == int(resp.headers["X-Total-Count"]) == 8
