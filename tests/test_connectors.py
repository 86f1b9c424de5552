"""The core's billing-connector runtime (core.connectors) with a test connector
(tests/plugins/bookkeeper.py, and doorbell.py without settings): settings with encrypted secrets, the push after an invoice is
issued, the sync log, retries, scoping, each connector's own privileges (next to
psa_mapping's connector) and field errors; and core migration 8 moving the former
psa_mapping tables into the core's."""

from __future__ import annotations

import pytest

from tests.plugins import bookkeeper

SETTINGS = {"url": "https://books.example.com/in", "token": "tok-SECRET-123456", "shelf": 3}


@pytest.fixture
def app(make_app):
    return make_app(
        plugins=["psa_mapping"],
        modules={"bookkeeper": "tests.plugins.bookkeeper", "doorbell": "tests.plugins.doorbell"},
    )


@pytest.fixture
def books(ctx, world):
    ctx.extensions["billhive"].host.set_enabled("bookkeeper", True)
    bookkeeper.BOOKED.clear()
    bookkeeper.FAILURES.clear()
    yield bookkeeper
    bookkeeper.FAILURES.clear()


def configure(world, **overrides):
    from core.connectors import settings

    return settings.save(None, world.provider, "bookkeeper", {**SETTINGS, **overrides})


def issue(world, customer=None, lines=(("Seat", "2"),)):
    from core.billing.invoicing import lifecycle as invoices

    draft = invoices.create_draft(
        None,
        customer or world.customer_a,
        world.provider,
        [{"description": d, "quantity": q, "unit_price": "5.00"} for d, q in lines],
    )
    return invoices.issue(draft)


def test_secrets_are_encrypted_at_rest_and_never_shown(books, world, api, panel, ctx):
    from core.db import database

    url = f"/api/v1/accounts/{world.provider.id}/connectors/bookkeeper"
    resp = api(world.operator).put(url, json=SETTINGS)
    assert resp.status_code == 200, resp.get_json()
    shown = resp.get_json()["settings"]
    assert shown["token"] == "••••••3456" and shown["url"] == SETTINGS["url"]
    # the raw row: the token is in no column, the plain settings are
    values, secret = database.execute_sql(
        "SELECT \"values\", secrets FROM connector_settings WHERE connector = 'bookkeeper'"
    ).fetchone()
    assert "tok-SECRET" not in values and "tok-SECRET" not in secret
    assert "books.example.com" in values and secret.startswith("gAAAA")  # a Fernet token
    listed = api(world.operator).get(f"/api/v1/accounts/{world.provider.id}/connectors")
    assert "tok-SECRET" not in listed.get_data(as_text=True)
    page = panel(world.operator).get(f"/accounts/{world.provider.id}/connectors")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Bookkeeper" in text and "••••••3456" in text
    assert "tok-SECRET" not in text
    # a save without the secret keeps the stored one
    resp = api(world.operator).put(url, json={"url": SETTINGS["url"], "shelf": 4})
    assert resp.status_code == 200
    issue(world)
    assert books.BOOKED[-1]["token"] == SETTINGS["token"] and books.BOOKED[-1]["shelf"] == 4


def test_bad_settings_answer_422_naming_the_field_and_write_nothing(books, world, api, panel):
    from core.connectors.models import ConnectorSettings

    url = f"/api/v1/accounts/{world.provider.id}/connectors/bookkeeper"
    resp = api(world.operator).put(url, json={**SETTINGS, "url": "not a url", "shelf": 12})
    assert resp.status_code == 422
    assert set(resp.get_json()["errors"]) == {"url", "shelf"}
    resp = api(world.operator).put(url, json={"url": SETTINGS["url"]})
    assert resp.status_code == 422 and set(resp.get_json()["errors"]) == {"token"}
    assert ConnectorSettings.select().count() == 0
    resp = panel(world.operator).post(
        f"/accounts/{world.provider.id}/connectors/bookkeeper",
        data={**SETTINGS, "shelf": "0", "action": "save"},
    )
    assert resp.status_code == 422 and "Shelf:" in resp.get_data(as_text=True)
    assert ConnectorSettings.select().count() == 0


