"""The account ledger: the balance is the sum of the entries and matches invoices minus
payments; entries are append-only and corrected by reversals; payments are allocated oldest
first (or as chosen), partial payments leave the invoice open, overpayment becomes credit;
voids and credit notes; prepaid top-ups drawn by the next bill-run invoice; payment terms."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core.billing.invoicing import lifecycle
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments
from core.billing.models import (
    Allocation,
    Invoice,
    LedgerEntry,
    LedgerImmutable,
    Payment,
)
from core.billing.runs import engine
from core.errors import Conflict, Forbidden, ValidationFailed
from tests.billing_support import setup_catalog, subscribe

app = pytest.fixture(lambda make_app: make_app(plugins=["invoice_pdf"]), name="app")

TODAY = date.today()


def issue_invoice(world, account, *amounts, issuer=None):
    """An invoice of ``issuer`` (the provider) with one line per amount (major units)."""
    lines = [{"description": f"Service {i}", "quantity": "1", "unit_price": a}
             for i, a in enumerate(amounts, start=1)]  # fmt: skip
    draft = lifecycle.create_draft(None, account, issuer or world.provider, lines)
    return lifecycle.issue(draft)


def pay(world, account, amount, **extra):
    return payments.record_payment(world.operator, account, {"amount": amount, **extra})


def fresh(invoice):
    return Invoice.get_by_id(invoice.id)


def entry_sum(account, currency="EUR"):
    return sum(
        e.amount
        for e in LedgerEntry.select().where(
            (LedgerEntry.account == account.id) & (LedgerEntry.currency == currency)
        )
    )


def invariant(account, seller, currency="EUR"):
    """balance == SUM(entries) == amount due on open invoices - unallocated credit."""
    balance = ledger.balance(account, currency)
    due = sum(amount for _, amount in ledger.open_invoices(account, seller, currency))
    credit = ledger.unallocated_credit(account, seller, currency)
    assert balance == entry_sum(account, currency) == due - credit
    return balance


def test_balance_is_the_sum_of_entries_and_matches_invoices_minus_payments(world):
    a = world.customer_a
    inv1 = issue_invoice(world, a, "100.00")
    inv2 = issue_invoice(world, a, "50.00", "0.25")
    assert ledger.balance(a, "EUR") == 15025
    pay(world, a, "60.00")
    note = lifecycle.credit_note(fresh(inv2), positions=[2])  # -0.25
    kinds = [e.kind for e in LedgerEntry.select().where(LedgerEntry.account == a.id)
             .order_by(LedgerEntry.id)]  # fmt: skip
    assert kinds == ["invoice", "invoice", "payment", "credit_note"]
    issued = sum(i.total for i in (inv1, inv2, note))
    paid = sum(p.amount for p in Payment.select().where(Payment.account == a.id))
    assert ledger.balance(a, "EUR") == issued - paid == 15000 - 6000 == 9000
    assert invariant(a, world.provider) == 9000
    # one entry per issued document, posted in the issuing transaction, exactly once
    assert LedgerEntry.select().where(LedgerEntry.invoice == inv1.id).count() == 1
    assert ledger.balances(world.customer_b) == {}


def test_ledger_entries_cannot_be_edited_or_deleted(world):
    issue_invoice(world, world.customer_a, "10.00")
    entry = LedgerEntry.get(LedgerEntry.account == world.customer_a.id)
    entry.amount = 1
    with pytest.raises(LedgerImmutable):
        entry.save()
    with pytest.raises(LedgerImmutable):
        entry.delete_instance()
    with pytest.raises(LedgerImmutable):
        LedgerEntry.update(amount=1).where(LedgerEntry.id == entry.id).execute()
    with pytest.raises(LedgerImmutable):
        LedgerEntry.delete().where(LedgerEntry.id == entry.id).execute()
    payment = pay(world, world.customer_a, "1.00")
    payment.amount = 2
    with pytest.raises(LedgerImmutable):
        payment.save()
    with pytest.raises(LedgerImmutable):
        payment.delete_instance()
    assert LedgerEntry.get_by_id(entry.id).amount == 1000


def test_a_reversal_corrects_a_mistaken_payment(world):
    a = world.customer_a
    inv = issue_invoice(world, a, "100.00")
    wrong = pay(world, a, "40.00")  # should have been 400.00 ... or another customer
    assert ledger.open_amount(fresh(inv)) == 6000 and ledger.balance(a, "EUR") == 6000
    entry = ledger.entry_of_payment(wrong)
    reversal = payments.reverse_entry(world.operator, a, entry.id, "keyed the wrong amount")
    assert (reversal.kind, reversal.amount, reversal.reverses_id) == ("reversal", 4000, entry.id)
    assert ledger.balance(a, "EUR") == 10000  # back to what the invoice says
    assert ledger.open_amount(fresh(inv)) == 10000  # the allocation was released
    assert LedgerEntry.get_by_id(entry.id).amount == -4000  # the original stays
    with pytest.raises(Conflict, match="already reversed"):
        payments.reverse_entry(world.operator, a, entry.id)
    invoice_entry = LedgerEntry.get(LedgerEntry.invoice == inv.id)
    with pytest.raises(Conflict, match="credit note"):
        payments.reverse_entry(world.operator, a, invoice_entry.id)
    pay(world, a, "100.00")
    assert fresh(inv).status == "paid"
    assert invariant(a, world.provider) == 0


def test_a_payment_that_settled_a_paid_invoice_is_not_reversed(world):
    a = world.customer_a
    issue_invoice(world, a, "10.00")
    payment = pay(world, a, "10.00")
    with pytest.raises(Conflict, match="does not reopen"):
        payments.reverse_entry(world.operator, a, ledger.entry_of_payment(payment).id)


def test_oldest_first_partial_payment_and_paid_invoices(world):
    a = world.customer_a
    first = issue_invoice(world, a, "30.00")
    second = issue_invoice(world, a, "50.00")
    third = issue_invoice(world, a, "20.00")
    payment = pay(world, a, "60.00")
    assert fresh(first).status == "paid"
    assert fresh(second).status == "issued"  # partial: 30.00 of 50.00
    assert [ledger.open_amount(fresh(i)) for i in (first, second, third)] == [0, 2000, 2000]
    assert [(x["number"], x["amount"]) for x in payments.allocations_of(payment)] == [
        (first.number, 3000),
        (second.number, 3000),
    ]
    assert ledger.balance(a, "EUR") == 4000
    pay(world, a, "40.00")
    assert [fresh(i).status for i in (first, second, third)] == ["paid"] * 3
    assert invariant(a, world.provider) == 0


def test_explicit_allocation(world):
    a = world.customer_a
    old = issue_invoice(world, a, "30.00")
    new = issue_invoice(world, a, "50.00")
    payment = pay(world, a, "70.00", invoice_ids=[new.id])
    assert fresh(new).status == "paid" and fresh(old).status == "issued"
    assert payments.unallocated_of(payment) == 2000  # not pushed onto the old invoice
    assert ledger.open_amount(fresh(old)) == 3000
    assert invariant(a, world.provider) == 1000
    with pytest.raises(ValidationFailed) as err:
        pay(world, a, "5.00", invoice_ids=[new.id, 999999])
    assert "nothing is due" in str(err.value.errors["invoice_ids"])
    with pytest.raises(ValidationFailed):
        pay(world, a, "5.00", invoice_ids=[issue_invoice(world, world.customer_b, "1.00").id])


def test_overpayment_becomes_credit_which_pays_the_next_invoice(world):
    a = world.customer_a
    inv = issue_invoice(world, a, "80.00")
    payment = pay(world, a, "100.00")
    assert fresh(inv).status == "paid"
    assert ledger.balance(a, "EUR") == -2000  # credit
    assert ledger.unallocated_credit(a, world.provider, "EUR") == 2000
    nxt = issue_invoice(world, a, "15.00")
    assert fresh(nxt).status == "paid"  # drawn from the credit at issue
    assert payments.unallocated_of(payment) == 500
    assert ledger.balance(a, "EUR") == -500
    later = issue_invoice(world, a, "10.00")
    assert fresh(later).status == "issued" and ledger.open_amount(fresh(later)) == 500
    assert invariant(a, world.provider) == 500
    # the rest of a credit can be refunded, not more
    issue_invoice(world, world.customer_b, "1.00")
    pay(world, world.customer_b, "3.00")
    with pytest.raises(ValidationFailed, match="only 2.00 EUR"):
        payments.record_refund(world.operator, world.customer_b, {"amount": "2.50"})
    refund = payments.record_refund(world.operator, world.customer_b, {"amount": "2.00"})
    assert refund.kind == "refund" and ledger.balance(world.customer_b, "EUR") == 0


def test_marking_paid_by_hand_records_the_payment(world):
    a = world.customer_a
    inv = issue_invoice(world, a, "12.34")
    pay(world, a, "2.34")
    lifecycle.mark_paid(fresh(inv), world.operator)
    assert ledger.balance(a, "EUR") == 0
    marked = Payment.select().where(Payment.account == a.id).order_by(Payment.id.desc()).get()
    assert (marked.amount, marked.reference) == (1000, f"marked paid: {inv.number}")


def test_void_reverses_and_releases_the_payment(world):
    a = world.customer_a
    inv = issue_invoice(world, a, "40.00")
    payment = pay(world, a, "10.00")
    lifecycle.void(fresh(inv), world.operator)
    assert ledger.balance(a, "EUR") == -1000  # the 10.00 is credit again
    assert payments.unallocated_of(payment) == 1000
    assert [e.kind for e in LedgerEntry.select().where(LedgerEntry.invoice == inv.id)
            .order_by(LedgerEntry.id)] == ["invoice", "reversal"]  # fmt: skip
    assert not Allocation.select().where(Allocation.invoice == inv.id).exists()


def test_credit_note_settles_what_it_credits_and_the_rest_is_credit(world):
    a = world.customer_a
    inv = issue_invoice(world, a, "30.00", "20.00")
    pay(world, a, "40.00")
    lifecycle.credit_note(fresh(inv), positions=[2])  # 20.00 credited, 10.00 was due
    assert fresh(inv).status == "paid"
    assert ledger.balance(a, "EUR") == -1000
    assert invariant(a, world.provider) == -1000


def test_payment_rules(world):
    a = world.customer_a
    with pytest.raises(ValidationFailed) as err:
        pay(world, a, "0")
    assert "amount" in err.value.errors
    with pytest.raises(ValidationFailed, match="more decimals"):
        pay(world, a, "1.005")
    with pytest.raises(ValidationFailed, match="float"):
        pay(world, a, 1.5)
    with pytest.raises(ValidationFailed, match="future"):
        pay(world, a, "1.00", date=(TODAY + timedelta(days=1)).isoformat())
    with pytest.raises(ValidationFailed) as err:
        pay(world, a, "1.00", currency="XXX")
    assert "currency" in err.value.errors
    with pytest.raises(ValidationFailed) as err:
        pay(world, a, "1.00", method="bitcoin")
    assert "method" in err.value.errors
    # a customer does not record money its seller receives
    with pytest.raises(Forbidden, match="recorded by Provider"):
        payments.record_payment(world.user_a, a, {"amount": "1.00"})
    assert not Payment.select().exists()


def test_payment_terms_set_the_due_date_of_new_invoices(world):
    a = world.customer_a
    payments.update_settings(world.operator, a, {"payment_terms_days": "30",
                                                 "invoice_email": "ap@a.example"})  # fmt: skip
    inv = issue_invoice(world, a, "10.00")
    assert fresh(inv).due_date == TODAY + timedelta(days=30)
    _, plan = setup_catalog(world.provider)
    subscribe(a, plan, start="2026-01-01")
    engine.run(date(2026, 2, 1))
    billed = Invoice.get((Invoice.account == a.id) & Invoice.run_period.is_null(False))
    # from the day it is issued (a late run for February's period), never already overdue
    assert billed.due_date == billed.issued_at.date() + timedelta(days=30)
    assert billed.due_date > TODAY
    with pytest.raises(ValidationFailed) as err:
        payments.update_settings(world.operator, a, {"payment_terms_days": "-1",
                                                     "contact_email": "nope"})  # fmt: skip
    assert set(err.value.errors) == {"payment_terms_days", "contact_email"}


def test_prepaid_topup_paid_then_the_next_bill_run_invoice_draws_the_credit(world):
    a = world.customer_a
    topup = payments.create_topup(world.operator, a, {"amount": "100.00"})
    assert topup.status == "issued" and topup.total == 10000 and topup.tax == 0
    assert ledger.prepaid_available(a, world.provider, "EUR") == 0  # not paid yet
    assert ledger.balance(a, "EUR") == 10000
    pay(world, a, "100.00")
    assert fresh(topup).status == "paid"
    assert ledger.prepaid_available(a, world.provider, "EUR") == 10000
    assert ledger.balance(a, "EUR") == 0
    _, plan = setup_catalog(world.provider, price="30.00")
    subscribe(a, plan, start="2026-01-01")
    engine.run(date(2026, 2, 1))
    billed = Invoice.get((Invoice.account == a.id) & Invoice.run_period.is_null(False))
    assert billed.total == 3000  # the total stays as computed
    assert billed.status == "paid"  # ... and nothing is due
    assert ledger.credit_applied_to(billed) == 3000 and ledger.open_amount(billed) == 0
    applied = LedgerEntry.get((LedgerEntry.invoice == billed.id)
                              & (LedgerEntry.kind == "credit_applied"))  # fmt: skip
    assert applied.amount == -3000
    assert ledger.prepaid_available(a, world.provider, "EUR") == 7000
    assert ledger.balance(a, "EUR") == 0
    engine.run(date(2026, 5, 1))  # February, March, April: 90.00 > 70.00 left
    later = list(Invoice.select().where((Invoice.account == a.id)
                                        & Invoice.run_period.is_null(False))
                 .order_by(Invoice.run_period))  # fmt: skip
    assert [i.status for i in later] == ["paid", "paid", "paid", "issued"]
    assert ledger.open_amount(later[-1]) == 2000
    assert ledger.prepaid_available(a, world.provider, "EUR") == 0
    assert ledger.balance(a, "EUR") == 2000
    assert invariant(a, world.provider) == 2000
    # voiding the last invoice returns its 10.00 of prepaid credit
    lifecycle.void(later[-1], world.operator)
    assert ledger.prepaid_available(a, world.provider, "EUR") == 1000


def test_only_the_seller_issues_a_topup(world):
    with pytest.raises(Forbidden):
        payments.create_topup(world.user_a, world.customer_a, {"amount": "10.00"})


def test_a_topup_paid_late_pays_the_invoices_already_open(world):
    a = world.customer_a
    topup = payments.create_topup(world.operator, a, {"amount": "25.00"})
    first = issue_invoice(world, a, "10.00")  # open: the top-up is not paid yet
    second = issue_invoice(world, a, "20.00")
    payment = pay(world, a, "30.00")  # oldest first: the top-up (25.00) ...
    assert fresh(topup).status == "paid"
    # ... whose credit at once pays the open invoices oldest first: 10.00 and 15.00 of 20.00;
    # the payment's last 5.00 then pays the rest of the second invoice
    assert ledger.credit_applied_to(fresh(first)) == 1000
    assert ledger.credit_applied_to(fresh(second)) == 1500
    assert fresh(first).status == fresh(second).status == "paid"
    assert ledger.prepaid_available(a, world.provider, "EUR") == 0
    assert payments.unallocated_of(payment) == 0
    assert ledger.balance(a, "EUR") == 0
    assert invariant(a, world.provider) == 0
