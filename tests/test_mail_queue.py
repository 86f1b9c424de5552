"""E-mail from bill runs, in process and on the worker queue: every invoice reaches the outbox
exactly once, across a re-run of the bill run, a retried or duplicated task and the sweeper;
a failed attempt is scheduled again after its backoff."""

from __future__ import annotations

from datetime import date

import pytest

from core import tasks as worker_queue
from core.billing.models import BillRun, Invoice
from core.billing.runs import engine, queue
from tests.billing_support import setup_catalog, subscribe
from tests.mail_support import outbox_files, parse

AS_OF = date(2026, 2, 1)


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(plugins=["invoice_pdf"], QUEUE="sqlite", QUEUE_PATH=str(tmp_path / "q.db"),
                    MAIL_RETRY_SECONDS=60)  # fmt: skip


@pytest.fixture
def customers(ctx, world):
    from core.models import Account

    ctx.extensions["billhive"].host.set_enabled("invoice_pdf", True)
    _, plan = setup_catalog(world.provider, price="30.00")
    accounts = [world.customer_a, world.customer_b]
    accounts += [world.add_account(world.provider, f"Customer {i}") for i in range(3)]
    for i, acc in enumerate(accounts):
        Account.update(email=f"billing{i}@customer.example").where(Account.id == acc.id).execute()
        subscribe(acc, plan, start="2026-01-01")
    return accounts


def outbox_by_invoice(app) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in outbox_files(app):
        subject = parse(path.read_bytes())["Subject"]
        counts[subject] = counts.get(subject, 0) + 1
    return counts


def test_an_in_process_bill_run_and_its_rerun_mail_each_invoice_once(make_app, tmp_path):
    app = make_app(plugins=["invoice_pdf"], MAIL_RETRY_SECONDS=60)  # BILLHIVE_QUEUE=inline
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        from tests.conftest import World

        world = World()
        from core.models import Account

        _, plan = setup_catalog(world.provider, price="30.00")
        for i, acc in enumerate((world.customer_a, world.customer_b)):
            Account.update(email=f"b{i}@x.example").where(Account.id == acc.id).execute()
            subscribe(acc, plan, start="2026-01-01")
        engine.run(AS_OF)
        engine.run(AS_OF)  # a re-run bills nothing and sends nothing
        numbers = sorted(i.number for i in Invoice.select())
        assert len(numbers) == 2
        assert outbox_by_invoice(app) == {f"Invoice {n} from Provider": 1 for n in numbers}


def test_a_queued_bill_run_mails_each_invoice_once_whatever_the_queue_repeats(ctx, customers):
    from core.mail import tasks
    from core.mail.models import MailMessage

    run = BillRun.create(as_of=AS_OF, status="queued")
    queue.submit(run)
    queue.drain(ctx)
    invoices = list(Invoice.select().order_by(Invoice.number))
    assert len(invoices) == len(customers)
    assert outbox_by_invoice(ctx) == {f"Invoice {i.number} from Provider": 1 for i in invoices}
    for path in outbox_files(ctx):  # the PDF was there when the mail was written
        [attachment] = list(parse(path.read_bytes()).iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
    assert {m.status for m in MailMessage.select()} == {"sent"}

    q = worker_queue.get_queue()
    for message in MailMessage.select():  # duplicate delivery of every mail task
        q.mail_task(message.id)
        q.mail_task(message.id)
    for item_id in [i.id for i in BillRun.get_by_id(run.id).items]:  # bill tasks again
        q.bill_task(item_id)
    queue.drain(ctx)
    rerun = BillRun.create(as_of=AS_OF, status="queued")  # the bill run again
    queue.submit(rerun)
    queue.drain(ctx)
    tasks.sweep()
    queue.drain(ctx)
    assert Invoice.select().count() == len(customers)
    assert sum(outbox_by_invoice(ctx).values()) == len(customers)
    assert MailMessage.select().count() == len(customers)
    assert {m.attempts for m in MailMessage.select()} == {1}


def test_a_failed_attempt_on_the_queue_is_scheduled_after_its_backoff(ctx, customers, monkeypatch):
    from core.mail import delivery, tasks
    from core.mail.models import MailMessage

    def broken(message, email):
        raise OSError("disk full")

    monkeypatch.setattr(delivery.transport, "write_outbox", broken)
    run = BillRun.create(as_of=AS_OF, status="queued")
    queue.submit(run)
    queue.drain(ctx)
    assert {m.status for m in MailMessage.select()} == {"retry"}
    assert {m.last_error for m in MailMessage.select()} == {"OSError: disk full"}
    q = worker_queue.get_queue()
    assert q.huey.scheduled_count() == len(customers)  # each again after its backoff
    monkeypatch.undo()
    MailMessage.update(next_attempt_at=None).execute()  # the backoff is over
    report = tasks.sweep()  # what a worker's sweep does: queue what is due
    assert report["queued"] == len(customers)
    queue.drain(ctx)
    assert {(m.status, m.attempts) for m in MailMessage.select()} == {("sent", 2)}
    assert sum(outbox_by_invoice(ctx).values()) == len(customers)


def test_billhive_mail_send_and_list(ctx, customers, monkeypatch):
    """Without a worker, `billhive mail send` (from cron) sends what is due."""
    from click.testing import CliRunner

    from core.mail import delivery
    from core.mail.models import MailMessage
    from hostapp import cli

    real = delivery.transport.write_outbox
    monkeypatch.setattr(delivery.transport, "write_outbox", lambda m, e: 1 / 0)
    ctx.config["QUEUE"] = "inline"
    engine.run(AS_OF)
    # the first failure pauses sending in this process: the run did not try the others
    statuses = [m.status for m in MailMessage.select().order_by(MailMessage.id)]
    assert statuses == ["retry"] + ["queued"] * 4
    monkeypatch.setattr(delivery.transport, "write_outbox", real)
    MailMessage.update(next_attempt_at=None).execute()  # the backoff is over
    monkeypatch.setattr(cli, "_app", ctx)
    runner = CliRunner()
    result = runner.invoke(cli.main, ["mail", "send", "--json"])
    assert result.exit_code == 0, result.output
    assert '"sent": 5' in result.output
    assert sum(outbox_by_invoice(ctx).values()) == 5
    listed = runner.invoke(cli.main, ["mail", "list", "--status", "sent"])
    assert listed.exit_code == 0 and len(listed.output.strip().splitlines()) == 5
    bad = runner.invoke(cli.main, ["mail", "list", "--status", "lost"])
    assert bad.exit_code == 2 and "one of queued" in bad.output
