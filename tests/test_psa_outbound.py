"""psa_mapping and the outbound-URL guard (issue 16, reproduction 5: SSRF through the PSA
connection). A reseller admin holding psa.edit sets the site URL; the instance here has
nothing allowlisted (the operator's default) and allows http, so that each refusal below is
about the address, not the scheme."""

from __future__ import annotations

import socket
import threading

import pytest

from core import outbound
from tests import test_core_outbound as core_tests
from tests.fakes.connectwise import FakeConnectWise
from tests.test_core_outbound import fake_dns
from tests.test_psa_support import form_settings

# the shared fixtures, re-exported so pytest finds them in this module
listener = core_tests.listener
opened = core_tests.opened

UNREACHABLE = "The site URL cannot be reached or is not allowed"
FAILED = f"Connection failed: {UNREACHABLE}"
PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "RAW",
    "customer_billing_cycle_day": 1,
}


@pytest.fixture
def app(make_app):
    return make_app(
        plugins=["psa_mapping", "reseller_accounts"],
        OUTBOUND_ALLOW_HTTP=True,
        OUTBOUND_ALLOWLIST="",
    )


@pytest.fixture
def reseller(ctx, world, install_license):
    """A reseller and its admin (Full Access: psa.edit at the reseller level)."""
    from core import rbac

    host = ctx.extensions["billhive"].host
    install_license(["BH-PSA", "FT-3001.007"])
    host.set_enabled("psa_mapping", True)
    host.set_enabled("reseller_accounts", True)
    account = world.add_account(world.provider, "Acme Reseller", "reseller", profile=PROFILE)
    admin = world.add_user(account, "radmin@example.com")
    rbac.require(admin, "psa.edit", account)
    return account, admin


@pytest.fixture
def fake():
    with FakeConnectWise() as server:
        yield server


def settings(fake, site_url):
    return form_settings(fake, site_url=site_url)


def store_anyway(ctx, account, fake, site_url):
    """A connection stored while the operator allowed the address (or before the guard
    existed, or when the name still resolved elsewhere): the guard at connection time is
    what stands between it and the network."""
    from plugins.psa_mapping.service import integration as service

    ctx.config["OUTBOUND_ALLOWLIST"] = "0.0.0.0/0 ::/0"
    try:
        service.save_connection(None, account, settings(fake, site_url))
    finally:
        ctx.config["OUTBOUND_ALLOWLIST"] = ""


TARGETS = [
    "http://127.0.0.1:{port}",
    "http://localhost:{port}",
    "http://[::1]:{port}",
    "http://10.0.0.7:{port}",
    "http://169.254.169.254",
    "http://100.64.1.1:{port}",
    "http://[::ffff:127.0.0.1]:{port}",
]


@pytest.mark.parametrize("target", TARGETS)
def test_api_refuses_the_url_when_saved_and_never_connects_on_test(
    target,
    reseller,
    api,
    ctx,
    fake,
    listener,
    opened,
):
    from core.connectors.models import ConnectorSettings

    account, admin = reseller
    url = target.format(port=listener.port)
    client = api(admin)
    base = f"/api/v1/psa/accounts/{account.id}/connection"

    resp = client.put(base, json=settings(fake, url))
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"site_url": [UNREACHABLE]}
    assert ConnectorSettings.select().count() == 0

    store_anyway(ctx, account, fake, url)
    resp = client.post(base + "/test")
    assert resp.status_code == 200
    assert resp.get_json() == {"ok": False, "message": FAILED}
    assert opened == [] and not listener.connected()
    assert fake.requests_log == []


@pytest.mark.parametrize("target", TARGETS)
def test_panel_refuses_the_url_and_the_test_button_never_connects(
    target,
    reseller,
    panel,
    ctx,
    fake,
    listener,
    opened,
):
    account, admin = reseller
    url = target.format(port=listener.port)
    client = panel(admin)
    page_url = f"/accounts/{account.id}/psa/connection"

    # "Test connection" with the unsaved form: a field error on the site URL
    resp = client.post(page_url, data={**settings(fake, url), "action": "test"})
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert UNREACHABLE in text and 'name="site_url"' in text

    # the test button against a stored URL: the generic message, nothing connected
    store_anyway(ctx, account, fake, url)
    resp = client.post(page_url + "/test", follow_redirects=True)
    assert FAILED in resp.get_data(as_text=True)
    assert opened == [] and not listener.connected()