def test_an_issued_invoice_is_pushed_and_logged(books, world, api):
    from core.connectors.models import SyncItem, SyncRun

    configure(world)
    invoice = issue(world)
    assert books.BOOKED == [
        {"token": SETTINGS["token"], "shelf": 3, "number": invoice.number, "total": 1000}
    ]
    item = SyncItem.get()
    assert (item.invoice_id, item.outcome, item.attempts) == (invoice.id, "created", 1)
    run = SyncRun.get()
    assert (run.trigger, run.invoice_id, run.status) == ("invoice_finalized", invoice.id, "ok")
    runs = api(world.operator).get(
        f"/api/v1/accounts/{world.provider.id}/connectors/bookkeeper/sync-runs"
    )
    assert [r["status"] for r in runs.get_json()] == ["ok"]
    detail = api(world.operator).get(f"/api/v1/connectors/sync-runs/{run.id}").get_json()
    assert [(i["external_key"], i["outcome"]) for i in detail["items"]] == [
        (f"invoice:{invoice.id}", "created")
    ]
    # a customer without settings above it is not pushed; nothing without settings at all
    books.BOOKED.clear()
    issue(world, world.customer_b)
    assert len(books.BOOKED) == 1


def test_a_failed_push_is_logged_and_retried_never_duplicated(books, world, panel):
    from core.connectors.models import SyncItem, SyncRun

    configure(world)
    books.FAILURES.append("the book is closed (503)")
    invoice = issue(world)
    assert invoice.status == "issued"  # a connector's trouble never breaks issuing
    item = SyncItem.get()
    assert (item.outcome, item.message) == ("failed", "the book is closed (503)")
    assert SyncRun.get().status == "failed" and not books.BOOKED
    client = panel(world.operator)
    page = client.get(f"/accounts/{world.provider.id}/connectors").get_data(as_text=True)
    assert "the book is closed (503)" in page and "Retry (1 to push)" in page
    resp = client.post(
        f"/accounts/{world.provider.id}/connectors/bookkeeper/retry", follow_redirects=True
    )
    assert "Bookkeeper: sync ok" in resp.get_data(as_text=True)
    item = SyncItem.get()
    assert (item.outcome, item.attempts) == ("created", 2)
    assert [b["number"] for b in books.BOOKED] == [invoice.number]
    # a second retry has nothing to push: the invoice is booked once
    client.post(f"/accounts/{world.provider.id}/connectors/bookkeeper/retry")
    assert len(books.BOOKED) == 1 and SyncRun.select().count() == 3


def test_uncertain_items_stay_until_a_sync_resolves_them(books, world):
    from core.connectors import sync
    from core.connectors.models import SyncItem

    configure(world)
    books.FAILURES.append(("uncertain", "no answer in time"))
    issue(world)
    assert SyncItem.get().outcome == "uncertain"
    run = sync.retry(None, world.provider, "bookkeeper")
    assert run.status == "ok" and SyncItem.get().outcome == "created"


def test_connectors_outside_the_callers_subtree_are_404(books, world, api, panel):
    configure(world)
    for path in ("connectors", "connectors/bookkeeper/sync-runs"):
        resp = api(world.user_a).get(f"/api/v1/accounts/{world.provider.id}/{path}")
        assert resp.status_code == 404, path
    resp = api(world.user_a).put(
        f"/api/v1/accounts/{world.provider.id}/connectors/bookkeeper", json=SETTINGS
    )
    assert resp.status_code == 404
    # a customer account has no connectors of its own
    resp = api(world.user_a).get(f"/api/v1/accounts/{world.customer_a.id}/connectors")
    assert resp.status_code == 404
    page = panel(world.user_a).get(f"/accounts/{world.provider.id}/connectors")
    assert page.status_code == 404
    resp = panel(world.user_a).post(f"/accounts/{world.provider.id}/connectors/bookkeeper/retry")
    assert resp.status_code == 404


