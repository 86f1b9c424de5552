"""The example billing connector ``examples/billhive-webhook``: a distribution of its own that
the test command installs, found through its entry point, run by the core's connector
runtime, and tested against a local HTTP receiver (a thread) that checks each delivery's
HMAC-SHA256 signature as the README tells receivers to.

Without the example installed these tests fail rather than skip: CI must prove it works.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points

import pytest

SECRET = "whsec-0123456789abcdef"


def _entry_point():
    found = [ep for ep in entry_points(group="billhive.plugins") if ep.name == "webhook"]
    if not found:
        pytest.fail(
            "the example plugin examples/billhive-webhook is not installed: run `bash "
            "scripts/test` (it pip-installs every examples/*/ package into .venv), or "
            "`.venv/bin/pip install -e examples/billhive-webhook`",
            pytrace=False,
        )
    return found[0]


@pytest.fixture(autouse=True)
def webhook_is_installed():
    return _entry_point()


@pytest.fixture
def app(make_app):
    return make_app(plugins=["webhook"])  # by its entry-point name, like any installed plugin


class Receiver:
    """A webhook receiver on 127.0.0.1: verifies each delivery's signature (README recipe)
    and answers ``status`` (401 for a bad signature); ``down()`` stops listening."""

    def __init__(self, secret: str):
        self.secret = secret
        self.status = 200
        self.deliveries: list[dict] = []  # verified ones
        self.refused: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers["X-Billhive-Timestamp"]
                got = self.headers["X-Billhive-Signature"] or ""
                request = {"body": body, "timestamp": timestamp, "signature": got,
                           "delivery": self.headers["X-Billhive-Delivery"]}  # fmt: skip
                if not receiver.verify(timestamp, body, got):
                    receiver.refused.append(request)
                    self.send_response(401)
                else:
                    receiver.deliveries.append({**request, "json": json.loads(body)})
                    self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/billhive"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def verify(self, timestamp: str, body: bytes, got: str) -> bool:
        if not timestamp or abs(time.time() - int(timestamp)) > 300:
            return False  # a replay of an old delivery
        mac = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        return hmac.compare_digest("sha256=" + mac.hexdigest(), got)

    def down(self):
        self.server.shutdown()
        self.server.server_close()

    def up(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.server.RequestHandlerClass)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def receiver():
    r = Receiver(SECRET)
    yield r
    r.down()


def _setup(op, world, url, secret=SECRET):
    resp = op.post("/api/v1/plugins/webhook/enable")
    assert resp.status_code == 200, resp.get_json()
    resp = op.put(
        f"/api/v1/accounts/{world.provider.id}/connectors/webhook",
        json={"url": url, "secret": secret, "timeout": 2},
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _issue(op, account_id, lines):
    draft = op.post("/api/v1/invoices", json={"account_id": account_id, "lines": lines})
    assert draft.status_code == 201, draft.get_json()
    issued = op.post(f"/api/v1/invoices/{draft.get_json()['id']}/issue")
    assert issued.status_code == 200, issued.get_json()
    return issued.get_json()


LINES = [
    {"description": "Support", "quantity": "3", "unit": "h", "unit_price": "19.99"},
    {"description": "Storage", "quantity": "2.5", "unit": "GB", "unit_price": "12.345",
     "product_code": "STO"},
]  # fmt: skip


def _runs(op, world):
    url = f"/api/v1/accounts/{world.provider.id}/connectors/webhook/sync-runs"
    return op.get(url).get_json()


def test_it_is_a_separate_distribution_discovered_through_its_entry_point(app):
    ep = _entry_point()
    assert ep.value == "billhive_webhook"
    assert ep.dist.name == "billhive-webhook" and ep.dist.version == "1.0.0"
    plugin = app.extensions["billhive"].host.plugins["webhook"]
    assert plugin.source == "entry point"
    assert plugin.meta.title == "Invoice webhooks"


def test_each_issued_invoice_is_posted_signed(world, api, receiver):
    op = api(world.operator)
    shown = _setup(op, world, receiver.url)
    assert shown["settings"]["secret"] == "••••••cdef" and SECRET not in json.dumps(shown)
    invoice = _issue(op, world.customer_a.id, LINES)
    (delivery,) = receiver.deliveries
    assert delivery["delivery"] == f"invoice:{invoice['id']}"
    body = delivery["json"]
    assert body["event"] == "invoice.finalized" and body["delivery"] == delivery["delivery"]
    sent = body["invoice"]
    assert (sent["id"], sent["number"], sent["currency"]) == (
        invoice["id"], invoice["number"], invoice["currency"]
    )  # fmt: skip
    assert [(line["description"], line["quantity"], line["amount_minor"])
            for line in sent["lines"]] == [("Support", "3", 5997), ("Storage", "2.5", 3086)]  # fmt: skip
    assert sent["total_minor"] == sum(line["amount_minor"] for line in sent["lines"])
    assert sent["recipient"] == "Customer A"
    (run,) = _runs(op, world)
    assert (run["status"], run["trigger"]) == ("ok", "invoice_finalized")
    # the settings' test posts a signed ping
    test = op.post(f"/api/v1/accounts/{world.provider.id}/connectors/webhook/test").get_json()
    assert test["ok"] is True and "signed ping" in test["message"]
    assert receiver.deliveries[-1]["json"] == {"event": "ping", "delivery": "ping"}


def test_a_tampered_delivery_fails_verification(world, api, receiver):
    op = api(world.operator)
    _setup(op, world, receiver.url)
    _issue(op, world.customer_a.id, LINES)
    (good,) = receiver.deliveries
    assert receiver.verify(good["timestamp"], good["body"], good["signature"])
    tampered = good["body"].replace(b'"Support"', b'"Gratis!"')
    assert not receiver.verify(good["timestamp"], tampered, good["signature"])
    assert not receiver.verify(str(int(good["timestamp"]) + 1), good["body"], good["signature"])
    assert not receiver.verify(str(int(time.time()) - 3600), good["body"], good["signature"])


def test_receiver_down_is_retried_by_the_core_runtime(world, api, panel, receiver):
    op = api(world.operator)
    _setup(op, world, receiver.url)
    receiver.down()
    invoice = _issue(op, world.customer_a.id, LINES)
    assert invoice["status"] == "issued"  # the receiver being down never breaks issuing
    (run,) = _runs(op, world)
    assert run["status"] == "failed" and "cannot be reached" in run["message"]
    receiver.up()
    resp = op.post(f"/api/v1/accounts/{world.provider.id}/connectors/webhook/sync-runs")
    assert resp.status_code == 201, resp.get_json()
    retried = resp.get_json()
    assert retried["status"] == "ok"
    assert [(i["outcome"], i["attempts"]) for i in retried["items"]] == [("created", 2)]
    assert [d["delivery"] for d in receiver.deliveries] == [f"invoice:{invoice['id']}"]
    # the Connectors page shows the log
    page = panel(world.operator).get(f"/accounts/{world.provider.id}/connectors")
    text = page.get_data(as_text=True)
    assert "Invoice webhook" in text and "delivered (HTTP 200)" in text


def test_a_receiver_refusal_is_logged_as_a_failure(world, api, receiver):
    op = api(world.operator)
    _setup(op, world, receiver.url, secret="not-the-receivers-secret")
    _issue(op, world.customer_a.id, LINES)
    assert not receiver.deliveries and len(receiver.refused) == 1
    (run,) = _runs(op, world)
    assert run["status"] == "failed"
    assert "the receiver refused the delivery (HTTP 401)" in run["message"]
    receiver.status = 422  # a receiver that verifies but refuses the content
    _setup(op, world, receiver.url)
    _issue(op, world.customer_b.id, LINES)
    detail = op.get(f"/api/v1/connectors/sync-runs/{_runs(op, world)[0]['id']}").get_json()
    assert [(i["outcome"], i["message"]) for i in detail["items"]] == [
        ("failed", "the receiver refused the delivery (HTTP 422): check the URL and the "
                   "signing secret")
    ]  # fmt: skip


def test_bad_settings_name_the_field(world, api):
    op = api(world.operator)
    assert op.post("/api/v1/plugins/webhook/enable").status_code == 200
    resp = op.put(
        f"/api/v1/accounts/{world.provider.id}/connectors/webhook",
        json={"url": "ftp://example.com/x", "secret": "short"},
    )
    assert resp.status_code == 422 and set(resp.get_json()["errors"]) == {"url", "secret"}
    resp = op.put(
        f"/api/v1/accounts/{world.provider.id}/connectors/webhook",
        json={"url": "http://10.0.0.7/hook", "secret": SECRET},
    )
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {
        "url": ["The site URL cannot be reached or is not allowed"]
    }