def test_a_name_rebound_to_loopback_after_saving_is_refused_when_connecting(
    reseller,
    api,
    fake,
    listener,
    opened,
    monkeypatch,
):
    from core.connectors.models import ConnectorSettings

    account, admin = reseller
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])
    monkeypatch.setattr(outbound, "resolve", fake_dns({"cw.rebind.test": lambda: next(answers)}))
    client = api(admin)
    base = f"/api/v1/psa/accounts/{account.id}/connection"
    resp = client.put(base, json=settings(fake, f"http://cw.rebind.test:{listener.port}"))
    assert resp.status_code == 200, resp.get_json()  # resolved to a public address then
    assert ConnectorSettings.select().count() == 1
    assert client.post(base + "/test").get_json() == {"ok": False, "message": FAILED}
    assert opened == [] and not listener.connected()


def _serve_once(answer: bytes):
    """A TCP service on 127.0.0.1 that answers ``answer`` to whatever connects."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(2)
                conn.recv(65536)
                conn.sendall(answer)
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock


def test_open_and_closed_ports_give_the_same_message_and_nothing_is_echoed(
    reseller, api, ctx, fake
):
    """Even where the operator allowlists an address, the answers tell nothing about its
    ports and never echo what answered there."""
    account, admin = reseller
    ctx.config["OUTBOUND_ALLOWLIST"] = "127.0.0.1"
    client = api(admin)
    base = f"/api/v1/psa/accounts/{account.id}/connection"
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    ssh = _serve_once(b"SSH-2.0-OpenSSH_9.6 internal-bastion\r\n")
    web = _serve_once(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 28\r\n\r\n"
        b"<h1>internal admin page</h1>"
    )
    err = _serve_once(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n"
        b"nginx internal 1.2.3"
    )
    try:
        answers = {}
        for name, port in (
            ("closed", closed_port),
            ("ssh", ssh.getsockname()[1]),
            ("web", web.getsockname()[1]),
            ("404", err.getsockname()[1]),
        ):
            resp = client.put(base, json=settings(fake, f"http://127.0.0.1:{port}"))
            assert resp.status_code == 200, resp.get_json()
            answers[name] = client.post(base + "/test").get_json()
    finally:
        for sock in (ssh, web, err):
            sock.close()
    assert answers == {name: {"ok": False, "message": FAILED} for name in answers}


def test_the_allowlisted_fake_connectwise_works(reseller, api, ctx, fake):
    account, admin = reseller
    ctx.config["OUTBOUND_ALLOWLIST"] = "127.0.0.1"
    client = api(admin)
    base = f"/api/v1/psa/accounts/{account.id}/connection"
    assert client.put(base, json=settings(fake, fake.url)).status_code == 200
    test = client.post(base + "/test").get_json()
    assert test["ok"] is True and test["message"].startswith("Connected to ConnectWise Manage")


def test_http_needs_the_operators_consent(reseller, api, ctx, fake):
    account, admin = reseller
    ctx.config["OUTBOUND_ALLOWLIST"] = "127.0.0.1"
    ctx.config["OUTBOUND_ALLOW_HTTP"] = False
    client = api(admin)
    base = f"/api/v1/psa/accounts/{account.id}/connection"
    resp = client.put(base, json=settings(fake, fake.url))
    assert resp.status_code == 422
    assert resp.get_json()["errors"]["site_url"][0].startswith("Site URL must start with https://")
    ctx.config["OUTBOUND_ALLOW_HTTP"] = True
    store_anyway(ctx, account, fake, fake.url)
    ctx.config["OUTBOUND_ALLOW_HTTP"] = False
    assert client.post(base + "/test").get_json() == {"ok": False, "message": FAILED}
    assert fake.requests_log == []
