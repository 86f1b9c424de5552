"""Panel and API security with every built-in plugin enabled: CSRF on every state-changing
form, sessions (a new id at login, the old one dead), API tokens revoked at once, login
throttling that parallel guesses cannot outrun.

The app runs with CSRF on. Its world is built in an app context that is closed again before
any request: a context held open would share ``g`` (where Flask-WTF keeps the token) between
test clients.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest

from tests.conftest import BUILTIN_PLUGINS, PASSWORD, World, issue
from tests.test_authz_matrix import FEATURES, PROFILE, db_fingerprint

OBJECT_PARAMS = {
    "account_id": "account",
    "user_id": "user",
    "role_id": "role",
    "invoice_id": "invoice",
    "unit_id": "unit",
    "number_id": "number",
    "team_id": "team",
    "mapping_id": "mapping",
    "link_id": "link",
    "method_id": "payment_method",
    "entry_id": "ledger_entry",
    "run_id": "bill_run",
    "message_id": "mail_message",
}
STRING_PARAMS = {"action": "void", "code": "SEAT", "fmt": "PDF", "connector": "connectwise"}


class Site:
    """The app and the operator's objects (the operator may change all of them)."""

    def __init__(self, app, license_keys):
        from core import license_store, roles
        from core.billing import catalog
        from core.billing.invoicing import lifecycle as invoices
        from core.billing.ledger import payments
        from core.billing.models import BillRun, LedgerEntry
        from core.connectors.models import ConnectorLink, ConnectorMapping
        from plugins.billing_units.service import units
        from plugins.psa_mapping.service import integration as psa

        self.app = app
        host = app.extensions["billhive"].host
        with self.context():
            license_store.install(issue(license_keys, FEATURES), host.license_key_paths)
            for name in BUILTIN_PLUGINS:
                host.set_enabled(name, True)
            self.world = World()
            provider = self.world.provider
            reseller = self.world.add_account(provider, "Reseller", "reseller", profile=PROFILE)
            customer = self.world.customer_a
            role = roles.create_role(
                None, provider, {"name": "Viewer", "description": "v", "privileges": []}
            )
            number = units.create_number(None, provider, {"e164": "+442079460001"})
            team = units.create_team(None, provider, {"name": "Team"})
            unit = units.create_unit(None, provider, {"name": "Unit", "number_ids": [number.id]})
            catalog.create_product(None, {"account_id": provider.id, "code": "SEAT", "name": "S"})
            psa.save_connection(
                None,
                provider,
                {"site_url": "http://127.0.0.1:9", "company_id": "acme", "public_key": "pub",
                 "private_key": "priv", "client_id": "client", "timeout": "0.2",
                 "max_retries": "0", "backoff": "0.01"},
            )  # fmt: skip
            mapping = ConnectorMapping.create(account=provider, connector="connectwise",
                                              product_code="SEAT", mapping_type="per_unit",
                                              remote_product="X")  # fmt: skip
            link = ConnectorLink.create(account=provider, connector="connectwise",
                                        customer=customer, remote_id=1)  # fmt: skip
            draft = invoices.create_draft(
                None, customer, provider, [{"description": "x", "unit_price": "5"}]
            )
            invoice = invoices.issue(draft)
            from core.mail.models import MailMessage

            message = MailMessage.get(MailMessage.invoice == invoice.id)  # its e-mail
            method = payments.add_method(None, customer, {"type": "other", "description": "x"})
            entry = LedgerEntry.select().where(LedgerEntry.account == customer.id).first()
            run = BillRun.create(as_of=invoice.issued_at.date(), status="running")
            self.ids = {
                "account": provider.id,
                "reseller": reseller.id,
                "customer": customer.id,
                "user": self.world.operator.id,
                "role": role.id,
                "invoice": invoice.id,
                "unit": unit.id,
                "number": number.id,
                "team": team.id,
                "mapping": mapping.id,
                "link": link.id,
                "payment_method": method.id,
                "ledger_entry": entry.id,
                "bill_run": run.id,
                "mail_message": message.id,
            }

    def context(self):
        from contextlib import ExitStack

        stack = ExitStack()
        stack.enter_context(self.app.app_context())
        stack.enter_context(self.app.extensions["billhive"].database.connection_context())
        return stack

    def fingerprint(self) -> str:
        with self.context():
            return db_fingerprint(self.app)

    def url(self, rule) -> str:
        """The rule's URL on the operator's objects (a reseller's page on the reseller; an
        account's ledger pages on the customer whose ledger it is)."""
        path = rule.rule
        for name in rule.arguments:
            if name in STRING_PARAMS:
                value = STRING_PARAMS[name]
            elif name == "name":
                value = "role_wizard"
            elif name == "account_id" and path.startswith("/resellers/"):
                value = self.ids["reseller"]
            elif name == "account_id" and ("method_id" in rule.arguments
                                           or "entry_id" in rule.arguments):  # fmt: skip
                value = self.ids["customer"]
            else:
                value = self.ids[OBJECT_PARAMS[name]]
            path = re.sub(rf"<(?:[a-z]+:)?{name}>", str(value), path)
        return path

    def panel_rules(self, method: str) -> list:
        return sorted(
            (r for r in self.app.url_map.iter_rules()
             if method in r.methods and not r.rule.startswith(("/api/", "/static"))
             and r.endpoint != "static"),
            key=lambda r: r.rule,
        )  # fmt: skip