def test_psa_mapping_tables_move_into_the_core_tables(books, world, ctx):
    """Core migration 8 on an install that had psa_mapping's own tables: settings (keys
    encrypted again with the connector key), mappings, links, runs and items move; the old
    tables go."""
    import base64
    import hashlib

    from cryptography.fernet import Fernet

    from core.connectors import secrets
    from core.connectors.migrations import move_psa_mapping
    from core.connectors.models import (
        ConnectorLink,
        ConnectorMapping,
        ConnectorSettings,
        SyncItem,
        SyncRun,
    )
    from core.db import database

    old = Fernet(
        base64.urlsafe_b64encode(
            hashlib.sha256(b"billhive-psa:" + ctx.config["SECRET_KEY"].encode()).digest()
        )
    )
    enc = {k: old.encrypt(f"{k}-value-0000".encode()).decode() for k in ("pub", "priv", "cid")}
    p, a = world.provider.id, world.customer_a.id
    for sql, params in [
        ("CREATE TABLE psa_connection (id INTEGER PRIMARY KEY, account_id INTEGER, site_url "
         "TEXT, company_id TEXT, public_key_enc TEXT, private_key_enc TEXT, client_id_enc TEXT, "
         "timeout REAL, max_retries INTEGER, backoff REAL, last_test_at TIMESTAMP, last_test_ok "
         "BOOLEAN, last_test_message TEXT, updated_at TIMESTAMP, updated_by_id INTEGER)", ()),
        ("INSERT INTO psa_connection VALUES (1, %s, 'https://cw.example.com', 'acme', %s, %s, "
         "%s, 10.0, 3, 0.5, NULL, NULL, '', '2026-01-01 00:00:00', NULL)",
         (p, enc["pub"], enc["priv"], enc["cid"])),
        ("CREATE TABLE psa_mapping (id INTEGER PRIMARY KEY, account_id INTEGER, product_code "
         "TEXT, mapping_type TEXT, psa_product TEXT, psa_product_name TEXT, unique_id TEXT, "
         "level INTEGER, source TEXT, created_at TIMESTAMP, created_by_id INTEGER)", ()),
        ("INSERT INTO psa_mapping VALUES (5, %s, 'M365', 'per_unit', 'M365-BP', 'Premium', '*', "
         "2, 'billhive', '2026-01-01 00:00:00', NULL)", (p,)),
        ("CREATE TABLE company_link (id INTEGER PRIMARY KEY, account_id INTEGER, customer_id "
         "INTEGER, psa_company_id INTEGER, psa_company_name TEXT, psa_company_identifier TEXT, "
         "agreement_id INTEGER, agreement_name TEXT, suggested_at TIMESTAMP, confirmed_at "
         "TIMESTAMP, confirmed_by_id INTEGER)", ()),
        ("INSERT INTO company_link VALUES (2, %s, %s, 77, 'Customer A Holdings', 'CustA', 12, "
         "'MSA', '2026-01-01 00:00:00', '2026-01-02 00:00:00', NULL)", (p, a)),
        ("CREATE TABLE sync_run (id INTEGER PRIMARY KEY, account_id INTEGER, trigger TEXT, "
         "invoice_id INTEGER, started_at TIMESTAMP, finished_at TIMESTAMP, status TEXT, message "
         "TEXT, counts TEXT)", ()),
        ("INSERT INTO sync_run VALUES (9, %s, 'cli', NULL, '2026-01-03 00:00:00', NULL, 'ok', "
         "'1 item(s): 1 created', '{\"created\": 1}')", (p,)),
        ("CREATE TABLE sync_item (id INTEGER PRIMARY KEY, account_id INTEGER, customer_id "
         "INTEGER, run_id INTEGER, mapping_id INTEGER, invoice_id INTEGER, product_code TEXT, "
         "psa_product TEXT, unique_id TEXT, level INTEGER, quantity TEXT, agreement_id INTEGER, "
         "external_key TEXT, outcome TEXT, message TEXT, addition_id INTEGER, attempts INTEGER, "
         "created_at TIMESTAMP, updated_at TIMESTAMP)", ()),
        ("INSERT INTO sync_item VALUES (4, %s, %s, 9, 5, 31, 'M365', 'M365-BP', '*', 2, '3', 12, "
         "%s, 'created', 'addition #8', 8, 1, '2026-01-03 00:00:00', '2026-01-03 00:00:00')",
         (p, a, f"a{a}:m5")),
    ]:  # fmt: skip
        if database.param == "?":
            sql = sql.replace("%s", "?")
        database.execute_sql(sql, params)

    move_psa_mapping(None, database)

    row = ConnectorSettings.get(ConnectorSettings.connector == "connectwise")
    assert row.account_id == p and row.values["site_url"] == "https://cw.example.com"
    assert secrets.decrypt(row.secrets) == {
        "public_key": "pub-value-0000",
        "private_key": "priv-value-0000",
        "client_id": "cid-value-0000",
    }
    mapping = ConnectorMapping.get_by_id(5)
    assert (mapping.remote_product, mapping.level, mapping.connector) == (
        "M365-BP",
        2,
        "connectwise",
    )
    link = ConnectorLink.get_by_id(2)
    assert (link.customer_id, link.remote_id, link.target_id) == (a, 77, 12) and link.confirmed
    assert SyncRun.get_by_id(9).counts == {"created": 1}
    item = SyncItem.get_by_id(4)
    assert (item.run_id, item.mapping_id, item.key, item.remote_id) == (9, 5, "m5", 8)
    for table in ("psa_connection", "psa_mapping", "company_link", "sync_run", "sync_item"):
        assert not database.table_exists(table)
    # new rows get new ids after the moved ones
    assert ConnectorMapping.create(account=p, connector="x", product_code="A", mapping_type="t",
                                   remote_product="B").id > 5  # fmt: skip


