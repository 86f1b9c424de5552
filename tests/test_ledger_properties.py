"""The balance always equals the ledger: random sequences of invoices, payments (oldest first
or chosen), refunds, credit notes, prepaid top-ups, voids and reversals keep

* balance == SUM(entries) == issued documents - payments + refunds - prepaid credit applied,
* balance == amount due on open invoices - unallocated credit,
* an invoice is paid exactly when nothing is due on it, prepaid credit is never negative,
* what an invoice shows as owed (paid + credit applied + due == total, due == open amount,
  a void invoice owes and holds nothing),
* a statement's closing balance is the next period's opening balance;

and invoices issued before the ledger existed are posted once, by core migration 9 at the
first start of the release that has the ledger."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.billing.invoicing import lifecycle
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments, statements
from core.billing.models import Invoice, LedgerEntry, Payment, PrepaidTopup
from core.db import utcnow
from core.errors import BillhiveError

app = pytest.fixture(lambda make_app: make_app(plugins=[]), name="app")

TODAY = date.today()
_names = itertools.count()

amounts = st.integers(min_value=1, max_value=50_000).map(lambda c: f"{c // 100}.{c % 100:02d}")
steps = st.lists(
    st.one_of(
        st.tuples(st.just("invoice"), amounts),
        st.tuples(st.just("pay"), amounts),
        st.tuples(st.just("pay_chosen"), amounts),
        st.tuples(st.just("refund"), amounts),
        st.tuples(st.just("credit_note"), st.integers(0, 10)),
        st.tuples(st.just("topup"), amounts),
        st.tuples(st.just("void"), st.integers(0, 10)),
        st.tuples(st.just("reverse"), st.integers(0, 10)),
        st.tuples(st.just("back_pay"), amounts, st.integers(1, 40)),
    ),
    min_size=1,
    max_size=12,
)


def check(account, seller):
    entries = list(LedgerEntry.select().where(LedgerEntry.account == account.id))
    balance = ledger.balance(account, "EUR")
    assert balance == sum(e.amount for e in entries)
    docs = Invoice.select().where((Invoice.account == account.id) & (Invoice.status != "void"))
    reversed_ids = {e.reverses_id for e in entries if e.reverses_id}
    money = {p.id: p for p in Payment.select().where(Payment.account == account.id)}
    live = [e for e in entries if e.payment_id and e.kind in ("payment", "refund")
            and e.id not in reversed_ids]  # fmt: skip
    paid_in = sum(money[e.payment_id].amount for e in live if e.kind == "payment")
    paid_out = sum(money[e.payment_id].amount for e in live if e.kind == "refund")
    applied = sum(ledger.credit_applied_to(d) for d in docs if d.kind == "invoice")
    assert balance == sum(d.total for d in docs) - paid_in + paid_out - applied
    due = sum(amount for _, amount in ledger.open_invoices(account, seller, "EUR"))
    assert balance == due - ledger.unallocated_credit(account, seller, "EUR")
    for doc in docs:
        if doc.kind == "invoice":
            assert (doc.status == "paid") == (ledger.open_amount(doc) == 0), doc.number
    # what an invoice page shows as owed (ledger.settlement) adds up and agrees with the ledger
    for doc in Invoice.select().where(
        (Invoice.account == account.id) & (Invoice.kind == "invoice")
    ):
        owed = ledger.settlement(doc)
        assert owed["due"] == ledger.open_amount(doc), doc.number
        if doc.status == "void":
            assert owed == {"paid": 0, "credit": 0, "due": 0}
        else:
            assert owed["paid"] >= 0 and owed["credit"] >= 0 and owed["due"] >= 0
            assert sum(owed.values()) == doc.total, doc.number
    assert ledger.prepaid_available(account, seller, "EUR") >= 0
    early = statements.build(account, TODAY - timedelta(days=90), TODAY - timedelta(days=15))
    late = statements.build(account, TODAY - timedelta(days=14), TODAY)
    assert early["currencies"][0]["closing_minor"] == late["currencies"][0]["opening_minor"]
    assert late["currencies"][0]["closing_minor"] == balance


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=steps)
def test_the_balance_always_equals_the_ledger(world, plan):
    account = world.add_account(world.provider, f"Random {next(_names)}")
    seller, operator = world.provider, world.operator
    docs: list[Invoice] = []

    def pick(index, kinds=("invoice",)):
        found = [d for d in docs if d.kind in kinds]
        return Invoice.get_by_id(found[index % len(found)].id) if found else None

    for step in plan:
        op = step[0]
        try:
            if op == "invoice":
                draft = lifecycle.create_draft(None, account, seller,
                                               [{"description": "x", "unit_price": step[1]}])  # fmt: skip
                docs.append(lifecycle.issue(draft))
            elif op == "pay":
                payments.record_payment(operator, account, {"amount": step[1]})
            elif op == "back_pay":
                day = (TODAY - timedelta(days=step[2])).isoformat()
                payments.record_payment(operator, account, {"amount": step[1], "date": day})
            elif op == "pay_chosen":
                opened = ledger.open_invoices(account, seller, "EUR")
                ids = [inv.id for inv, _ in opened[-1:]]
                payments.record_payment(operator, account, {"amount": step[1],
                                                            "invoice_ids": ids or None})  # fmt: skip
            elif op == "refund":
                payments.record_refund(operator, account, {"amount": step[1]})
            elif op == "topup":
                docs.append(payments.create_topup(operator, account, {"amount": step[1]}))
            elif op == "credit_note" and pick(step[1]):
                docs.append(lifecycle.credit_note(pick(step[1]), operator))
            elif op == "void" and pick(step[1], ("invoice", "credit_note")):
                lifecycle.void(pick(step[1], ("invoice", "credit_note")), operator)
            elif op == "reverse":
                live = list(LedgerEntry.select().where(
                    (LedgerEntry.account == account.id)
                    & LedgerEntry.kind.in_(("payment", "refund"))).order_by(LedgerEntry.id))  # fmt: skip
                if live:
                    payments.reverse_entry(operator, account, live[step[1] % len(live)].id)
        except BillhiveError:
            pass  # refused (nothing to refund, already credited, paid ...): nothing changed
        check(account, seller)


def test_the_upgrade_posts_invoices_issued_before_the_ledger_once(world, make_app):
    from core.migrations import SchemaMigration

    a, seller = world.customer_a, world.provider
    now = utcnow()

    def old(number, total, status, **extra):
        return Invoice.create(account=a.id, issuer=seller.id, kind=extra.pop("kind", "invoice"),
                              status=status, number=number, currency="EUR", subtotal=total,
                              total=total, issued_at=now - timedelta(days=40), **extra)  # fmt: skip

    open_ = old("OLD-1", 5000, "issued")
    paid = old("OLD-2", 3000, "paid", paid_at=now - timedelta(days=30))
    old("OLD-3", 9900, "void", voided_at=now - timedelta(days=20))
    old("OLD-CN1", -1000, "issued", kind="credit_note", credit_for=open_)
    topup = old("OLD-4", 2000, "paid", paid_at=now - timedelta(days=35))
    PrepaidTopup.create(invoice=topup.id, account=a.id)
    # as the release before the ledger left them: no entries, core step 9 not applied
    SchemaMigration.delete().where(SchemaMigration.name == "ledger_backfill").execute()
    make_app(plugins=[])  # the upgraded release starts
    assert SchemaMigration.select().where(SchemaMigration.name == "ledger_backfill").count() == 1
    assert ledger.backfill() == 0  # posted once: nothing left
    assert ledger.balance(a, "EUR") == 4000  # 50.00 - 10.00 credited; the rest was paid
    assert ledger.open_amount(Invoice.get_by_id(open_.id)) == 4000
    assert ledger.open_amount(Invoice.get_by_id(paid.id)) == 0
    assert ledger.prepaid_available(a, seller, "EUR") == 2000
    kinds = sorted(e.kind for e in LedgerEntry.select().where(LedgerEntry.account == a.id))
    assert kinds == sorted(["invoice", "invoice", "invoice", "reversal", "credit_note",
                            "prepaid_topup", "payment", "payment"])  # fmt: skip
