"""Where messages go: an outbox folder of ``.eml`` files (the default: a new instance needs no
mail server) or an SMTP server (STARTTLS or SSL, with or without a login) through
Flask-Mailman's SMTP backend. Chosen by ``MAIL_TRANSPORT`` in the app config
(``BILLHIVE_MAIL_*`` in the environment: docs/operations.md lists them).

Both report what they did so :mod:`core.mail.delivery` can record it:

* the outbox writes each message to ``<outbox>/<YYYY-MM>/<id>-<event>.eml`` (a temporary
  file renamed into place, so a file that exists is a whole message). Its name depends only
  on the message row, so a sender that stopped after writing it is found out by looking
  (:func:`outbox_has`): the message is recorded as sent, never written twice;
* SMTP returns the recipients the server refused while accepting the others (smtplib gives
  them back; Flask-Mailman drops them, hence :class:`_SMTPBackend`), and raises when the
  server refuses, times out or rejects every recipient.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from pathlib import Path

from flask import current_app
from flask_mailman import Mail
from flask_mailman.backends.smtp import EmailBackend
from flask_mailman.message import sanitize_address

TRANSPORTS = ("outbox", "smtp")
SECURITY = ("none", "starttls", "ssl")


class TransportError(Exception):
    """The configuration names no usable transport."""


def init_app(app) -> None:
    """Flask-Mailman from the app config (the MAIL_* names it reads are set by
    :func:`hostapp.config.load` from ``BILLHIVE_MAIL_*``); checks the choices at start-up."""
    config = app.config
    config.setdefault("MAIL_TRANSPORT", "outbox")
    config.setdefault("MAIL_OUTBOX_DIR", str(Path(config["DATA_DIR"]) / "outbox"))
    if config["MAIL_TRANSPORT"] not in TRANSPORTS:
        raise TransportError(
            f"BILLHIVE_MAIL_TRANSPORT must be one of {', '.join(TRANSPORTS)}, "
            f"not '{config['MAIL_TRANSPORT']}'"
        )
    if config.get("MAIL_USE_TLS") and config.get("MAIL_USE_SSL"):
        raise TransportError("BILLHIVE_MAIL_SECURITY is either starttls or ssl, not both")
    config["MAIL_BACKEND"] = "smtp"
    config.setdefault("MAIL_DEFAULT_SENDER", "billhive@localhost")
    config.setdefault("MAIL_TIMEOUT", 10)
    Mail(app)


def name() -> str:
    return current_app.config.get("MAIL_TRANSPORT") or "outbox"


def outbox_dir() -> Path:
    return Path(current_app.config["MAIL_OUTBOX_DIR"])


def envelope_sender() -> str:
    """The SMTP envelope sender (MAIL FROM; bounces go there): the instance's, whoever the
    issuer is, since the server only relays for addresses it knows."""
    return (
        current_app.config.get("MAIL_ENVELOPE_SENDER") or current_app.config["MAIL_DEFAULT_SENDER"]
    )


def outbox_name(message) -> str:
    """The outbox file of a message row (relative), the same on every attempt."""
    month = message.created_at.strftime("%Y-%m")
    return f"{month}/{message.id:08d}-{message.event}.eml"


def outbox_has(message) -> bool:
    return (outbox_dir() / outbox_name(message)).is_file()


def write_outbox(message, email) -> str:
    """Write ``email`` (a Flask-Mailman EmailMessage) as the message's .eml file; returns
    its relative path. Atomic: a reader never sees half a message."""
    relative = outbox_name(message)
    target = outbox_dir() / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    data = email.message().as_bytes(linesep="\r\n")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return relative


class _SMTPBackend(EmailBackend):
    """Flask-Mailman's SMTP backend, keeping what smtplib says about refused recipients, and
    verifying the server's certificate on STARTTLS too (Flask-Mailman passes no context to
    ``starttls()``, and smtplib's default then accepts any certificate: a man in the middle
    would read the password and the invoices). Trusted: the system's CAs, or
    ``MAIL_CA_FILE`` (``BILLHIVE_MAIL_CA_FILE``) for a relay with a private CA."""

    refused: dict = {}

    @property
    def ssl_context(self):
        return ssl.create_default_context(cafile=current_app.config.get("MAIL_CA_FILE") or None)

    @property
    def connection_class(self):
        if self.use_ssl:
            return smtplib.SMTP_SSL  # given ssl_context by Flask-Mailman's open()
        verified = self.ssl_context

        class VerifyingSMTP(smtplib.SMTP):
            def starttls(self, *args, context=None, **kwargs):
                return super().starttls(*args, context=context or verified, **kwargs)

        return VerifyingSMTP

    def _send(self, email_message):
        encoding = email_message.encoding or self.mailman.default_charset
        from_email = sanitize_address(email_message.from_email, encoding)
        recipients = [sanitize_address(a, encoding) for a in email_message.recipients()]
        data = email_message.message().as_bytes(linesep="\r\n")
        self.refused = self.connection.sendmail(
            from_email, recipients, data, mail_options=self.mailman.mail_options
        )
        return True


def send_smtp(email) -> dict[str, str]:
    """Send through the configured SMTP server; returns {address: why} of recipients the
    server refused while it accepted others. Raises ``smtplib.SMTPException`` or ``OSError``
    (refused connection, timeout, TLS failure, every recipient rejected)."""
    config = current_app.config
    backend = _SMTPBackend(
        host=config["MAIL_SERVER"],
        port=int(config["MAIL_PORT"]),
        username=config.get("MAIL_USERNAME") or None,
        password=config.get("MAIL_PASSWORD") or None,
        use_tls=bool(config.get("MAIL_USE_TLS")),
        use_ssl=bool(config.get("MAIL_USE_SSL")),
        timeout=float(config.get("MAIL_TIMEOUT") or 10),
        fail_silently=False,
    )
    try:
        backend.open()
        backend.send_messages([email])
    finally:
        try:
            backend.close()
        except (smtplib.SMTPException, OSError):
            pass
    return {
        address: f"{code} {reason.decode(errors='replace') if isinstance(reason, bytes) else reason}"
        for address, (code, reason) in (backend.refused or {}).items()
    }
