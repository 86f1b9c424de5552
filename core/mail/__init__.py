"""E-mail delivery: invoices, credit notes, payment receipts and reminders, once per event.

* :mod:`core.mail.models`     the send history (one row per event key) and issuers' templates
* :mod:`core.mail.messages`   composing (who, what) and recording: the "once per event" rule
* :mod:`core.mail.delivery`   sending a recorded message: claimed, sent, retried, the "sent once" rule
* :mod:`core.mail.templates`  subject/body per issuer and event, sandboxed Jinja, defaults
* :mod:`core.mail.transport`  the outbox folder of .eml files (default) or SMTP (Flask-Mailman)
* :mod:`core.mail.tasks`      when it is sent: after commit, inline or on the worker queue
* :mod:`core.mail.api`, :mod:`core.mail.views`  an invoice's messages, the outbox, templates
  (panel templates in ``core/mail/templates/mail/``)
* :mod:`core.mail.cli`        ``billhive mail send`` (the sweep, for cron) and ``mail list``

Billing never imports mail: it emits the core's events (:mod:`core.events`), which
:mod:`core.mail.messages` listens to: ``invoice_finalized`` (an issued invoice or credit note
is sent), ``payment_recorded`` (its receipt), ``dunning_reminder`` (:func:`send_for_invoice`).
"""

from __future__ import annotations

from core.mail.messages import EVENTS, send_again, send_for_invoice, send_receipt

__all__ = ["EVENTS", "send_again", "send_for_invoice", "send_receipt"]