@pytest.fixture
def site(make_app, license_keys):
    return Site(make_app(csrf=True), license_keys)


def csrf_token(client, url="/login") -> str:
    html = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client, email, password=PASSWORD):
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)}
    )


def logged_in(site, email="op@example.com"):
    client = site.app.test_client()
    assert login(client, email).status_code == 302
    return client


def session_token(client):
    with client.session_transaction() as session:
        return session.get("_user_id")


# -- CSRF ------------------------------------------------------------------------------------


def test_every_state_changing_panel_form_refuses_a_post_without_its_token(site):
    client = logged_in(site)
    rules = site.panel_rules("POST")
    assert len(rules) > 30  # every plugin's forms are among them
    before = site.fingerprint()
    answered = {}
    for rule in rules:
        url = site.url(rule)
        resp = client.post(url, data={"name": "Sneaky", "email": "x@example.com"})
        answered[url] = resp.status_code
        assert resp.status_code == 400, f"POST {url} without a token: {resp.status_code}"
        assert "csrf" in resp.get_data(as_text=True).lower(), url
        # a token of another session does not do either
        other = logged_in(site, "a@example.com")
        resp = client.post(url, data={"csrf_token": csrf_token(other, "/accounts")})
        assert resp.status_code == 400, f"POST {url} with another session's token"
    assert site.fingerprint() == before, "a form posted without its token changed something"
    assert client.get("/accounts").status_code == 200  # the refused /logout left us logged in


def test_every_form_of_every_page_carries_the_token(site):
    """The other side of the same coin: a form without the token would be refused."""
    client = logged_in(site)
    pages = 0
    for rule in site.panel_rules("GET"):
        if rule.rule in ("/logout",) or rule.rule.endswith((".csv", ".pdf", ".json")):
            continue
        if "fmt" in rule.arguments:
            continue  # a file download
        url = site.url(rule)
        resp = client.get(url)
        if resp.status_code != 200 or not resp.mimetype == "text/html":
            continue
        pages += 1
        html = resp.get_data(as_text=True)
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S | re.I):
            if re.search(r'method="?post', form, flags=re.I):
                assert 'name="csrf_token"' in form, f"{url}: a POST form without csrf_token"
    assert pages > 20


# -- sessions --------------------------------------------------------------------------------


def test_a_session_planted_before_login_is_not_the_one_logged_in(site):
    attacker = site.app.test_client()
    csrf_token(attacker)  # the attacker's pre-login session cookie...
    planted = attacker.get_cookie("session").value
    victim = site.app.test_client()
    victim.set_cookie("session", planted)  # ...planted in the victim's browser
    assert login(victim, "a@example.com").status_code == 302
    assert session_token(victim) is not None
    # the cookie the attacker still holds is not logged in
    replay = site.app.test_client()
    replay.set_cookie("session", planted)
    resp = replay.get("/accounts")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_logging_in_again_kills_the_previous_session_of_that_browser(site):
    from core.models import LoginSession

    client = logged_in(site, "a@example.com")
    first = session_token(client)
    copied = client.get_cookie("session").value
    assert login(client, "b@example.com").status_code == 302  # someone else, same browser
    second = session_token(client)
    assert second != first
    with site.context():
        assert LoginSession.get(LoginSession.token == first).revoked_at is not None
    stolen = site.app.test_client()
    stolen.set_cookie("session", copied)
    resp = stolen.get("/accounts")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert client.get(f"/accounts/{site.world.customer_b.id}").status_code == 200


