"""E-mail delivery: invoices, credit notes, payment receipts and reminders, once per event.

* :mod:`core.mail.models`     the send history (one row per event key) and issuers' templates
* :mod:`core.mail.messages`   composing (who, what), recording, delivering: the "once" rules
* :mod:`core.mail.templates`  subject/body per issuer and event, sandboxed Jinja, defaults
* :mod:`core.mail.transport`  the outbox folder of .eml files (default) or SMTP (Flask-Mailman)
* :mod:`core.mail.tasks`      when it is sent: after commit, inline or on the worker queue
* :mod:`core.mail.api`, :mod:`core.mail.views`  an invoice's messages, the outbox, templates
  (panel templates in ``core/mail/templates/mail/``)
* :mod:`core.mail.cli`        ``billhive mail send`` (the sweep, for cron) and ``mail list``

What others call: :func:`send_for_invoice` (dunning sends its reminders with it). The core
sends an invoice or credit note when it is issued (its ``invoice_finalized`` hook) and a
receipt when a payment is recorded.
"""

from __future__ import annotations

from core.mail.messages import EVENTS, send_again, send_for_invoice, send_receipt

__all__ = ["EVENTS", "send_again", "send_for_invoice", "send_receipt"]
