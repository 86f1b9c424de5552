"""Dunning over random sequences of run dates (forwards and backwards), payments, voids,
credit notes, pauses and resumes: an invoice's steps only ever climb, each (invoice, level)
is mailed exactly once, nothing is taken for an invoice once it is paid, void or credited or
while its account is paused, and a run leaves every dunnable invoice at the level it reached.
Derandomized: the same examples in every CI run."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.billing.invoicing import lifecycle
from core.billing.ledger import dunning, payments
from core.billing.ledger import entries as ledger
from core.billing.models import DUNNING_LEVELS, DunningStep, Invoice
from core.errors import BillhiveError
from core.mail.models import MailMessage

TODAY = date(2031, 6, 1)
_names = itertools.count()

steps = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.integers(-5, 60)),  # days after the first due date
        st.tuples(st.sampled_from(["pay", "void", "credit", "part_pay"]), st.integers(0, 2)),
        st.tuples(st.sampled_from(["pause", "resume"])),
    ),
    min_size=1,
    max_size=12,
)


def taken(invoice_id: int) -> list[str]:
    rows = DunningStep.select().where(DunningStep.invoice == invoice_id).order_by(DunningStep.id)
    return [s.level for s in rows]


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(plan=steps)
def test_each_level_once_only_climbing_never_after_settled_or_while_paused(world, monkeypatch,
                                                                           plan):  # fmt: skip
    monkeypatch.setattr("core.clock.today", lambda: TODAY)
    account = world.add_account(world.provider, f"Random {next(_names)}")
    invoices = [
        lifecycle.issue(lifecycle.create_draft(None, account, world.provider,
                                               [{"description": "x", "unit_price": "10"}]))
        for _ in range(3)
    ]  # fmt: skip
    due = min(inv.due_date for inv in invoices)
    stopped: set[int] = set()
    paused = False
    levels = dunning.levels_of(world.provider)
    for step in plan:
        before = {inv.id: taken(inv.id) for inv in invoices}
        op = step[0]
        try:
            if op == "run":
                on = due + timedelta(days=step[1])
                dunning.run(on)
                for inv in invoices:
                    now = taken(inv.id)
                    if inv.id in stopped or paused:
                        assert now == before[inv.id], (op, inv.number)
                        continue
                    reached = dunning.due_level(levels, inv.due_date, on)
                    if reached is not None:  # it is at the level it reached, or higher
                        assert max(DUNNING_LEVELS.index(c) for c in now) >= reached.rank
            else:
                target = Invoice.get_by_id(invoices[step[1] % 3].id) if len(step) > 1 else None
                if op == "pay":
                    lifecycle.mark_paid(target)
                    stopped.add(target.id)
                elif op == "void":
                    lifecycle.void(target)
                    stopped.add(target.id)
                elif op == "credit":
                    lifecycle.credit_note(target)
                    stopped.add(target.id)
                elif op == "part_pay" and ledger.open_amount(target) > 100:
                    payments.record_payment(None, account, {"amount": "1.00",
                                                            "invoice_ids": [target.id]})  # fmt: skip
                elif op == "pause" and not paused:
                    dunning.pause(world.operator, account, {})
                    paused = True
                elif op == "resume" and paused:
                    dunning.resume(world.operator, account)
                    paused = False
        except BillhiveError:
            pass  # refused (already paid, void, credited): nothing changed
        for inv in invoices:
            levels_taken = taken(inv.id)
            ranks = [DUNNING_LEVELS.index(c) for c in levels_taken]
            assert ranks == sorted(set(ranks)), f"{inv.number}: {levels_taken}"  # only climbing
            mails = [
                m.event_key
                for m in MailMessage.select().where(MailMessage.invoice == inv.id)
                if m.event_key.startswith("dunning:")
            ]
            assert sorted(mails) == sorted(f"dunning:{inv.id}:{c}" for c in levels_taken)
