"""psa_mapping: connection settings, test connection, company links, privileges, scoping."""

from __future__ import annotations

import pytest

from core.registry import PushFailed
from tests import test_psa_support as support
from tests.test_psa_support import connect, form_settings

# the shared fixtures, re-exported so pytest finds them in this module
app = support.app
cw = support.cw
fake = support.fake
psa = support.psa


def test_connector_is_registered_and_tests_settings(psa, fake):
    connectors = psa.billing_connectors()
    connector = connectors["connectwise"]
    assert connector.title == "ConnectWise Manage"
    ok = connector.test(form_settings(fake))
    assert ok.startswith("Connected to ConnectWise Manage v2024.1.99999")
    with pytest.raises(PushFailed) as bad:
        connector.test(form_settings(fake, private_key="wrong-private-key-123"))
    assert bad.value.message == (
        "Connection failed: ConnectWise refused the credentials (401): check company id, "
        "public and private key"
    )
    # settings the schema refuses are a failed test naming the field, never a crash
    with pytest.raises(PushFailed) as bad:
        connector.test({k: v for k, v in form_settings(fake).items() if k != "site_url"})
    assert bad.value.message.startswith("Connection failed: invalid ConnectWise settings")
    assert "site_url" in bad.value.message


def test_panel_saves_settings_masks_secrets_and_tests_the_connection(psa, world, panel, fake):
    from core.connectors.models import ConnectorSettings

    client = panel(world.operator)
    url = f"/accounts/{world.provider.id}/psa/connection"
    resp = client.post(url, data={**form_settings(fake), "action": "save"})
    assert resp.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "Connected to ConnectWise Manage v2024.1.99999" in page
    assert fake.private_key not in page and fake.public_key not in page
    assert fake.client_id not in page
    assert "••••••0xyz" in page  # the last 4 characters at most
    conn = ConnectorSettings.get()
    assert fake.private_key not in conn.secrets  # stored encrypted
    # the test button against the stored settings
    resp = client.post(url + "/test", follow_redirects=True)
    assert "Connected to ConnectWise Manage" in resp.get_data(as_text=True)


def test_test_connection_with_bad_credentials_gives_a_clear_message(psa, world, panel, fake):
    client = panel(world.operator)
    url = f"/accounts/{world.provider.id}/psa/connection"
    connect(world.provider, fake)
    resp = client.post(
        url, data={**form_settings(fake, private_key="not-the-key-0000"), "action": "test"}
    )
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "Connection failed: ConnectWise refused the credentials (401)" in text


def test_bad_settings_give_field_errors_and_write_nothing(psa, world, panel, api, fake):
    from core.connectors.models import ConnectorSettings
    from core.models import AuditEntry
    from plugins.psa_mapping.service import integration as service

    client = panel(world.operator)
    url = f"/accounts/{world.provider.id}/psa/connection"
    resp = client.post(
        url,
        data={
            **form_settings(fake, site_url="ftp://cw.example.com", company_id="a+b"),
            "public_key": "",
            "action": "save",
        },
    )
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Site URL: must start with https://" in text
    assert "Company ID: must not contain" in text
    assert "Public key: is required" in text
    assert ConnectorSettings.select().count() == 0
    assert AuditEntry.select().where(AuditEntry.action == "connector.settings.save").count() == 0

    # an existing connection is left exactly as it was by a bad update (API)
    connect(world.provider, fake)
    before = service.masked(ConnectorSettings.get())
    resp = api(world.operator).put(
        f"/api/v1/psa/accounts/{world.provider.id}/connection",
        json={"site_url": fake.url, "company_id": "other", "timeout": 0, "max_retries": 99},
    )
    assert resp.status_code == 422
    body = resp.get_json()
    assert set(body["errors"]) == {"timeout", "max_retries"}
    assert service.masked(ConnectorSettings.get()) == before


