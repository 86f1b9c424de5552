"""The e-mail of an invoice in the REST API: its send history and "Send again".

``GET /api/v1/invoices/<id>/messages`` needs ``billing.view`` (the buyer sees what was sent
to it); ``POST`` needs ``invoices.issue`` and the issuer's side of the invoice, like every
other change of an invoice. Outside the caller's subtree both answer 404.
"""

from __future__ import annotations

import uuid

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from core.api.schemas import UtcDateTime
from core.auth import api_login_required
from core.billing.web.api import _as_issuer, _invoice
from core.fields import Text
from core.mail import messages

blp = Blueprint("mail_api", __name__, url_prefix="/api/v1",
                description="E-mail sent about invoices: history, send again")  # fmt: skip


def blueprints():
    return [blp]


class MessageOut(Schema):
    id = fields.Integer()
    event = fields.String(metadata={"description": ", ".join(messages.EVENTS)})
    event_key = fields.String(metadata={"description": "one message per key, ever"})
    status = fields.String(
        metadata={
            "description": "queued, sending, sent, retry (an attempt failed; another is due at "
            "next_attempt_at), failed (given up, or it could not be sent: see last_error), "
            "unknown (its sender stopped while the SMTP server had it: not sent again by "
            "itself)"
        }
    )
    sender = fields.String(data_key="from")
    reply_to = fields.String()
    recipients = fields.List(fields.String(), data_key="to")
    subject = fields.String()
    attachment = fields.String(metadata={"description": "the invoice format attached, if any"})
    transport = fields.String(metadata={"description": "outbox or smtp, once tried"})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    created_at = UtcDateTime()
    sent_at = UtcDateTime(allow_none=True)
    next_attempt_at = UtcDateTime(allow_none=True)
    invoice_id = fields.Integer(allow_none=True)
    payment_id = fields.Integer(allow_none=True)


class SendAgainIn(Schema):
    event = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(messages.INVOICE_EVENTS),
        metadata={"description": "default: what the invoice is (invoice or credit_note)"},
    )
    key = Text(
        64,
        load_default=None,
        allow_none=True,
        metadata={
            "description": "names this request: sending the same key again returns the "
            "message it made and sends nothing (default: a new key, a new message)"
        },
    )


@blp.route("/invoices/<int:invoice_id>/messages", methods=["GET"])
@blp.response(200, MessageOut(many=True))
@blp.alt_response(404, description="No such invoice in your part of the account tree")
@api_login_required
def list_messages(invoice_id):
    """Every e-mail recorded for the invoice, oldest first, with how its sending went."""
    return messages.history(_invoice(invoice_id))


@blp.route("/invoices/<int:invoice_id>/messages", methods=["POST"])
@blp.arguments(SendAgainIn)
@blp.response(201, MessageOut)
@blp.alt_response(403, description="Only the issuer's side sends the invoice again")
@blp.alt_response(404, description="No such invoice in your part of the account tree")
@blp.alt_response(422, description="A draft, an unknown event or a malformed key")
@api_login_required
def send_again(data, invoice_id):
    """Send the invoice again (audited): a new message, sent once."""
    invoice = _invoice(invoice_id)
    user = _as_issuer(invoice, "invoices.issue")
    key = data.get("key") or uuid.uuid4().hex
    return messages.send_again(invoice, user, key=key, event=data.get("event"))
