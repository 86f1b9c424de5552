"""Once per event key, over random sequences (hypothesis state machine, both databases):
messages recorded, delivered again and again, attempts failing, senders dying before or after
writing the outbox file, the sweeper settling them. At every step no key has more than one
message and no message more than one file; once the transport works and the sweeper has run,
every key's message is sent and in the outbox exactly once."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.test_mail import billed_customer, issue_invoice

KEYS = ("k1", "k2", "k3")
MODES = ("ok", "fail", "die_before", "die_after")
_examples = itertools.count()


@pytest.fixture
def app(make_app):
    return make_app(plugins=[], MAIL_RETRY_SECONDS=60)


def test_each_event_key_is_sent_exactly_once_whatever_happens(ctx, world, monkeypatch):
    from core.mail import delivery, send_for_invoice, tasks, transport
    from core.mail.models import MailMessage

    invoice = issue_invoice(world, billed_customer(world))
    real_write = transport.write_outbox
    state = {"mode": "ok"}
    writes: dict[int, int] = {}  # message id -> times its file was written (a send)

    def write(message, email):
        mode = state["mode"]
        if mode == "fail":
            raise OSError("disk full")
        if mode == "die_before":
            raise SystemExit("killed before writing")
        path = real_write(message, email)
        writes[message.id] = writes.get(message.id, 0) + 1
        if mode == "die_after":
            raise SystemExit("killed after writing")
        return path

    monkeypatch.setattr(transport, "write_outbox", write)
    outbox = transport.outbox_dir()

    class Mailer(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.prefix = f"ex{next(_examples)}"
            self.keys: set[str] = set()

        def key(self, name):
            return f"{self.prefix}:{name}"

        def rows(self):
            return list(MailMessage.select().where(MailMessage.event_key.startswith(self.prefix)))

        def files(self, message):
            return list(outbox.rglob(f"{message.id:08d}-*.eml"))

        @rule(mode=st.sampled_from(MODES))
        def transport_now(self, mode):
            state["mode"] = mode

        @rule(name=st.sampled_from(KEYS))
        def record(self, name):
            self.keys.add(name)
            try:
                send_for_invoice(invoice, "reminder_1", event_key=self.key(name))
            except SystemExit:
                pass  # the process died after the commit, mid-send

        @rule(name=st.sampled_from(KEYS))
        def deliver_again(self, name):  # a duplicate or late task
            message = MailMessage.get_or_none(MailMessage.event_key == self.key(name))
            if message is not None:
                try:
                    delivery.deliver(message.id)
                except SystemExit:
                    pass

        @rule()
        def time_passes(self):  # backoffs end, claims go stale
            MailMessage.update(next_attempt_at=None).where(
                MailMessage.event_key.startswith(self.prefix) & (MailMessage.status == "retry")
            ).execute()
            for message in self.rows():
                if message.status == "sending":
                    old = message.claimed_at - timedelta(hours=1)
                    MailMessage.update(claimed_at=old).where(MailMessage.id == message.id).execute()

        @rule()
        def sweep(self):
            try:
                tasks.sweep()
            except SystemExit:
                pass

        @invariant()
        def never_twice(self):
            rows = self.rows()
            assert len({m.event_key for m in rows}) == len(rows)
            for message in rows:
                assert writes.get(message.id, 0) <= 1, f"{message.event_key} sent twice"
                assert len(self.files(message)) <= 1, message.event_key
                if message.status == "sent":
                    assert len(self.files(message)) == 1

        def teardown(self):
            state["mode"] = "ok"
            for _ in range(3):  # the transport works again; the sweeper runs a few times
                self.time_passes()
                tasks.sweep()
            rows = self.rows()
            assert {m.event_key for m in rows} == {self.key(k) for k in self.keys}
            for message in rows:
                if message.attempts < 5:  # not given up after MAIL_MAX_ATTEMPTS
                    assert message.status == "sent", (message.status, message.last_error)
                    assert len(self.files(message)) == 1 and writes[message.id] == 1

    run_state_machine_as_test(
        Mailer,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),  # fmt: skip
    )
