"""Status changes and money moves under parallel callers, on SQLite and PostgreSQL.

Every status change of an invoice (issue, pay, void, credit) and every money move that reads
before it writes (payments, refunds, reversals, prepaid credit drawn by new invoices) is
guarded by row locks taken inside its transaction, so N callers racing for one change give
exactly one success and N-1 clear refusals (409 naming what happened). After every race the
ledger agrees with itself (see :func:`assert_ledger_consistent`).

The callers are real parallel clients: worker processes of gunicorn (``billhive run
--workers 4``) for the reproduction of issue 15, and threads of one web process (each with its
own database connection) for the others. A barrier releases them together.
"""

from __future__ import annotations

import threading

import peewee as pw
import pytest
import requests

from core.billing.invoicing import lifecycle
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments
from core.billing.models import (
    Allocation,
    Invoice,
    InvoiceSequence,
    LedgerEntry,
    Payment,
    PrepaidTopup,
)
from core.models import Account
from tests.conftest import BUILTIN_PLUGINS, PASSWORD
from tests.servers import billhive_run

CALLERS = 8
API = "/api/v1"


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf"])


# -- helpers -----------------------------------------------------------------------------------


def issue_invoice(world, account, *amounts):
    lines = [{"description": f"Service {i}", "quantity": "1", "unit_price": a}
             for i, a in enumerate(amounts, start=1)]  # fmt: skip
    draft = lifecycle.create_draft(None, account, world.provider, lines)
    return lifecycle.issue(draft)


