"""E-mail sent by real `billhive worker` processes (huey consumers) through a real SMTP server
(aiosmtpd): a queued bill run's invoices reach the server once each, with their PDF."""

from __future__ import annotations

import signal

import pytest

from core.mail.models import MailMessage
from core.models import Account
from tests.mail_support import SmtpServer, smtp_config
from tests.test_scale_workers import (  # noqa: F401 - fixtures
    N,
    app,
    customers,
    kill,
    spawn,
    submit,
    wait_for,
)
from tests.test_scale_workers import queue_config as scale_queue_config  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def queue_config(scale_queue_config, smtp):  # noqa: F811 - overrides the imported one
    """The workers' and the test's configuration: the queue, and the SMTP server."""
    return {**scale_queue_config, **smtp_config(smtp.port)}


def test_workers_mail_every_invoice_of_a_queued_run_once(customers, spawn, smtp):  # noqa: F811
    for i, account in enumerate(customers):
        Account.update(email=f"billing{i}@customer.example").where(
            Account.id == account.id
        ).execute()
    submit()
    worker = spawn("worker", "--workers", "2")
    sent = MailMessage.select().where(MailMessage.status == "sent")
    wait_for(lambda: sent.count() == N, what="every invoice's e-mail")
    out, err = kill(worker, signal.SIGTERM)
    assert len(smtp.messages) == N, err
    assert sorted(m["rcpt_tos"][0] for m in smtp.messages) == sorted(
        f"billing{i}@customer.example" for i in range(N)
    )
    assert len({m["message"]["Subject"] for m in smtp.messages}) == N
    for got in smtp.messages:
        [pdf] = list(got["message"].iter_attachments())
        assert pdf.get_content_type() == "application/pdf"
    assert {(m.attempts, m.transport) for m in MailMessage.select()} == {(1, "smtp")}
