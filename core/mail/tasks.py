"""Who sends, and when: after the recording transaction commits, on the worker queue.

``BILLHIVE_QUEUE`` decides, as for bill runs (:mod:`core.tasks`):

* ``inline`` (the default without a worker): the process that recorded the message sends it
  right after the commit and, when that worked, whatever failed earlier and is due again;
  after a failed attempt it tries no other message for the first backoff (at most
  ``PAUSE_MAX``), so a bill run does not wait for a dead server's timeout once per invoice:
  those messages stay ``queued`` for the next send or ``billhive mail send``;
* ``sqlite`` / ``redis``: a ``billhive_mail`` task per message on the huey queue that
  ``billhive worker`` consumes; a failed attempt schedules the next one after its backoff.

Either way the row is the truth, not the queue: :func:`sweep` (run by each worker's sweep
and by ``billhive mail send``) sends what is due and was never queued or whose task was
lost, and settles messages whose sender stopped mid-way (see :mod:`core.mail.delivery`).
Nothing here raises into the caller: the invoice or payment is committed whatever mail does.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from flask import current_app

from core import events, tasks
from core.db import utcnow
from core.mail import delivery, transport
from core.mail.models import OPEN, MailMessage

log = logging.getLogger("billhive.mail")

GRACE_SECONDS = 5.0  # a queued message younger than this may still be on its way to a sender
PAUSE_MAX = 300.0  # inline: after a failed attempt, try no other message for at most this long
DUE_BATCH = 200


def queued_mode() -> bool:
    return tasks.queued_by_default(current_app.config)


def dispatch(message_id: int) -> None:
    """Hand one recorded message to a sender (see the module doc). Never raises."""
    try:
        if not delivery.in_app():
            return  # no application here (a bare script): the sweeper sends it
        if queued_mode():
            tasks.get_queue().mail_task(message_id)
            return
        state = current_app.extensions.setdefault("billhive_mail", {})
        if time.monotonic() < state.get("paused_until", 0.0):
            return  # the transport failed a moment ago: the next send after the pause, or
            # `billhive mail send`, takes this one (a bill run does not wait on a dead server)
        outcome = delivery.deliver(message_id)
        if outcome == "sent":
            deliver_due(limit=10)  # the transport works: what failed earlier goes too
        elif outcome in ("retry", "failed"):
            state["paused_until"] = time.monotonic() + min(delivery.backoff(1), PAUSE_MAX)
    except Exception:  # noqa: BLE001 - the message is recorded; the sweeper sends it
        log.warning("message %s could not be dispatched now; the sweeper will", message_id,
                    exc_info=True)  # fmt: skip


def run_task(message_id: int) -> str:
    """The ``billhive_mail`` task: send, and on a failed attempt schedule the next."""
    outcome = delivery.deliver(message_id)
    if outcome == "retry":
        attempts = (
            MailMessage.select(MailMessage.attempts).where(MailMessage.id == message_id).scalar()
        )
        tasks.get_queue().mail_task.schedule((message_id,), delay=delivery.backoff(attempts or 1))
    return outcome


def due_ids(now, *, grace: float = GRACE_SECONDS, limit: int = DUE_BATCH) -> list[int]:
    due = MailMessage.next_attempt_at.is_null() | (MailMessage.next_attempt_at <= now)
    young = MailMessage.created_at > now - timedelta(seconds=grace)
    query = (
        MailMessage.select(MailMessage.id)
        .where(MailMessage.status.in_(OPEN) & due & ~((MailMessage.status == "queued") & young))
        .order_by(MailMessage.id)
        .limit(limit)
    )
    return [row[0] for row in query.tuples()]


def deliver_due(limit: int = DUE_BATCH, *, grace: float = GRACE_SECONDS) -> dict:
    """Send, in this process, what is due (first attempts past the grace, retries past their
    backoff); returns counts by outcome."""
    report: dict[str, int] = {}
    for message_id in due_ids(utcnow(), grace=grace, limit=limit):
        outcome = delivery.deliver(message_id)
        report[outcome] = report.get(outcome, 0) + 1
    return report


def settle_stale(now=None) -> dict:
    """Messages left ``sending`` by a sender that stopped: with the outbox, sent if their file
    is there, else retried; with SMTP, ``unknown`` (never sent again by itself)."""
    now = now or utcnow()
    stale = float(current_app.config.get("MAIL_STALE_SECONDS") or 300)
    cutoff = now - timedelta(seconds=stale)
    report = {"settled_sent": 0, "settled_retry": 0, "settled_unknown": 0}
    rows = MailMessage.select().where(
        (MailMessage.status == "sending") & (MailMessage.claimed_at < cutoff)
    )
    for message in rows:
        guard = (
            (MailMessage.id == message.id)
            & (MailMessage.status == "sending")
            & (MailMessage.attempts == message.attempts)
        )
        via = message.transport or transport.name()
        if via == "outbox" and transport.outbox_has(message):
            values = {
                "status": "sent",
                "sent_at": now,
                "outbox_path": transport.outbox_name(message),
            }
            key = "settled_sent"
        elif via == "outbox":
            values = {"status": "retry", "next_attempt_at": now,
                      "last_error": "its sender stopped before writing it; sent again"}  # fmt: skip
            key = "settled_retry"
        else:
            values = {"status": "unknown", "last_error": (
                f"its sender stopped while talking to the SMTP server (claimed "
                f"{message.claimed_at:%Y-%m-%d %H:%M:%S} UTC): it may or may not have been "
                "delivered; check with the recipient and use Send again if it was not")}  # fmt: skip
            key = "settled_unknown"
        values["transport"] = via
        report[key] += MailMessage.update(values).where(guard).execute()
    return report


def sweep(now=None) -> dict:
    """Settle stale sends, then send (or queue) what is due. For the worker's sweep and
    ``billhive mail send``."""
    report = settle_stale(now)
    if queued_mode():
        queue = tasks.get_queue()
        ids = due_ids(now or utcnow(), grace=60.0)  # younger ones are on the queue
        for message_id in ids:
            queue.mail_task(message_id)
        report["queued"] = len(ids)
    else:
        report.update(deliver_due(grace=0))  # the claim keeps a message from being sent twice
    return report


@tasks.task("mail")
def _mail_task(message_id: int) -> None:
    """The ``billhive_mail`` task on the worker queue."""
    with tasks.task_context():
        run_task(message_id)


events.listen("worker_sweep", sweep)  # each worker's periodic sweep (core.billing.runs.queue)