def test_settings_can_be_saved_again_after_the_connector_key_changed(books, world, api):
    """Stored secrets the instance cannot read any more (its connector key changed) count as
    none: typing every secret again saves the settings; a blank one is a 422 naming it."""
    from cryptography.fernet import Fernet

    from core.connectors import secrets
    from core.connectors.models import ConnectorSettings

    row = configure(world)
    row.secrets = secrets.encrypt({"token": "tok-LOST-000000"}, key=Fernet.generate_key())
    row.save()
    url = f"/api/v1/accounts/{world.provider.id}/connectors/bookkeeper"
    resp = api(world.operator).put(url, json={"url": SETTINGS["url"], "shelf": 5})
    assert resp.status_code == 422, resp.get_json()
    assert set(resp.get_json()["errors"]) == {"token"}
    resp = api(world.operator).put(url, json={**SETTINGS, "token": "tok-NEW-654321"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["settings"]["token"] == "••••••4321"
    row = ConnectorSettings.get()
    assert secrets.decrypt(row.secrets) == {"token": "tok-NEW-654321"}
    issue(world)
    assert books.BOOKED[-1]["token"] == "tok-NEW-654321"


CW = {
    "site_url": "https://cw.example.com",
    "company_id": "acme",
    "public_key": "pub-0000000000",
    "private_key": "priv-000000000",
    "client_id": "client-0000000",
}


@pytest.fixture
def cw_enabled(ctx, install_license):
    """psa_mapping's ConnectWise connector next to the bookkeeper (psa.view / psa.edit)."""
    install_license(["BH-PSA"])
    ctx.extensions["billhive"].host.set_enabled("psa_mapping", True)


def user_with(world, email, *privileges):
    from core import roles

    role = roles.create_role(
        None,
        world.provider,
        {"name": email, "description": "a test role", "privileges": list(privileges)},
    )
    return world.add_user(world.provider, email, role_code=None, roles=[role])


def test_a_connector_is_changed_only_with_its_own_edit_privilege(
    books, cw_enabled, world, api, panel
):
    """billing.edit without psa.edit (as the default role "Customer Full Access" grants)
    changes and retries the bookkeeper (billing.view/billing.edit, the default), never
    ConnectWise (psa.view/psa.edit); it does not even see it."""
    from core.connectors.models import ConnectorSettings, SyncRun

    configure(world)
    cw_run = SyncRun.create(
        account=world.provider, connector="connectwise", trigger="cli", status="ok"
    )
    clerk = user_with(world, "clerk@example.com", "billing.view", "billing.edit")
    base = f"/api/v1/accounts/{world.provider.id}/connectors"
    client = api(clerk)
    assert client.put(f"{base}/connectwise", json=CW).status_code == 403
    assert client.post(f"{base}/connectwise/sync-runs").status_code == 403
    assert client.post(f"{base}/connectwise/test").status_code == 403
    assert client.get(f"{base}/connectwise/sync-runs").status_code == 403
    assert client.get(f"/api/v1/connectors/sync-runs/{cw_run.id}").status_code == 403
    assert [c["code"] for c in client.get(base).get_json()] == ["bookkeeper"]
    assert client.put(f"{base}/bookkeeper", json=SETTINGS).status_code == 200
    assert client.post(f"{base}/bookkeeper/sync-runs").status_code == 201
    page = panel(clerk)
    url = f"/accounts/{world.provider.id}/connectors"
    resp = page.post(f"{url}/connectwise", data={**CW, "action": "save"})
    assert resp.status_code == 403
    assert page.post(f"{url}/connectwise/retry").status_code == 403
    text = page.get(url).get_data(as_text=True)
    assert 'data-connector="bookkeeper"' in text and 'data-connector="connectwise"' not in text
    assert not ConnectorSettings.select().where(ConnectorSettings.connector == "connectwise")
    assert SyncRun.select().where(SyncRun.connector == "connectwise").count() == 1


def test_psa_privileges_alone_reach_connectwise_but_not_the_bookkeeper(
    books, cw_enabled, world, api
):
    clerk = user_with(world, "psa@example.com", "psa.view", "psa.edit")
    base = f"/api/v1/accounts/{world.provider.id}/connectors"
    client = api(clerk)
    assert [c["code"] for c in client.get(base).get_json()] == ["connectwise"]
    assert client.put(f"{base}/bookkeeper", json=SETTINGS).status_code == 403
    assert client.get(f"{base}/bookkeeper/sync-runs").status_code == 403
    resp = client.put(f"{base}/connectwise", json={**CW, "site_url": "ftp://cw"})
    assert resp.status_code == 422 and "site_url" in resp.get_json()["errors"]


def test_the_connectors_page_needs_a_privilege_to_view_one(books, world, api, panel):
    nobody = user_with(world, "nobody@example.com", "accounts.view")
    resp = api(nobody).get(f"/api/v1/accounts/{world.provider.id}/connectors")
    assert resp.status_code == 403


def test_a_connector_without_settings_is_set_up_and_pushed(ctx, world, api, panel):
    from tests.plugins import doorbell

    ctx.extensions["billhive"].host.set_enabled("doorbell", True)
    doorbell.RUNG.clear()
    url = f"/accounts/{world.provider.id}/connectors"
    assert 'data-connector="doorbell"' in panel(world.operator).get(url).get_data(as_text=True)
    resp = panel(world.operator).post(f"{url}/doorbell", data={"action": "save"})
    assert resp.status_code == 302
    resp = api(world.operator).put(f"/api/v1{url}/doorbell", json={"ignored": 1})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["settings"]["last_test_message"] == ""
    invoice = issue(world)
    assert doorbell.RUNG == [f"ring:{invoice.id}"]
