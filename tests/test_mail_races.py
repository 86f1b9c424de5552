"""Once per event key, with callers in parallel (both databases; PostgreSQL is where a
missing guard shows): duplicate deliveries of one mail task, parallel "Send again" with one
key, a reminder recorded by parallel callers. One message, one send."""

from __future__ import annotations

import pytest

from tests.mail_support import outbox_files
from tests.test_billing_races import race
from tests.test_mail import billed_customer, issue_invoice, messages_of

CALLERS = 8
API = "/api/v1"


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf"], MAIL_RETRY_SECONDS=60)


def in_app(ctx, fn):
    def call():
        with ctx.app_context(), ctx.extensions["billhive"].database.connection_context():
            return fn()

    return call


def test_duplicate_deliveries_of_one_message_send_it_once(ctx, world, monkeypatch):
    from core.mail import delivery, send_for_invoice, tasks

    invoice = issue_invoice(world, billed_customer(world))
    monkeypatch.setattr(tasks, "dispatch", lambda message_id: None)  # the tasks are "queued"
    message = send_for_invoice(invoice, "reminder_1", event_key=f"dunning:{invoice.id}:r1")
    results = race([in_app(ctx, lambda: delivery.deliver(message.id))] * CALLERS)
    assert sorted(results) == ["not claimed"] * (CALLERS - 1) + ["sent"]
    reminders = [p for p in outbox_files(ctx) if p.name.endswith("reminder_1.eml")]
    assert len(reminders) == 1
    assert messages_of(invoice)[-1].attempts == 1


def test_parallel_recording_of_one_event_key_makes_one_message(ctx, world):
    from core.mail import send_for_invoice
    from core.mail.models import MailMessage

    invoice = issue_invoice(world, billed_customer(world))

    def remind():
        return send_for_invoice(invoice, "reminder_2", event_key=f"dunning:{invoice.id}:r2").id

    results = race([in_app(ctx, remind)] * CALLERS)
    assert len(set(results)) == 1, results
    assert MailMessage.select().where(MailMessage.event == "reminder_2").count() == 1
    assert len([p for p in outbox_files(ctx) if p.name.endswith("reminder_2.eml")]) == 1


def test_parallel_send_again_with_one_key_sends_once(ctx, world, api):
    from core.models import AuditEntry

    invoice = issue_invoice(world, billed_customer(world))
    clients = [api(world.operator) for _ in range(CALLERS)]
    url = f"{API}/invoices/{invoice.id}/messages"
    responses = race([lambda c=c: c.post(url, json={"key": "double-click"}) for c in clients])
    assert {r.status_code for r in responses} == {201}
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert len(messages_of(invoice)) == 2  # the issue's and one sent again
    assert len(outbox_files(ctx)) == 2
    assert AuditEntry.select().where(AuditEntry.action == "invoice.send_again").count() == 1