def race(calls):
    """Run each of ``calls`` in its own thread, released together by a barrier; returns
    their results (or the exception each raised) in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the caller's assertions
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a caller never returned"
    return results


def answers(responses):
    """``[(status, json)]`` of test-client responses (or requests' responses)."""
    out = []
    for resp in responses:
        assert not isinstance(resp, Exception), repr(resp)
        body = resp.get_json() if hasattr(resp, "get_json") else resp.json()
        out.append((resp.status_code, body))
    return out


def one_success(results, ok_status, refusal_status=409, says=()):
    """Exactly one caller succeeded; every other one got ``refusal_status`` with a message
    containing one of ``says``. Returns the winner's body."""
    statuses = sorted(status for status, _ in results)
    assert statuses == [ok_status] + [refusal_status] * (len(results) - 1), results
    for status, body in results:
        if status != ok_status:
            assert body["code"] == ("conflict" if refusal_status == 409 else body["code"])
            assert any(text in body["message"] for text in says), body
    return next(body for status, body in results if status == ok_status)


def assert_ledger_consistent(account):
    """The ledger agrees with itself for ``account``, per seller and currency:

    * balance == SUM(entries) == amount due on open invoices - unallocated credit;
    * no invoice has more allocated (plus prepaid credit applied) than its total, no payment
      or credit note more allocated than its amount, every refund is covered exactly;
    * an issued invoice still has something due, a paid one nothing;
    * prepaid credit left is never negative;
    * the API's balance figures are these."""
    account = Account.get_by_id(account.id)
    pairs = set(
        LedgerEntry.select(LedgerEntry.seller, LedgerEntry.currency)
        .where(LedgerEntry.account == account.id)
        .tuples()
    )
    for seller, currency in pairs:
        entries = sum(
            e.amount
            for e in LedgerEntry.select().where(
                (LedgerEntry.account == account.id)
                & (LedgerEntry.seller == seller)
                & (LedgerEntry.currency == currency)
            )
        )
        due = sum(amount for _, amount in ledger.open_invoices(account, seller, currency))
        credit = ledger.unallocated_credit(account, seller, currency)
        assert ledger.balance(account, currency, seller) == entries == due - credit, (
            seller, currency, entries, due, credit)  # fmt: skip
        assert ledger.prepaid_available(account.id, seller, currency) >= 0
    allocated = {}
    for alloc in Allocation.select().where(Allocation.account == account.id):
        assert alloc.amount > 0
        for key in ("invoice_id", "payment_id", "credit_note_id", "refund_id"):
            ref = getattr(alloc, key)
            if ref is not None:
                allocated[(key, ref)] = allocated.get((key, ref), 0) + alloc.amount
    for inv in Invoice.select().where(Invoice.account == account.id):
        if inv.kind == "invoice":
            covered = allocated.get(("invoice_id", inv.id), 0) + ledger.credit_applied_to(inv)
            assert covered <= inv.total, (inv.number, covered, inv.total)
            if inv.status == "issued":
                assert ledger.open_amount(inv) > 0, inv.number
            if inv.status == "paid":
                assert ledger.open_amount(inv) == 0, inv.number
        elif inv.status != "void":
            assert allocated.get(("credit_note_id", inv.id), 0) <= -inv.total, inv.number
    for pay in Payment.select().where(Payment.account == account.id):
        used = allocated.get(("payment_id", pay.id), 0)
        if pay.kind == "payment":
            assert used <= pay.amount, (pay.id, used, pay.amount)
        else:
            assert allocated.get(("refund_id", pay.id), 0) == pay.amount, pay.id
    for row in ledger.summary(account):
        assert row["balance"] == row["amount_due"] - row["unallocated_credit"], row


# -- reproduction 6: one invoice paid several times -------------------------------------------


@pytest.fixture
def served(app, database_url):
    """The app served by ``billhive run --workers 4`` (gunicorn, four processes)."""
    with billhive_run(app, database_url, plugins=BUILTIN_PLUGINS, workers=4, wait=90) as (_, base):
        yield base


@pytest.mark.slow
def test_eight_parallel_pays_through_gunicorn_record_one_payment(world, served):
    """Issue 15, reproduction 6: 8 parallel ``POST /invoices/<id>/pay`` against gunicorn with
    4 workers answered 200 three times and recorded 3 payments on PostgreSQL. Now: one 200,
    seven 409 saying it is already paid, one payment, the balance 0 and no credit."""
    a = world.customer_a
    invoice = issue_invoice(world, a, "6.66")
    resp = requests.post(f"{served}{API}/tokens", timeout=30,
                         json={"email": world.operator.email, "password": PASSWORD})  # fmt: skip
    assert resp.status_code == 201, resp.text
    headers = {"Authorization": f"Bearer {resp.json()['token']}"}
    sessions = [requests.Session() for _ in range(CALLERS)]
    for s in sessions:  # one kept-alive connection each, opened before the race
        assert s.get(f"{served}{API}/invoices/{invoice.id}", headers=headers, timeout=30).ok

    def pay(session):
        return lambda: session.post(f"{served}{API}/invoices/{invoice.id}/pay",
                                    headers=headers, timeout=120)  # fmt: skip

    results = answers(race([pay(s) for s in sessions]))
    body = one_success(results, 200, says=("is already paid",))
    assert body["status"] == "paid"
    balance = requests.get(f"{served}{API}/accounts/{a.id}/balance", headers=headers,
                           timeout=30).json()["balances"]  # fmt: skip
    assert [
        (b["currency"], b["balance_minor"], b["unallocated_credit_minor"]) for b in balance
    ] == [("EUR", 0, 0)], balance
    assert Payment.select().where(Payment.account == a.id).count() == 1
    assert Payment.get(Payment.account == a.id).amount == 666
    assert_ledger_consistent(a)


# -- the other status changes, threads of one web process ------------------------------------


def clients(api, user, n=CALLERS):
    return [api(user) for _ in range(n)]


def test_parallel_pays_one_payment(world, api):
    a = world.customer_a
    invoice = issue_invoice(world, a, "6.66")
    results = answers(race([lambda c=c: c.post(f"{API}/invoices/{invoice.id}/pay")
                            for c in clients(api, world.operator)]))  # fmt: skip
    one_success(results, 200, says=("is already paid",))
    assert Payment.select().count() == 1
    assert ledger.balance(a, "EUR") == 0
    assert_ledger_consistent(a)


def test_parallel_voids_one_reversal(world, api):
    a = world.customer_a
    invoice = issue_invoice(world, a, "40.00")
    payments.record_payment(world.operator, a, {"amount": "15.00"})  # allocated, then released
    results = answers(race([lambda c=c: c.post(f"{API}/invoices/{invoice.id}/void")
                            for c in clients(api, world.operator)]))  # fmt: skip
    one_success(results, 200, says=("is already void",))
    assert LedgerEntry.select().where(LedgerEntry.kind == "reversal").count() == 1
    assert ledger.balance(a, "EUR") == -1500  # the payment is credit again
    assert ledger.unallocated_credit(a, world.provider, "EUR") == 1500
    assert_ledger_consistent(a)


def test_pay_and_void_racing_one_wins(world, api):
    a = world.customer_a
    invoice = issue_invoice(world, a, "12.34")
    calls = []
    for i, c in enumerate(clients(api, world.operator)):
        action = "pay" if i % 2 else "void"
        calls.append(lambda c=c, action=action: c.post(f"{API}/invoices/{invoice.id}/{action}"))
    results = answers(race(calls))
    won = one_success(results, 200, says=("is already paid", "is already void", "is paid",
                                          "is void"))  # fmt: skip
    final = Invoice.get_by_id(invoice.id)
    assert final.status == won["status"] in ("paid", "void")
    assert Payment.select().count() == (1 if final.status == "paid" else 0)
    assert LedgerEntry.select().where(LedgerEntry.kind == "reversal").count() == (
        1 if final.status == "void" else 0
    )
    assert ledger.balance(a, "EUR") == 0
    assert_ledger_consistent(a)


def test_parallel_credit_notes_one_note(world, api):
    """Crediting the whole invoice 8 times at once: one credit note; a credit note never
    exceeds what is left to credit."""
    a = world.customer_a
    invoice = issue_invoice(world, a, "10.00", "5.00")
    results = answers(race([lambda c=c: c.post(f"{API}/invoices/{invoice.id}/credit-note",
                                                json={})
                            for c in clients(api, world.operator)]))  # fmt: skip
    one_success(results, 201, says=("already credited",))
    notes = list(Invoice.select().where(Invoice.kind == "credit_note"))
    assert len(notes) == 1 and notes[0].total == -1500
    assert InvoiceSequence.get(kind="credit_note").next_number == 2  # gap-free
    assert Invoice.get_by_id(invoice.id).status == "paid"  # the note settled it
    assert ledger.balance(a, "EUR") == 0
    assert_ledger_consistent(a)


def test_parallel_line_credit_notes_never_exceed_the_invoice(world, api):
    """Callers crediting line 1, line 2 or both at once: each line is credited once."""
    a = world.customer_a
    invoice = issue_invoice(world, a, "10.00", "5.00")
    choices = [[1], [2], [1, 2], [2, 1]] * 2
    results = answers(race([lambda c=c, p=p: c.post(f"{API}/invoices/{invoice.id}/credit-note",
                                                    json={"positions": p})
                            for c, p in zip(clients(api, world.operator), choices,
                                            strict=True)]))  # fmt: skip
    assert all(status in (201, 409) for status, _ in results), results
    for status, body in results:
        if status == 409:
            assert "already credited" in body["message"], body
    credited = [
        line.source
        for note in Invoice.select().where(Invoice.kind == "credit_note")
        for line in note.lines
    ]
    assert sorted(credited) == sorted(set(credited)) and len(credited) == 2
    assert sum(n.total for n in Invoice.select().where(Invoice.kind == "credit_note")) == -1500
    assert_ledger_consistent(a)


def test_parallel_issues_of_one_draft_take_one_number(world, api):
    a = world.customer_a
    draft = lifecycle.create_draft(None, a, world.provider,
                                   [{"description": "Setup", "unit_price": "99.00"}])  # fmt: skip
    results = answers(race([lambda c=c: c.post(f"{API}/invoices/{draft.id}/issue")
                            for c in clients(api, world.operator)]))  # fmt: skip
    one_success(results, 200, says=("is already issued",))
    assert InvoiceSequence.get(kind="invoice").next_number == 2  # one number, no gap
    assert LedgerEntry.select().where(LedgerEntry.kind == "invoice").count() == 1
    assert ledger.balance(a, "EUR") == 9900
    assert_ledger_consistent(a)


def test_parallel_refunds_never_exceed_the_credit(world, api):
    a = world.customer_a
    payments.record_payment(world.operator, a, {"amount": "30.00"})  # all credit
    results = answers(race([lambda c=c: c.post(f"{API}/accounts/{a.id}/refunds",
                                               json={"amount": "30.00"})
                            for c in clients(api, world.operator)]))  # fmt: skip
    one_success(results, 201, refusal_status=422, says=("can be refunded",))
    assert Payment.select().where(Payment.kind == "refund").count() == 1
    assert ledger.balance(a, "EUR") == 0
    assert ledger.unallocated_credit(a, world.provider, "EUR") == 0
    assert_ledger_consistent(a)


def test_parallel_reversals_of_one_payment_one_reversal(world, api):
    a = world.customer_a
    issue_invoice(world, a, "50.00")
    payment = payments.record_payment(world.operator, a, {"amount": "20.00"})
    entry = ledger.entry_of_payment(payment)
    results = answers(race([lambda c=c: c.post(f"{API}/accounts/{a.id}/ledger/{entry.id}/reverse",
                                               json={"memo": "typo"})
                            for c in clients(api, world.operator)]))  # fmt: skip
    one_success(results, 201, says=("already reversed",))
    assert LedgerEntry.select().where(LedgerEntry.kind == "reversal").count() == 1
    assert ledger.balance(a, "EUR") == 5000
    assert_ledger_consistent(a)


def test_parallel_payments_allocate_no_more_than_is_due(world, api):
    """8 payments of 25.00 at once against invoices of 60.00 and 40.00: the invoices are paid,
    the other 100.00 is credit, no invoice is over-allocated."""
    a = world.customer_a
    first = issue_invoice(world, a, "60.00")
    second = issue_invoice(world, a, "40.00")
    results = answers(race([lambda c=c: c.post(f"{API}/accounts/{a.id}/payments",
                                               json={"amount": "25.00"})
                            for c in clients(api, world.operator)]))  # fmt: skip
    assert [status for status, _ in results] == [201] * CALLERS, results
    assert Invoice.get_by_id(first.id).status == Invoice.get_by_id(second.id).status == "paid"
    assert ledger.balance(a, "EUR") == -10000
    assert ledger.unallocated_credit(a, world.provider, "EUR") == 10000
    assert_ledger_consistent(a)


def test_parallel_pays_and_payments(world, api):
    """Marking paid by hand while payments arrive: the invoice is paid once, by whichever
    came first; nothing is allocated twice."""
    a = world.customer_a
    invoice = issue_invoice(world, a, "30.00")
    calls = []
    for i, c in enumerate(clients(api, world.operator)):
        if i % 2:
            calls.append(lambda c=c: c.post(f"{API}/invoices/{invoice.id}/pay"))
        else:
            calls.append(lambda c=c: c.post(f"{API}/accounts/{a.id}/payments",
                                            json={"amount": "30.00"}))  # fmt: skip
    results = answers(race(calls))
    assert all(status in (200, 201, 409) for status, _ in results), results
    assert [s for s, _ in results].count(201) == CALLERS // 2  # payments are always recorded
    assert Invoice.get_by_id(invoice.id).status == "paid"
    covered = (
        Allocation.select(pw.fn.SUM(Allocation.amount))
        .where(Allocation.invoice == invoice.id)
        .scalar()
    )
    assert int(covered) == 3000
    assert_ledger_consistent(a)


def test_parallel_issues_draw_prepaid_credit_once(world, api):
    """50.00 of prepaid credit and 8 invoices of 20.00 issued at once: 50.00 is drawn in
    all (20 + 20 + 10), never more."""
    a = world.customer_a
    topup = payments.create_topup(world.operator, a, {"amount": "50.00"})
    payments.record_payment(world.operator, a, {"amount": "50.00", "invoice_ids": [topup.id]})
    assert ledger.prepaid_available(a.id, world.provider.id, "EUR") == 5000
    drafts = [
        lifecycle.create_draft(
            None, a, world.provider, [{"description": "Service", "unit_price": "20.00"}]
        )  # fmt: skip
        for _ in range(CALLERS)
    ]
    results = answers(race([lambda c=c, d=d: c.post(f"{API}/invoices/{d.id}/issue")
                            for c, d in zip(clients(api, world.operator), drafts,
                                            strict=True)]))  # fmt: skip
    assert [status for status, _ in results] == [200] * CALLERS, results
    assert ledger.prepaid_available(a.id, world.provider.id, "EUR") == 0
    drawn = -sum(e.amount for e in LedgerEntry.select().where(LedgerEntry.kind == "credit_applied"))
    assert drawn == 5000
    ids = [d.id for d in drafts]
    statuses = sorted(i.status for i in Invoice.select().where(Invoice.id.in_(ids)))
    assert statuses == ["issued"] * 6 + ["paid"] * 2
    assert PrepaidTopup.select().count() == 1
    assert ledger.balance(a, "EUR") == CALLERS * 2000 - 5000
    assert_ledger_consistent(a)


def test_draft_edits_racing_its_issue_never_change_an_issued_invoice(world, api):
    """Lines of a draft replaced by 7 callers while an 8th issues it: the issued invoice's
    total is the sum of its lines, its ledger entry is that total, and every edit that came
    after the issue was refused with 409."""
    a = world.customer_a
    draft = lifecycle.create_draft(None, a, world.provider,
                                   [{"description": "Setup", "unit_price": "10.00"}])  # fmt: skip
    calls = [lambda c=api(world.operator): c.post(f"{API}/invoices/{draft.id}/issue")]
    for i in range(1, CALLERS):
        lines = [{"description": f"Edit {i}", "unit_price": f"{i}.00"}] * 2
        calls.append(lambda c=api(world.operator), lines=lines: c.patch(
            f"{API}/invoices/{draft.id}", json={"lines": lines}))  # fmt: skip
    results = answers(race(calls))
    assert results[0][0] == 200, results[0]
    assert all(status in (200, 409) for status, _ in results[1:]), results
    for status, body in results[1:]:
        if status == 409:
            assert "issued" in body["message"], body
    issued = Invoice.get_by_id(draft.id)
    assert issued.status == "issued"
    assert issued.total == sum(line.amount for line in issued.lines)
    entry = LedgerEntry.get(LedgerEntry.invoice == draft.id)
    assert entry.amount == issued.total
    assert_ledger_consistent(a)


def test_a_draft_deleted_while_it_is_issued_is_one_or_the_other(world, api):
    a = world.customer_a
    drafts = [
        lifecycle.create_draft(
            None, a, world.provider, [{"description": "Setup", "unit_price": "10.00"}]
        )  # fmt: skip
        for _ in range(CALLERS // 2)
    ]
    calls = []
    for d in drafts:
        calls.append(lambda c=api(world.operator), d=d: c.post(f"{API}/invoices/{d.id}/issue"))
        calls.append(lambda c=api(world.operator), d=d: c.delete(f"{API}/invoices/{d.id}"))
    results = race(calls)
    for index, d in enumerate(drafts):
        issue_resp, delete_resp = results[2 * index], results[2 * index + 1]
        stored = Invoice.get_or_none(Invoice.id == d.id)
        if stored is None:  # deleted first: the issue found nothing
            assert (delete_resp.status_code, issue_resp.status_code) == (204, 404), (
                delete_resp.get_data(as_text=True), issue_resp.get_data(as_text=True))  # fmt: skip
        else:  # issued first: the delete is refused
            assert stored.status == "issued"
            assert (issue_resp.status_code, delete_resp.status_code) == (200, 409), (
                issue_resp.get_data(as_text=True), delete_resp.get_data(as_text=True))  # fmt: skip
            assert "cannot be deleted" in delete_resp.get_json()["message"]
    issued = Invoice.select().where(Invoice.status == "issued").count()
    sequence = InvoiceSequence.get_or_none(kind="invoice")  # none if every delete came first
    assert (sequence.next_number if sequence else 1) == issued + 1  # gap-free
    assert_ledger_consistent(a)
