"""The webhook connector's rules: what a delivery holds, how it is signed, what an answer means.

One delivery per issued invoice (``X-Billhive-Delivery: invoice:<id>``), a ``POST`` of JSON::

    {"event": "invoice.finalized", "delivery": "invoice:42",
     "invoice": {"id", "number", "kind", "currency", "issue_date", "due_date",
                 "period_start", "period_end", "issuer", "recipient",
                 "subtotal_minor", "tax_minor", "total_minor", "lines": [...]}}

``lines`` are the invoice document's lines (description, quantity, unit, unit_price, amount,
amount_minor, product_code, ...); amounts in integer minor units are the exact ones.

Signature: ``X-Billhive-Timestamp`` is the Unix time of the attempt, and
``X-Billhive-Signature`` is ``sha256=`` + the hex HMAC-SHA256, keyed with the configured
secret, of ``<timestamp>.<body>`` (the raw body bytes). A receiver recomputes it with
:func:`signature`, compares in constant time, and refuses old timestamps (replays).

Answers: 2xx delivers; anything else fails the delivery, which the core's runtime retries on
the next sync (Retry on the Connectors page). A retry sends the same delivery id: receivers
treat it idempotently. A 4xx other than 429 says the receiver refused it (URL or secret).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import requests
from core.kit import PushFailed, PushItem, PushResult, ValidationFailed, outbound
from marshmallow import Schema, fields, validate

EVENT = "invoice.finalized"
HEADER_TIMESTAMP = "X-Billhive-Timestamp"
HEADER_SIGNATURE = "X-Billhive-Signature"
HEADER_DELIVERY = "X-Billhive-Delivery"
INVOICE_KEYS = ("number", "kind", "currency", "issue_date", "due_date", "period_start",
                "period_end", "subtotal_minor", "tax_minor", "total_minor", "lines")  # fmt: skip


class Settings(Schema):
    url = fields.Url(
        required=True,
        schemes={"http", "https"},
        metadata={"label": "URL", "description": "where each issued invoice is posted"},
    )
    secret = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=16, max=200, error="must be 16 to 200 characters"),
        metadata={"label": "Signing secret", "secret": True},
    )
    timeout = fields.Float(
        load_default=10.0,
        validate=validate.Range(min=0.1, max=60, error="must be 0.1 to 60 seconds"),
        metadata={"label": "Timeout (s)"},
    )


def clean(settings: dict) -> dict:
    problem = outbound.url_problem(settings["url"])
    if problem:
        raise ValidationFailed.field("url", problem)
    return settings


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``<timestamp>.<body>`` keyed with ``secret``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def items(context) -> list[PushItem]:
    doc = context.document
    invoice = {"id": context.invoice.id, **{k: doc[k] for k in INVOICE_KEYS}}
    invoice["issuer"] = doc["issuer"].get("name")
    invoice["recipient"] = doc["recipient"].get("name")
    key = f"invoice:{context.invoice.id}"
    return [
        PushItem(
            key="invoice",
            external_key=key,
            quantity=str(len(doc["lines"])),
            payload={"event": EVENT, "delivery": key, "invoice": invoice},
        )
    ]


class Session:
    """One sync's HTTP session (through the outbound guard) and settings."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.http = outbound.guarded_session()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def post(self, payload: dict) -> requests.Response:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            HEADER_TIMESTAMP: timestamp,
            HEADER_SIGNATURE: signature(self.settings["secret"], timestamp, body),
            HEADER_DELIVERY: payload["delivery"],
        }
        return self.http.post(
            self.settings["url"],
            data=body,
            headers=headers,
            timeout=float(self.settings.get("timeout", 10.0)),
            allow_redirects=False,
        )


def session(settings: dict) -> Session:
    return Session(settings)


def push(session: Session, item) -> PushResult:
    try:
        answer = session.post(item.payload)
    except (requests.RequestException, outbound.OutboundBlocked):
        raise PushFailed(f"{outbound.UNREACHABLE} (retried on the next sync)") from None
    status = answer.status_code
    if 200 <= status < 300:
        return PushResult("created", None, f"delivered (HTTP {status})")
    if 400 <= status < 500 and status != 429:
        raise PushFailed(
            f"the receiver refused the delivery (HTTP {status}): check the URL and the "
            "signing secret"
        )
    raise PushFailed(f"the receiver failed (HTTP {status}); retried on the next sync")


def test(settings: dict) -> str:
    """Post a signed ``ping`` event; raise PushFailed saying what failed."""
    with Session(settings) as s:
        try:
            answer = s.post({"event": "ping", "delivery": "ping"})
        except (requests.RequestException, outbound.OutboundBlocked):
            raise PushFailed(f"Connection failed: {outbound.UNREACHABLE}") from None
    if not 200 <= answer.status_code < 300:
        raise PushFailed(f"Connection failed: the receiver answered HTTP {answer.status_code}")
    return f"The receiver accepted a signed ping (HTTP {answer.status_code})."