def test_a_disabled_user_is_logged_out_of_the_panel_and_the_api_at_once(site):
    from core.models import User

    client = logged_in(site, "a@example.com")
    api = site.app.test_client()
    token = api.post("/api/v1/tokens", json={"email": "a@example.com", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.get_json()['token']}"}
    assert api.get("/api/v1/users/me", headers=headers).status_code == 200
    with site.context():
        User.update(is_active=False).where(User.email == "a@example.com").execute()
    assert api.get("/api/v1/users/me", headers=headers).status_code == 401
    assert client.get("/accounts").status_code == 302


# -- API tokens ------------------------------------------------------------------------------


def _token(site, email):
    resp = site.app.test_client().post(
        "/api/v1/tokens", json={"email": email, "password": PASSWORD}
    )
    assert resp.status_code == 201
    return resp.get_json()["token"]


def test_a_revoked_token_is_refused_by_every_client_at_once(site):
    token = _token(site, "op@example.com")
    other = _token(site, "op@example.com")  # a second token of the same user
    headers = {"Authorization": f"Bearer {token}"}
    clients = [site.app.test_client() for _ in range(3)]
    for c in clients:
        assert c.get("/api/v1/users/me", headers=headers).status_code == 200
    assert clients[0].delete(f"/api/v1/tokens/{token[:10]}", headers=headers).status_code == 204
    for c in clients:  # the next request of every client, whatever it is
        for method, url in (("get", "/api/v1/users/me"), ("get", "/api/v1/accounts"),
                            ("post", "/api/v1/accounts"), ("delete", f"/api/v1/tokens/{other[:10]}")):  # fmt: skip
            assert getattr(c, method)(url, headers=headers, json={}).status_code == 401
    # the other token lives on
    assert (
        clients[1].get("/api/v1/users/me", headers={"Authorization": f"Bearer {other}"}).status_code
        == 200
    )


def test_nobody_revokes_someone_elses_token(site):
    mine = _token(site, "a@example.com")
    theirs = _token(site, "op@example.com")  # even the operator cannot
    resp = site.app.test_client().delete(
        f"/api/v1/tokens/{mine[:10]}", headers={"Authorization": f"Bearer {theirs}"}
    )
    assert resp.status_code == 422
    me = site.app.test_client().get("/api/v1/users/me", headers={"Authorization": f"Bearer {mine}"})
    assert me.status_code == 200


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic b3A6c2VjcmV0", "Bearer bh_not-a-token", "bearer  bh_x  y"],
)
def test_a_malformed_or_unknown_token_is_401_json(site, header):
    resp = site.app.test_client().get("/api/v1/accounts", headers={"Authorization": header})
    assert resp.status_code == 401 and resp.get_json()["code"] == "unauthorized"


# -- login throttling ------------------------------------------------------------------------


def test_the_api_token_endpoint_is_throttled_like_the_panel(site):
    client = site.app.test_client()
    for _ in range(5):
        resp = client.post("/api/v1/tokens", json={"email": "OP@example.com ", "password": "x" * 9})
        assert resp.status_code == 422
    resp = client.post("/api/v1/tokens", json={"email": "op@example.com", "password": PASSWORD})
    assert resp.status_code == 422 and "too many failed logins" in resp.get_json()["message"]
    assert login(site.app.test_client(), "op@example.com").status_code == 401  # panel too


def test_the_lock_ends_after_its_time_and_a_success_resets_the_count(site):
    from core.db import utcnow
    from core.models import LoginThrottle

    client = site.app.test_client()
    for _ in range(5):
        login(client, "a@example.com", "wrong-guess")
    assert login(client, "a@example.com").status_code == 401
    with site.context():  # the lockout's time passes
        LoginThrottle.update(
            locked_until=utcnow() - timedelta(seconds=1),
            window_start=utcnow() - timedelta(hours=1),
        ).execute()
    assert login(client, "a@example.com").status_code == 302
    for _ in range(4):  # a success reset the count: four more failures do not lock
        login(site.app.test_client(), "a@example.com", "wrong-guess")
    assert login(site.app.test_client(), "a@example.com").status_code == 302
    with site.context():
        rows = list(LoginThrottle.select().where(LoginThrottle.key.startswith("email:")))
        assert [(r.attempts, r.locked_until) for r in rows] == [(0, None)]


def test_parallel_guesses_cannot_outrun_the_lock(site):
    """Failed logins are counted with an atomic increment: ten guesses at once lock the
    account as surely as ten in a row."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, site.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        import requests

        url = f"http://127.0.0.1:{server.server_port}/api/v1/tokens"
        start = threading.Barrier(10)
        codes = []

        def guess(i):
            start.wait()
            codes.append(
                requests.post(url, json={"email": "b@example.com", "password": f"guess-{i:04d}"},
                              timeout=30).status_code
            )  # fmt: skip

        guesses = [threading.Thread(target=guess, args=(i,)) for i in range(10)]
        for t in guesses:
            t.start()
        for t in guesses:
            t.join()
        assert codes == [422] * 10
        resp = requests.post(url, json={"email": "b@example.com", "password": PASSWORD}, timeout=30)
        assert resp.status_code == 422 and "too many failed logins" in resp.json()["message"]
    finally:
        server.shutdown()