def test_api_connection_secrets_are_write_only(psa, world, api, fake):
    client = api(world.operator)
    url = f"/api/v1/psa/accounts/{world.provider.id}/connection"
    resp = client.put(url, json=form_settings(fake))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["private_key"].startswith("••••••") and fake.private_key not in str(body)
    # a PUT without keys keeps the stored ones
    assert (
        client.put(url, json={"site_url": fake.url, "company_id": fake.company_id}).status_code
        == 200
    )
    test = client.post(url + "/test").get_json()
    assert test["ok"] is True and "Connected" in test["message"]
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/psa/accounts/{account_id}/mappings" in spec["paths"]
    assert "/api/v1/psa/sync-runs/{run_id}" in spec["paths"]


def test_company_link_suggestion_needs_a_persons_confirmation(psa, world, panel, api, fake, cw):
    from core.connectors.models import ConnectorLink

    connect(world.provider, fake)
    client = panel(world.operator)
    base = f"/accounts/{world.provider.id}/psa/companies"
    page = client.get(f"{base}?customer_id={world.customer_a.id}").get_data(as_text=True)
    assert "Customer A Holdings" in page and "Confirm" in page
    assert "Customer A Managed Services" in page
    assert ConnectorLink.select().count() == 0  # suggested, never linked silently
    suggestions = (
        api(world.operator)
        .get(
            f"/api/v1/psa/accounts/{world.provider.id}/company-suggestions"
            f"?customer_id={world.customer_a.id}"
        )
        .get_json()
    )
    assert suggestions["companies"][0]["name"] == "Customer A Holdings"
    assert ConnectorLink.select().count() == 0

    resp = client.post(
        f"{base}/confirm",
        data={
            "customer_id": world.customer_a.id,
            "psa_company_id": cw["company"]["id"],
            "agreement_id": cw["agreement"]["id"],
        },
    )
    assert resp.status_code == 302
    link = ConnectorLink.get()
    assert link.customer_id == world.customer_a.id and link.confirmed_by_id == world.operator.id
    assert link.target_id == cw["agreement"]["id"]
    # an agreement of another company is refused
    resp = api(world.operator).post(
        f"/api/v1/psa/accounts/{world.provider.id}/company-links",
        json={
            "customer_id": world.customer_b.id,
            "psa_company_id": cw["other"]["id"],
            "agreement_id": cw["agreement"]["id"],
        },
    )
    assert resp.status_code == 422 and "agreement_id" in resp.get_json()["errors"]
    assert ConnectorLink.select().count() == 1


def test_outside_the_subtree_is_404(psa, world, panel, api, fake):
    connect(world.provider, fake)
    # a customer has no integration of its own and cannot see the provider's: 404
    client = panel(world.user_a)
    assert client.get(f"/accounts/{world.provider.id}/psa").status_code == 404
    assert client.get(f"/accounts/{world.customer_a.id}/psa").status_code == 404
    assert (
        api(world.user_a).get(f"/api/v1/psa/accounts/{world.provider.id}/connection").status_code
        == 404
    )


def test_a_viewer_sees_but_cannot_change(psa, world, panel, api, fake):
    """One user per test: the fixtures share one app context, so ``g`` (flask-login's user,
    the API user) would leak from one client to the next."""
    from core import roles
    from core.models import Role

    connect(world.provider, fake)
    viewer_role = roles.create_role(
        None,
        world.provider,
        {
            "name": "PSA viewer",
            "description": "views PSA",
            "privileges": ["psa.view", "accounts.view"],
        },
    )
    viewer = world.add_user(
        world.provider, "viewer@example.com", role_code=None, roles=[viewer_role]
    )
    assert isinstance(viewer_role, Role)
    vclient = panel(viewer)
    assert vclient.get(f"/accounts/{world.provider.id}/psa").status_code == 200
    resp = vclient.post(
        f"/accounts/{world.provider.id}/psa/connection",
        data={**form_settings(fake), "action": "save"},
    )
    assert resp.status_code == 403
    resp = api(viewer).put(
        f"/api/v1/psa/accounts/{world.provider.id}/connection", json=form_settings(fake)
    )
    assert resp.status_code == 403, resp.get_json()


def test_disabled_plugin_answers_404(psa, world, panel, api):
    psa.set_enabled("psa_mapping", False)
    assert panel(world.operator).get(f"/accounts/{world.provider.id}/psa").status_code == 404
    assert (
        api(world.operator).get(f"/api/v1/psa/accounts/{world.provider.id}/mappings").status_code
        == 404
    )
