"""Delivering a recorded message: the rule behind "sent once".

**Delivering** (:func:`deliver`): a sender claims the row with one guarded UPDATE
(``queued``/``retry`` and due -> ``sending``, ``attempts + 1``), committed before anything
is sent, so of two senders (duplicate task delivery, the sweeper and a task) only one
sends. Then it sends and records ``sent`` (with any recipients the server refused), or the
failure: ``retry`` with a backoff (``MAIL_RETRY_SECONDS`` x 2^(attempt-1)) until
``MAIL_MAX_ATTEMPTS``, then ``failed``. A message that can never be sent (no valid address,
a template that does not render) is ``failed`` at once with the reason.

**A crash between sending and recording** leaves the row ``sending``. The sweeper
(:func:`core.mail.tasks.sweep`) finds it once its claim is older than
``MAIL_STALE_SECONDS``: with the outbox it looks for the message's file (its name depends
only on the row): there -> ``sent``; missing -> retried. With SMTP nobody can know whether
the server accepted it, so the row becomes ``unknown`` and is **not** sent again by itself
(an admin may "Send again" after checking): a lost message is possible there, a duplicate
is not. The only duplicate left is a server that accepted the message but whose reply was
lost (a timeout after the final dot): that attempt is recorded as failed and retried, with
the same ``Message-ID`` so the recipient's mail system can recognise it.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta

from flask import current_app, has_app_context
from flask_mailman import EmailMessage

from core.billing.invoicing import storage
from core.billing.models import Invoice
from core.db import database, utcnow
from core.mail import transport
from core.mail.models import OPEN, MailMessage

log = logging.getLogger("billhive.mail")


def _setting(name: str, default):
    value = current_app.config.get(name)
    return default if value in (None, "") else value


def max_attempts() -> int:
    return int(_setting("MAIL_MAX_ATTEMPTS", 5))


def backoff(attempt: int) -> float:
    """Seconds before the attempt after ``attempt`` (1-based): base x 2^(attempt-1), at most
    an hour."""
    return min(float(_setting("MAIL_RETRY_SECONDS", 60)) * 2 ** (attempt - 1), 3600.0)


def build_email(message: MailMessage):
    """The MIME message of a row (Flask-Mailman), with the invoice file attached."""
    headers = {"From": message.sender, "Message-ID": message.message_id}
    email = EmailMessage(
        subject=message.subject,
        body=message.body,
        from_email=transport.envelope_sender(),
        to=list(message.recipients),
        reply_to=[message.reply_to] if message.reply_to else None,
        headers=headers,
    )
    if message.attachment and message.invoice_id:
        invoice = Invoice.get_by_id(message.invoice_id)
        data, fmt, _ = storage.file_for(invoice, message.attachment)
        email.attach(f"{invoice.number or invoice.id}.{fmt.extension}", data, fmt.media_type)
    return email


def _claim(message_id: int, now) -> bool:
    due = MailMessage.next_attempt_at.is_null() | (MailMessage.next_attempt_at <= now)
    return bool(
        MailMessage.update(status="sending", attempts=MailMessage.attempts + 1, claimed_at=now)
        .where((MailMessage.id == message_id) & MailMessage.status.in_(OPEN) & due)
        .execute()
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(
            f"{address}: {code} {reason.decode(errors='replace') if isinstance(reason, bytes) else reason}"
            for address, (code, reason) in exc.recipients.items()
        )
        return f"every recipient was refused ({refused})"
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return f"the SMTP server answered {exc.smtp_code} {text}"
    if isinstance(exc, TimeoutError):
        return "the SMTP server did not answer in time (timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return "the SMTP server refused the connection"
    return f"{type(exc).__name__}: {exc}"


def deliver(message_id: int) -> str:
    """Send one message if it is due and nobody else has it; returns what happened: ``sent``,
    ``retry``, ``failed`` or ``not claimed``. Never raises for a sending failure."""
    now = utcnow()
    if database.in_transaction():  # the claim must be committed before anything is sent
        raise RuntimeError("deliver() runs outside a transaction (see core.mail.delivery)")
    if not _claim(message_id, now):
        return "not claimed"
    message = MailMessage.get_by_id(message_id)
    attempt = message.attempts
    via = transport.name()
    guard = (
        (MailMessage.id == message_id)
        & (MailMessage.status == "sending")
        & (MailMessage.attempts == attempt)
    )
    try:
        email = build_email(message)
        if via == "smtp":
            refused, path = transport.send_smtp(email), None
        else:
            refused, path = {}, transport.write_outbox(message, email)
    except Exception as exc:  # noqa: BLE001 - recorded on the message, retried
        error = _describe(exc)
        log.warning("sending message %s (%s) failed: %s", message_id, message.event_key, error)
        if attempt >= max_attempts():
            status, next_at = "failed", None
            error = f"gave up after {attempt} attempt(s): {error}"
        else:
            status, next_at = "retry", now + timedelta(seconds=backoff(attempt))
        MailMessage.update(status=status, last_error=error[:4000], next_attempt_at=next_at,
                           transport=via).where(guard).execute()  # fmt: skip
        return status
    note = None
    if refused:
        note = "refused by the server: " + "; ".join(f"{a}: {why}" for a, why in refused.items())
    MailMessage.update(status="sent", sent_at=utcnow(), last_error=note, transport=via,
                       outbox_path=path, next_attempt_at=None).where(guard).execute()  # fmt: skip
    return "sent"


def in_app() -> bool:
    return has_app_context() and "mailman" in current_app.extensions
