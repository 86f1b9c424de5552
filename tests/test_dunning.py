"""Dunning (core.billing.ledger.dunning): an overdue invoice gets each level once, on its day, only
the highest it reached; paid, voided, credited invoices and paused accounts get nothing; the
late fee is a normal, numbered invoice in the ledger; the final notice suspends when told;
levels are validated; a killed run is finished by the next; parallel runs send once.

Reminders go through the real mailer (``core.mail.send_for_invoice``, outbox transport):
what a test checks is the messages it recorded, one per event key ``dunning:<invoice>:<level>``."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest

from core.billing.invoicing import lifecycle
from core.billing.ledger import dunning, payments
from core.billing.ledger import entries as ledger
from core.billing.models import DunningStep, Invoice
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.models import Account, AccountStatusChange, AuditEntry

TODAY = date(2031, 6, 1)  # the instance's "today" in these tests: every due date is before it


class Sent:
    """The reminders the mailer recorded (core.mail: one message per event key), as
    ``(invoice id, template)`` in the order they were made."""

    def rows(self):
        from core.mail.models import MailMessage

        query = MailMessage.select().where(MailMessage.event_key.startswith("dunning:"))
        return [(m.invoice_id, m.event) for m in query.order_by(MailMessage.id)]

    def __eq__(self, other):
        return self.rows() == list(other)

    def __iter__(self):
        return iter(self.rows())

    def __len__(self):
        return len(self.rows())

    def __getitem__(self, index):
        return self.rows()[index]

    def __repr__(self):
        return repr(self.rows())


@pytest.fixture
def sent(monkeypatch, ctx):
    monkeypatch.setattr("core.clock.today", lambda: TODAY)
    return Sent()


def overdue(world, account=None, amount="100.00", issuer=None):
    draft = lifecycle.create_draft(None, account or world.customer_a, issuer or world.provider,
                                   [{"description": "Service", "unit_price": amount}])  # fmt: skip
    return lifecycle.issue(draft)


def levels_payload(**changes):
    rows = [{"level": lv.code, "days": lv.days, "enabled": lv.enabled, "fee": "0",
             "fee_currency": "", "suspend": False} for lv in dunning.DEFAULT_LEVELS]  # fmt: skip
    for code, values in changes.items():
        next(r for r in rows if r["level"] == code).update(values)
    return {"levels": rows}


def steps(invoice):
    return [s.level for s in dunning.steps_of(invoice)]


# -- the levels, each once --------------------------------------------------------------------


def test_an_overdue_invoice_gets_each_level_once_on_its_day(world, sent):
    inv = overdue(world)
    due = inv.due_date
    for offset, expected in [(0, []), (2, []), (3, ["reminder_1"]), (3, ["reminder_1"]),
                             (13, ["reminder_1"]), (14, ["reminder_1", "reminder_2"]),
                             (29, ["reminder_1", "reminder_2"]),
                             (30, ["reminder_1", "reminder_2", "final_notice"]),
                             (400, ["reminder_1", "reminder_2", "final_notice"])]:  # fmt: skip
        dunning.run(due + timedelta(days=offset))
        assert steps(inv) == expected, offset
    assert sent == [(inv.id, "reminder_1"), (inv.id, "reminder_2"), (inv.id, "final_notice")]
    step = DunningStep.get(invoice=inv.id, level="reminder_2")
    assert (step.run_date, step.days_overdue) == (due + timedelta(days=14), 14)
    assert step.completed_at is not None and step.mailed_at is not None
    audited = AuditEntry.select().where(AuditEntry.action == "invoice.dunning").count()
    assert audited == 3


def test_an_invoice_found_past_every_level_gets_only_the_final_notice(world, sent):
    inv = overdue(world)
    summary = dunning.run(inv.due_date + timedelta(days=45))
    assert steps(inv) == ["final_notice"] and sent == [(inv.id, "final_notice")]
    assert summary["by_level"] == {"reminder_1": 0, "reminder_2": 0, "final_notice": 1}
    dunning.run(inv.due_date + timedelta(days=46))
    assert sent == [(inv.id, "final_notice")]  # the lower levels are never sent afterwards


def test_a_run_over_invoices_at_each_level_sends_what_is_due_and_nothing_twice(world, sent):
    on = TODAY - timedelta(days=1)
    fresh, first, second, final = (overdue(world, amount=a) for a in ("1", "2", "3", "4"))
    for inv, days in [(fresh, 1), (first, 5), (second, 20), (final, 31)]:
        Invoice.update(due_date=on - timedelta(days=days)).where(Invoice.id == inv.id).execute()
    summary = dunning.run(on)
    assert sorted(sent) == sorted([(first.id, "reminder_1"), (second.id, "reminder_2"),
                                   (final.id, "final_notice")])  # fmt: skip
    assert summary["checked"] == 4 and len(summary["steps"]) == 3 and not summary["failures"]
    dunning.run(on)
    dunning.run(TODAY)
    assert len(sent) == 3


def test_a_disabled_level_is_skipped_and_days_come_from_the_issuer(world, sent):
    dunning.update_levels(world.operator, world.provider, levels_payload(
        reminder_1={"days": 1}, reminder_2={"enabled": False}, final_notice={"days": 10}))  # fmt: skip
    inv = overdue(world)
    dunning.run(inv.due_date + timedelta(days=1))
    dunning.run(inv.due_date + timedelta(days=9))
    dunning.run(inv.due_date + timedelta(days=10))
    assert steps(inv) == ["reminder_1", "final_notice"]


# -- when dunning stops -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["paid", "voided", "credited", "paid by a payment", "draft"])
def test_settled_voided_credited_invoices_are_not_dunned(world, sent, how):
    inv = overdue(world)
    dunning.run(inv.due_date + timedelta(days=3))
    assert sent == [(inv.id, "reminder_1")]
    if how == "paid":
        lifecycle.mark_paid(inv)
    elif how == "voided":
        lifecycle.void(inv)
    elif how == "credited":
        lifecycle.credit_note(inv)
    elif how == "paid by a payment":
        payments.record_payment(None, world.customer_a, {"amount": "100.00"})
    else:  # a draft is never dunned, whatever its dates say
        draft = lifecycle.create_draft(None, world.customer_a, world.provider,
                                       [{"description": "x", "unit_price": "1"}])  # fmt: skip
        Invoice.update(due_date=date(2020, 1, 1)).where(Invoice.id == draft.id).execute()
        lifecycle.mark_paid(inv)
    dunning.run(inv.due_date + timedelta(days=60))
    assert sent == [(inv.id, "reminder_1")]


def test_a_partial_payment_keeps_the_rest_dunned(world, sent):
    inv = overdue(world)
    payments.record_payment(None, world.customer_a, {"amount": "40.00"})
    assert ledger.open_amount(Invoice.get_by_id(inv.id)) == 6000
    dunning.run(inv.due_date + timedelta(days=3))
    assert sent == [(inv.id, "reminder_1")]


def test_a_paused_account_is_not_dunned_until_resumed_and_pausing_is_audited(world, sent):
    inv = overdue(world)
    other = overdue(world, world.customer_b)
    dunning.pause(world.operator, world.customer_a, {"reason": "disputed by phone"})
    dunning.run(inv.due_date + timedelta(days=20))
    assert sent == [(other.id, "reminder_2")]
    with pytest.raises(Conflict):
        dunning.pause(world.operator, world.customer_a, {})
    dunning.resume(world.operator, world.customer_a)
    with pytest.raises(Conflict):
        dunning.resume(world.operator, world.customer_a)
    dunning.run(inv.due_date + timedelta(days=21))
    assert sent[-1] == (inv.id, "reminder_2")  # the level reached by then, only that
    actions = [e.action for e in AuditEntry.select().where(AuditEntry.action.startswith(
        "dunning.")).order_by(AuditEntry.id)]  # fmt: skip
    assert actions == ["dunning.pause", "dunning.resume"]


def test_only_the_seller_pauses_and_never_its_own_account(world):
    with pytest.raises(Forbidden):
        dunning.pause(world.user_a, world.customer_a, {})  # a customer pausing itself
    with pytest.raises(NotFound):
        dunning.pause(world.user_a, world.customer_b, {})  # another tenant: 404
    with pytest.raises(ValidationFailed) as err:
        dunning.pause(world.operator, world.customer_a, {"reason": "x\x00"})
    assert "reason" in err.value.errors and dunning.pause_of(world.customer_a) is None


# -- the late fee and the suspension ----------------------------------------------------------


def test_the_late_fee_is_a_normal_numbered_invoice_in_the_ledger(world, sent):
    dunning.update_levels(world.operator, world.provider, levels_payload(
        final_notice={"fee": "15.50", "fee_currency": "EUR"}))  # fmt: skip
    inv = overdue(world)
    dunning.run(inv.due_date + timedelta(days=30))
    step = DunningStep.get(invoice=inv.id, level="final_notice")
    fee = Invoice.get_by_id(step.fee_invoice_id)
    assert (fee.status, fee.kind, fee.currency, fee.subtotal) == ("issued", "invoice", "EUR", 1550)
    assert fee.number == "INV-000002" and fee.issuer_id == world.provider.id
    assert inv.number in fee.lines[0].description
    assert ledger.balance(world.customer_a, "EUR") == 10000 + fee.total
    # the fee invoice is dunned like any invoice, but never charged a fee of its own
    dunning.run(fee.due_date + timedelta(days=31))
    assert steps(fee) == ["final_notice"]
    assert DunningStep.get(invoice=fee.id).fee_invoice_id is None
    assert Invoice.select().count() == 2


def test_no_fee_when_the_fee_currency_is_not_the_invoices(world, sent):
    dunning.update_levels(world.operator, world.provider, levels_payload(
        reminder_1={"fee": "5", "fee_currency": "USD"}))  # fmt: skip
    inv = overdue(world)
    dunning.run(inv.due_date + timedelta(days=3))
    step = DunningStep.get(invoice=inv.id)
    assert step.fee_invoice_id is None and "USD" in step.note and Invoice.select().count() == 1


def test_the_final_notice_suspends_the_account_when_told(world, sent):
    dunning.update_levels(world.operator, world.provider, levels_payload(
        final_notice={"suspend": True}))  # fmt: skip
    inv = overdue(world)
    dunning.run(inv.due_date + timedelta(days=14))
    assert Account.get_by_id(world.customer_a.id).status == "active"
    dunning.run(inv.due_date + timedelta(days=30))
    assert Account.get_by_id(world.customer_a.id).status == "suspended"
    assert DunningStep.get(invoice=inv.id, level="final_notice").suspended

    changes = AccountStatusChange.select().where(AccountStatusChange.account == world.customer_a.id)
    assert [(c.status, c.actor_id) for c in changes] == [("suspended", None)]
    assert "final notice for " + inv.number in changes[0].reason


# -- levels: who and what ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reminder_2": {"days": 3}}, "levels.1.days"),  # not after the first
        ({"final_notice": {"days": 2}}, "levels.2.days"),
        ({"reminder_1": {"days": 0}}, "levels.0.days"),
        ({"reminder_1": {"days": 3651}}, "levels.0.days"),
        ({"reminder_1": {"days": "3"}}, "levels.0.days"),  # not a number
        ({"reminder_1": {"fee": "-1", "fee_currency": "EUR"}}, "levels.0.fee"),
        ({"reminder_1": {"fee": "100000000000001", "fee_currency": "EUR"}}, "levels.0.fee"),
        ({"reminder_1": {"fee": 1.5, "fee_currency": "EUR"}}, "levels.0.fee"),  # a float
        ({"reminder_1": {"fee": "1.005", "fee_currency": "EUR"}}, "levels.0.fee"),
        ({"reminder_1": {"fee": "5", "fee_currency": "XYZ"}}, "levels.0.fee_currency"),
        ({"reminder_1": {"fee": "5", "fee_currency": ""}}, "levels.0.fee_currency"),
        ({"reminder_1": {"suspend": True}}, "levels.0.suspend"),
        ({"reminder_1": {"level": "reminder_9"}}, "levels.0.level"),
    ],
)
def test_bad_levels_are_refused_naming_the_field_and_nothing_is_written(world, changes, field):
    with pytest.raises(ValidationFailed) as err:
        dunning.update_levels(world.operator, world.provider, levels_payload(**changes))
    assert field in err.value.errors, err.value.errors
    assert dunning.levels_of(world.provider) == list(dunning.DEFAULT_LEVELS)


def test_the_largest_fee_in_a_four_decimal_currency_is_kept_exactly(world):
    levels = dunning.update_levels(world.operator, world.provider, levels_payload(
        final_notice={"fee": "100000000000000", "fee_currency": "clf"}))  # fmt: skip
    assert levels[2].fee == 10**18 and levels[2].fee_currency == "CLF"
    assert dunning.levels_of(world.provider)[2].fee == 10**18


def test_levels_are_the_issuers_admins_and_only_of_accounts_that_sell(world):
    with pytest.raises(Forbidden):
        dunning.update_levels(world.user_a, world.customer_a, levels_payload())
    with pytest.raises(NotFound):
        dunning.update_levels(world.user_a, world.provider, levels_payload())
    with pytest.raises(Forbidden):  # a customer issues no invoices
        dunning.update_levels(world.operator, world.customer_a, levels_payload())


# -- dates ------------------------------------------------------------------------------------


def test_a_future_date_is_refused_and_the_oldest_date_finds_nothing(world, sent):
    overdue(world)
    with pytest.raises(Exception, match="after today"):
        dunning.run(TODAY + timedelta(days=1))
    assert dunning.run(date(1, 1, 1))["checked"] == 0
    assert dunning.run(date.max.replace(year=2031, month=6, day=1))["checked"] == 1
    assert DunningStep.select().count() == 1


# -- crashes and parallel runs ----------------------------------------------------------------


def test_a_killed_run_is_finished_by_the_next_and_a_failed_mail_is_retried(world, sent,
                                                                            monkeypatch):  # fmt: skip
    inv = overdue(world)
    on = inv.due_date + timedelta(days=3)
    # killed right after the step's commit: nothing after it happened
    level = dunning.due_level(dunning.levels_of(world.provider), inv.due_date, on)
    step = dunning.take_step(inv.id, level, on)
    assert step is not None and sent == [] and step.completed_at is None

    mailer = dunning._send

    def down(invoice, code, context):
        raise ConnectionError("mail server refused")

    monkeypatch.setattr(dunning, "_send", down)
    summary = dunning.run(on)
    assert summary["failures"] and "refused" in summary["failures"][0]["error"]
    step = DunningStep.get_by_id(step.id)
    assert step.mail_error and step.completed_at is None
    assert dunning.step_status(step).startswith("sending failed")
    monkeypatch.setattr(dunning, "_send", mailer)  # the mail server is back
    summary = dunning.run(on)
    assert summary["resumed"] == 1 and sent == [(inv.id, "reminder_1")]
    assert DunningStep.get_by_id(step.id).completed_at is not None
    dunning.run(on)
    assert sent == [(inv.id, "reminder_1")] and DunningStep.select().count() == 1


def test_parallel_runs_take_each_step_once(world, sent, ctx, backend):
    if backend == "sqlite":
        threads_n = 3
    else:
        threads_n = 6
    invoices = [overdue(world, amount=str(n + 1)) for n in range(4)]
    dunning.update_levels(world.operator, world.provider, levels_payload(
        final_notice={"fee": "5", "fee_currency": "EUR"}))  # fmt: skip
    on = invoices[-1].due_date + timedelta(days=30)
    database = ctx.extensions["billhive"].database
    barrier = threading.Barrier(threads_n)
    errors = []

    def worker():
        with ctx.app_context(), database.connection_context():
            barrier.wait()
            try:
                summary = dunning.run(on)
                errors.extend(summary["failures"])
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(sent) == sorted((inv.id, "final_notice") for inv in invoices)
    assert DunningStep.select().count() == 4
    fees = [s.fee_invoice_id for s in DunningStep.select()]
    assert None not in fees and len(set(fees)) == 4
    numbers = sorted(Invoice.get_by_id(f).number for f in fees)
    assert numbers == [f"INV-{n:06d}" for n in range(5, 9)]  # gap-free after the 4 invoices


# -- the worker's periodic run ----------------------------------------------------------------


def test_the_workers_dunning_task_duns_as_of_today(make_app, tmp_path, monkeypatch):
    """What `billhive worker` queues every DUNNING_SECONDS: a dunning run for today, taken
    from the queue by a worker; queued twice (two workers), it still mails once."""
    from core import tasks
    from core.billing.runs import queue
    from tests.conftest import World

    app = make_app(plugins=[], QUEUE="sqlite", QUEUE_PATH=str(tmp_path / "queue.db"))
    monkeypatch.setattr("core.clock.today", lambda: TODAY)
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        world = World()
        inv = overdue(world)
        tasks.get_queue(app).dunning_task()
        tasks.get_queue(app).dunning_task()
        assert queue.drain(app) == 2
        assert steps(inv) == ["final_notice"] and Sent() == [(inv.id, "final_notice")]
    assert app.config["DUNNING_SECONDS"] == 3600


# -- per issuer: a reseller's own levels -------------------------------------------------------


def test_a_resellers_customers_are_dunned_by_the_resellers_levels(make_app, tmp_path,
                                                                  license_keys, monkeypatch):  # fmt: skip
    from core import license_store
    from tests.conftest import World, issue

    app = make_app(plugins=["reseller_accounts"])
    monkeypatch.setattr("core.clock.today", lambda: TODAY)
    with app.app_context(), app.extensions["billhive"].database.connection_context():
        host = app.extensions["billhive"].host
        license_store.install(issue(license_keys, ["FT-3001.007"]), host.license_key_paths)
        host.set_enabled("reseller_accounts", True)
        world = World()
        reseller = world.add_account(world.provider, "Reseller", "reseller", invoice_prefix="RS-",
                                     profile={"customer_invoice_creation": True,
                                              "customer_invoice_type": "BOTH",
                                              "customer_billing_cycle_day": 1})  # fmt: skip
        admin = world.add_user(reseller, "admin@reseller.example")
        retail = world.add_account(reseller, "Retail customer")
        dunning.update_levels(admin, reseller, levels_payload(
            reminder_1={"days": 1}, reminder_2={"days": 2}, final_notice={"days": 5}))  # fmt: skip
        with pytest.raises(NotFound):  # the reseller's admin cannot touch the provider's
            dunning.update_levels(admin, world.provider, levels_payload())
        theirs = overdue(world, retail, issuer=reseller)
        ours = overdue(world, world.customer_a)
        dunning.run(theirs.due_date + timedelta(days=5))
        assert steps(theirs) == ["final_notice"]  # the reseller's 5 days
        assert steps(ours) == ["reminder_1"]  # the provider's defaults: 3 days
        assert theirs.number.startswith("RS-")
        assert sorted(Sent()) == sorted([(theirs.id, "final_notice"), (ours.id, "reminder_1")])
        # the reseller's admin pauses its customer, never itself
        dunning.pause(admin, retail, {"reason": "payment plan"})
        with pytest.raises(Forbidden):
            dunning.pause(admin, reseller, {})


# -- a run killed with SIGKILL ----------------------------------------------------------------

KILLED_RUNNER = """
import json, sys, time
import core.mail
from core import events
from hostapp import cli
from hostapp.app import create_app


