"""E-mail through a real SMTP server on 127.0.0.1 (aiosmtpd): headers, encoding and the PDF
as received; a server that refuses, times out or rejects a recipient: the failure is
recorded and retried, the issuer never sees an error, and no message arrives twice."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.mail_support import SilentServer, SmtpServer, free_port, smtp_config
from tests.test_mail import billed_customer, issue_invoice, messages_of


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def app(make_app, smtp):
    return make_app(plugins=["invoice_pdf"], **smtp_config(smtp.port))


def retry_now(message):
    """The backoff has passed (tests do not wait for it)."""
    from core.mail.models import MailMessage

    MailMessage.update(next_attempt_at=None).where(MailMessage.id == message.id).execute()


def test_smtp_delivers_headers_encoding_and_the_pdf(ctx, smtp, world):
    from core.billing.invoicing import storage
    from core.models import Account

    customer = billed_customer(world, name="Müller & Söhne GmbH — Zürich")
    Account.update(name="Prövider Straße AG").where(Account.id == world.provider.id).execute()
    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)
    invoice = issue_invoice(world, customer, description="Überweisung €")
    [got] = smtp.messages
    assert got["mail_from"] == "billhive@localhost"  # the envelope sender: the settings'
    assert got["rcpt_tos"] == ["ap@contoso.example"]
    mail = got["message"]
    assert mail["From"] == "Prövider Straße AG <billing@provider.example>"
    assert mail["Reply-To"] == "billing@provider.example"
    assert mail["To"] == "ap@contoso.example"
    assert mail["Subject"] == f"Invoice {invoice.number} from Prövider Straße AG"
    assert mail["Date"] and mail["Message-ID"]
    body = mail.get_body(("plain",)).get_content()
    assert body.startswith("Dear Müller & Söhne GmbH — Zürich,")
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == storage.file_for(invoice, "PDF")[0]
    [message] = messages_of(invoice)
    assert (message.status, message.transport, message.attempts) == ("sent", "smtp", 1)
    assert mail["Message-ID"] == message.message_id


def test_a_subject_cannot_inject_headers(ctx, smtp, world):
    customer = billed_customer(world, name="Evil\r\nBcc: victim@example.com")
    issue_invoice(world, customer)
    mail = smtp.messages[0]["message"]
    assert mail["Bcc"] is None
    assert smtp.messages[0]["rcpt_tos"] == ["ap@contoso.example"]
    assert "Evil Bcc: victim@example.com" in mail.get_body(("plain",)).get_content().replace(
        "\r\n", " "
    ).replace("\n", " ")


def test_a_refused_connection_is_recorded_retried_and_sent_once(make_app, backend, smtp):
    closed = free_port()  # nothing listens here
    app = make_app(plugins=[], **smtp_config(closed))
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        from tests.conftest import World

        world = World()
        customer = billed_customer(world)
        invoice = issue_invoice(world, customer)  # no error for the issuer
        assert invoice.status == "issued"
        [message] = messages_of(invoice)
        assert message.status == "retry" and message.attempts == 1
        assert "refused the connection" in message.last_error
        assert message.next_attempt_at is not None

        from core.mail import delivery, tasks

        assert delivery.deliver(message.id) == "not claimed"  # its backoff is not over
        app.config["MAIL_PORT"] = smtp.port  # the server is back
        retry_now(message)
        assert tasks.deliver_due(grace=0) == {"sent": 1}
        assert tasks.deliver_due(grace=0) == {}
        [message] = messages_of(invoice)
        assert (message.status, message.attempts) == ("sent", 2)
        assert len(smtp.messages) == 1


def test_a_server_that_never_answers_times_out_and_gives_up_after_the_last_attempt(make_app):
    from core.mail import delivery

    with SilentServer() as silent:
        app = make_app(plugins=[], **smtp_config(silent.port, MAIL_TIMEOUT=1,
                                                 MAIL_MAX_ATTEMPTS=2))  # fmt: skip
        with app.app_context(), app.extensions["billhive"].database.connection_context():
            from tests.conftest import World

            world = World()
            invoice = issue_invoice(world, billed_customer(world))
            [message] = messages_of(invoice)
            assert message.status == "retry"
            assert "timeout" in message.last_error or "timed out" in message.last_error
            retry_now(message)
            assert delivery.deliver(message.id) == "failed"
            [message] = messages_of(invoice)
            assert message.status == "failed" and message.attempts == 2
            assert message.last_error.startswith("gave up after 2 attempt(s)")
            assert delivery.deliver(message.id) == "not claimed"  # failed stays failed


def test_a_rejected_recipient_is_recorded_and_retried(ctx, smtp, world):
    from core.mail import delivery

    smtp.handler.refuse = {"ap@contoso.example"}
    invoice = issue_invoice(world, billed_customer(world))
    [message] = messages_of(invoice)
    assert message.status == "retry"
    assert "every recipient was refused" in message.last_error
    assert "550" in message.last_error and "ap@contoso.example" in message.last_error
    assert smtp.messages == []
    smtp.handler.refuse = set()  # the mailbox exists now
    retry_now(message)
    assert delivery.deliver(message.id) == "sent"
    assert len(smtp.messages) == 1


def test_one_refused_recipient_of_two_is_noted_and_the_others_are_not_sent_twice(ctx, smtp, world):
    from core.billing.models import BillingSettings
    from core.mail import tasks

    customer = billed_customer(world)
    BillingSettings.create(
        account=customer.id, invoice_email="ap@contoso.example, cfo@contoso.example"
    )
    smtp.handler.refuse = {"cfo@contoso.example"}
    invoice = issue_invoice(world, customer)
    [message] = messages_of(invoice)
    assert message.status == "sent"
    assert message.recipients == ["ap@contoso.example", "cfo@contoso.example"]
    assert "refused by the server: cfo@contoso.example: 550" in message.last_error
    assert tasks.deliver_due(grace=0) == {}
    assert [m["rcpt_tos"] for m in smtp.messages] == [["ap@contoso.example"]]


def test_a_sender_that_stopped_after_smtp_accepted_is_never_resent_by_itself(
    ctx, smtp, world, monkeypatch
):
    """The crash between sending and recording: the row stays 'sending'; the sweeper cannot
    know whether the server got it, so it says 'unknown' and sends nothing."""
    from core.mail import delivery, send_for_invoice, tasks
    from core.mail.models import MailMessage

    invoice = issue_invoice(world, billed_customer(world))
    assert len(smtp.messages) == 1
    real = delivery.transport.send_smtp

    def send_then_die(email):
        real(email)
        raise SystemExit("worker killed after the server accepted the message")

    monkeypatch.setattr(delivery.transport, "send_smtp", send_then_die)
    with pytest.raises(SystemExit):
        send_for_invoice(invoice, "reminder_1", event_key="crash-test")
    monkeypatch.setattr(delivery.transport, "send_smtp", real)
    assert len(smtp.messages) == 2
    message = MailMessage.get(MailMessage.event_key == "crash-test")
    assert message.status == "sending"
    assert tasks.sweep()["settled_unknown"] == 0  # its sender may still be at work
    stale = message.claimed_at - timedelta(seconds=ctx.config["MAIL_STALE_SECONDS"] + 1)
    MailMessage.update(claimed_at=stale).where(MailMessage.id == message.id).execute()
    assert tasks.sweep()["settled_unknown"] == 1
    message = MailMessage.get_by_id(message.id)
    assert message.status == "unknown"
    assert "may or may not have been delivered" in message.last_error
    assert delivery.deliver(message.id) == "not claimed"
    tasks.sweep()
    assert len(smtp.messages) == 2  # nothing sent twice


# -- STARTTLS, SSL and a login ---------------------------------------------------------------


# aiosmtpd warns about AUTH "without TLS" on a server whose connections are TLS from the start
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_a_login_reach_a_server_whose_certificate_is_trusted(make_app, tmp_path,
                                                                     security):  # fmt: skip
    from tests.mail_support import TlsSmtpServer

    with TlsSmtpServer(tmp_path, implicit=security == "ssl") as server:
        app = make_app(plugins=[], **smtp_config(
            server.port, MAIL_USE_TLS=security == "starttls", MAIL_USE_SSL=security == "ssl",
            MAIL_USERNAME="billhive", MAIL_PASSWORD="s3cret", MAIL_CA_FILE=str(server.cert)))  # fmt: skip
        with app.app_context(), app.extensions["billhive"].database.connection_context():
            from tests.conftest import World

            world = World()
            invoice = issue_invoice(world, billed_customer(world))
            [message] = messages_of(invoice)
            assert message.status == "sent", message.last_error
            assert server.logins == ["billhive"]
            assert server.messages[0]["message"]["Subject"] == message.subject


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"MAIL_CA_FILE": None}, ("CERTIFICATE_VERIFY_FAILED",)),  # nobody vouches for it
        # the login is refused (PLAIN: 535; smtplib then tries LOGIN, which aiosmtpd leaves
        # unanswered until the timeout)
        ({"MAIL_PASSWORD": "wrong"}, ("535", "timed out")),
        # without STARTTLS the server offers no login (and takes no mail)
        ({"MAIL_USE_TLS": False}, ("AUTH extension not supported", "530")),
    ],
)
def test_an_unverified_certificate_or_a_refused_login_is_a_recorded_failure(make_app, tmp_path,
                                                                            change, says):  # fmt: skip
    from tests.mail_support import TlsSmtpServer

    with TlsSmtpServer(tmp_path) as server:
        config = smtp_config(server.port, MAIL_USE_TLS=True, MAIL_USERNAME="billhive",
                             MAIL_PASSWORD="s3cret", MAIL_CA_FILE=str(server.cert))  # fmt: skip
        app = make_app(plugins=[], **{**config, **change})
        with app.app_context(), app.extensions["billhive"].database.connection_context():
            from tests.conftest import World

            world = World()
            invoice = issue_invoice(world, billed_customer(world))  # issued all the same
            [message] = messages_of(invoice)
            assert message.status == "retry"
            assert any(text in message.last_error for text in says), message.last_error
            assert server.messages == [] and server.logins == []


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("BILLHIVE_MAIL_TRANSPORT", "pigeon", "BILLHIVE_MAIL_TRANSPORT must be outbox or smtp"),
        ("BILLHIVE_MAIL_SECURITY", "tls1", "BILLHIVE_MAIL_SECURITY must be none, starttls or ssl"),
        ("BILLHIVE_MAIL_PORT", "25a", "BILLHIVE_MAIL_PORT must be a whole number"),
        ("BILLHIVE_MAIL_TIMEOUT", "-1", "BILLHIVE_MAIL_TIMEOUT must be a whole number"),
    ],
)
def test_a_bad_mail_setting_is_refused_naming_the_variable(monkeypatch, tmp_path, name, value,
                                                           says):  # fmt: skip
    from hostapp import config

    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=says):
        config.load({"DATA_DIR": str(tmp_path)})


def test_mail_settings_from_the_environment(monkeypatch, tmp_path):
    from hostapp import config

    for name, value in {"BILLHIVE_MAIL_TRANSPORT": "SMTP", "BILLHIVE_MAIL_SECURITY": "ssl",
                        "BILLHIVE_MAIL_SERVER": "smtp.example.net",
                        "BILLHIVE_MAIL_USERNAME": "u", "BILLHIVE_MAIL_PASSWORD": "p",
                        "BILLHIVE_MAIL_SENDER": "billing@example.net"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    loaded = config.load({"DATA_DIR": str(tmp_path)})
    assert loaded["MAIL_TRANSPORT"] == "smtp" and loaded["MAIL_USE_SSL"] is True
    assert loaded["MAIL_PORT"] == 465 and loaded["MAIL_USE_TLS"] is False
    assert (loaded["MAIL_SERVER"], loaded["MAIL_USERNAME"], loaded["MAIL_PASSWORD"]) == (
        "smtp.example.net", "u", "p")  # fmt: skip
    assert loaded["MAIL_DEFAULT_SENDER"] == "billing@example.net"
    assert loaded["MAIL_OUTBOX_DIR"] == str(tmp_path / "outbox")


def test_an_inline_bill_run_does_not_wait_for_a_dead_server_once_per_invoice(make_app, smtp):
    """Inline sending pauses after a failed attempt: 4 invoices, one connection attempt; the
    others wait, queued, and go out once the server is back (`billhive mail send`)."""
    import time

    from core.mail import tasks

    with SilentServer() as silent:
        app = make_app(plugins=[], **smtp_config(silent.port, MAIL_TIMEOUT=1))
        with app.app_context(), app.extensions["billhive"].database.connection_context():
            from core.mail.models import MailMessage
            from tests.conftest import World

            world = World()
            customer = billed_customer(world)
            started = time.monotonic()
            for amount in ("1.00", "2.00", "3.00", "4.00"):
                issue_invoice(world, customer, amount=amount)
            assert time.monotonic() - started < 3.5  # one timeout (1 s), not four
            statuses = [m.status for m in MailMessage.select().order_by(MailMessage.id)]
            assert statuses == ["retry", "queued", "queued", "queued"]
            app.config["MAIL_PORT"] = smtp.port  # the server is back
            MailMessage.update(next_attempt_at=None).execute()
            assert tasks.sweep()["sent"] == 4
            assert len(smtp.messages) == 4
