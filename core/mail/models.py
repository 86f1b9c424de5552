"""E-mail tables: every message Billhive sends, and each issuer's subject/body templates.

:class:`MailMessage` is the send history and the guard against sending twice: one row per
*event* (``invoice:<id>:issued``, ``payment:<id>:receipt``, a dunning level, a "Send again"),
unique by ``event_key``, holding what is sent (headers and text rendered when the event
happened) and how the sending went (status, attempts, last error). See :mod:`core.mail`.
"""

from __future__ import annotations

import peewee as pw

from core.billing.models import Invoice, Payment
from core.db import BaseModel, JSONField, utcnow
from core.models import Account, User

# queued: waiting for its first attempt; sending: claimed by one sender; sent: handed to the
# transport; retry: an attempt failed, another is due at next_attempt_at; failed: given up
# (or could never be sent: no address, a broken template); unknown: the sender stopped while
# talking to the SMTP server, so it may or may not have been delivered (never sent again
# automatically: see core.mail)
STATUSES = ("queued", "sending", "sent", "retry", "failed", "unknown")
OPEN = ("queued", "retry")


class MailMessage(BaseModel):
    event_key = pw.CharField(max_length=200, unique=True)
    event = pw.CharField(max_length=20)  # core.mail.messages.EVENTS
    issuer = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")  # the sender
    account = pw.ForeignKeyField(Account, backref="+", on_delete="RESTRICT")  # the buyer
    invoice = pw.ForeignKeyField(Invoice, null=True, backref="+", on_delete="RESTRICT")
    payment = pw.ForeignKeyField(Payment, null=True, backref="+", on_delete="RESTRICT")
    status = pw.CharField(max_length=10, default="queued")
    sender = pw.CharField(max_length=1000)  # the From header (RFC 2047-encoded names grow)
    reply_to = pw.CharField(max_length=300, default="")
    recipients = JSONField(default=list)  # the To addresses
    subject = pw.CharField(max_length=500, default="")
    body = pw.TextField(default="")
    attachment = pw.CharField(max_length=20, default="")  # the invoice format attached
    message_id = pw.CharField(max_length=300)  # the Message-ID header, the same on every try
    context = JSONField(null=True)  # what the caller added to the template context
    transport = pw.CharField(max_length=10, default="")  # outbox / smtp, once tried
    outbox_path = pw.CharField(max_length=500, null=True)  # relative to the outbox folder
    attempts = pw.IntegerField(default=0)
    last_error = pw.TextField(null=True)
    next_attempt_at = pw.DateTimeField(null=True)
    claimed_at = pw.DateTimeField(null=True)
    sent_at = pw.DateTimeField(null=True)
    created_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("invoice", "id"), False),  # an invoice's history
            (("status", "next_attempt_at"), False),  # the sweeper's due retries
        )


class MailTemplate(BaseModel):
    """An issuer's own subject and body for one event (else the shipped default)."""

    issuer = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    event = pw.CharField(max_length=20)
    subject = pw.CharField(max_length=500)
    body = pw.TextField()
    updated_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("issuer", "event"), True),)


MAIL_MODELS = [MailMessage, MailTemplate]