def slowly(*args, **kwargs):  # a slow mail server: the kill lands between mail and step
    time.sleep(0.4)


events.listen("dunning_reminder", slowly)  # after core.mail's, which recorded the reminder
cli._app = create_app({**json.loads(sys.argv[1]), "PLUGINS": []})
sys.argv = ["billhive"] + sys.argv[2:]
cli.main()
"""


def test_a_run_killed_midway_is_finished_by_the_next_each_reminder_once(world, ctx,
                                                                        database_url):  # fmt: skip
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from core.mail.models import MailMessage

    root = Path(__file__).resolve().parents[1]
    invoices = [overdue(world, amount=str(n + 1)) for n in range(6)]
    Account.update(email="ap@customer-a.example").where(Account.id == world.customer_a.id).execute()
    for inv in invoices:  # 40 days overdue by the real clock, which the killed process reads
        Invoice.update(due_date=date.today() - timedelta(days=40)).where(
            Invoice.id == inv.id).execute()  # fmt: skip
    config = {"DATABASE_URL": database_url, "DATA_DIR": ctx.config["DATA_DIR"],
              "SECRET_KEY": "test"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUNNER, json.dumps(config), "dunning", "run"], cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        reminders = MailMessage.select().where(MailMessage.event_key.startswith("dunning:"))
        while reminders.count() < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the run mailed nothing"
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate(timeout=10)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    taken_before = DunningStep.select().count()
    assert 2 <= taken_before < 6  # killed midway
    assert DunningStep.select().where(DunningStep.completed_at.is_null()).count() >= 1
    summary = dunning.run()
    assert summary["resumed"] >= 1 and not summary["failures"]
    assert len(summary["steps"]) == 6 - taken_before
    assert DunningStep.select().where(DunningStep.completed_at.is_null()).count() == 0
    mails = [m.event_key for m in MailMessage.select().where(
        MailMessage.event_key.startswith("dunning:"))]  # fmt: skip
    assert sorted(mails) == sorted(f"dunning:{inv.id}:final_notice" for inv in invoices)
