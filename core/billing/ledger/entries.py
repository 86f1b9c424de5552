"""The account ledger: every money event of an account is one append-only entry.

Rules (the exact ones; the panel's Billing page and the API show these figures):

* **Entries.** ``amount`` is signed integer minor units, *debit positive*: a positive entry
  means the account owes more. Kinds and their sign:

  ==================  =====================================================  ==========
  kind                posted when                                            amount
  ==================  =====================================================  ==========
  ``invoice``         an invoice is issued (same transaction as the issue)   + total
  ``prepaid_topup``   a prepaid top-up invoice is issued                     + total
  ``credit_note``     a credit note is issued                                credit note total (< 0)
  ``payment``         a payment is recorded                                  - amount
  ``refund``          money is paid back to the account                      + amount
  ``credit_applied``  prepaid credit pays (part of) an invoice               - amount
  ``reversal``        a mistake is corrected / an invoice is voided          - reversed amount
  ==================  =====================================================  ==========

  Rows are never updated or deleted (the ORM refuses: :class:`LedgerImmutable`); a wrong
  payment or refund is corrected by a reversing entry (:func:`reverse`), a wrong invoice by a
  credit note or by voiding it (which posts the reversal).
* **Balance** = ``SUM(amount)`` of the account's entries, per currency, computed on every
  read and never stored. Positive: the account owes that much. Negative: it has credit
  (it overpaid, or a credit note exceeded what was open).
* **Seller.** Each entry names the other party (``seller``): the invoice's issuer or the
  payment's payee. Money paid to one seller settles only that seller's invoices.
* **Allocation** (:class:`~core.billing.models.Allocation`) says which money settled what:
  a payment or a credit note (source) applied to an invoice or paid out by a refund
  (target). An invoice's *amount due* is ``total - allocations - prepaid credit applied``;
  it becomes ``paid`` (:func:`core.billing.invoicing.status.transition`) when that reaches 0.
  The money of a source that is not allocated is the account's *credit*. At any time:
  ``balance == sum(amount due of open invoices) - sum(unallocated credit)``.
* **Prepaid credit.** A top-up invoice (:class:`~core.billing.models.PrepaidTopup`) is an
  invoice for credit bought in advance: issued it is owed like any invoice (entry
  ``prepaid_topup``); once *paid* its total becomes prepaid credit. Prepaid credit is not
  part of the balance (the money was paid against the top-up invoice); it is
  ``sum(totals of paid top-ups, less their credit notes) - sum(prepaid credit applied)``,
  per account, seller and currency, and is derived from the ledger, never stored.
* **Drawing credit (the rule).** In the transaction that issues an invoice (a bill-run
  invoice or one issued by hand; never a top-up or a credit note), the invoice draws
  first from the account's prepaid credit with the same seller and currency (one
  ``credit_applied`` entry of ``-min(prepaid credit, amount due)``), then from unallocated
  payments and credit notes, oldest first (allocations, no entry: that money is already in
  the ledger). The invoice's total stays as computed; its amount due shows what was drawn,
  and it is ``paid`` at once when nothing is left to pay. When a top-up becomes paid, its
  credit likewise pays the invoices already open with that seller, oldest first.
* **Credit notes** first settle the invoice they credit (what is still due on it); the rest
  becomes credit.
* **Marking an invoice paid** by hand (``POST /invoices/<id>/pay``) records a payment of the
  amount still due ("marked paid"), so the balance keeps matching the ledger.
* **Voiding** an issued invoice posts a reversal of its entry (and of prepaid credit applied
  to it) and releases the payments allocated to it, which become credit again.
* **Taking prepaid credit back**: a credit note on a paid top-up turns its value into account
  credit (refundable) and removes it from the prepaid credit; it is refused when less
  prepaid credit is left than it would take back (credit notes mirror whole lines, so a
  partly used top-up cannot be credited).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import peewee as pw

from core import events
from core._fastpath import Prepared, insert_row
from core.billing.invoicing import status
from core.billing.invoicing.status import lock_account
from core.billing.models import (
    Allocation,
    Invoice,
    LedgerEntry,
    LedgerImmutable,
    Payment,
    PrepaidTopup,
)
from core.db import utcnow, write_transaction
from core.errors import Conflict

__all__ = [
    "LedgerImmutable",
    "balance",
    "balances",
    "credit_sources",
    "draw_credit",
    "on_mark_paid",
    "on_void",
    "open_amount",
    "open_invoices",
    "owes",
    "post",
    "post_issued",
    "prepaid_available",
    "reverse",
    "settlement",
]

CREDIT_KINDS = ("payment", "credit_note", "prepaid_topup")


def _id(value) -> int | None:
    return value if value is None or isinstance(value, int) else value.id


def post(account, seller, kind: str, amount: int, currency: str, occurred_on: date, *,
         invoice=None, payment=None, reverses=None, memo: str = "", actor=None,
         posting_key: str | None = None) -> LedgerEntry:  # fmt: skip
    """Append one entry (call inside the transaction of the event it records)."""
    values = {
        "account": _id(account),
        "seller": _id(seller),
        "kind": kind,
        "amount": amount,
        "currency": currency,
        "occurred_on": occurred_on,
        "invoice": _id(invoice),
        "payment": _id(payment),
        "reverses": _id(reverses),
        "posting_key": posting_key,
        "memo": memo[:500],
        "created_by": _id(actor),
    }
    return insert_row(LedgerEntry, values)  # every bill-run invoice posts one


# -- reading ---------------------------------------------------------------------------------


def balances(account, seller=None) -> dict[str, int]:
    """``{currency: SUM(amount)}`` of the account's entries (optionally with one seller)."""
    query = LedgerEntry.select(LedgerEntry.currency, pw.fn.SUM(LedgerEntry.amount)).where(
        LedgerEntry.account == _id(account)
    )
    if seller is not None:
        query = query.where(LedgerEntry.seller == _id(seller))
    rows = query.group_by(LedgerEntry.currency).order_by(LedgerEntry.currency).tuples()
    return {currency: int(total or 0) for currency, total in rows}


def balance(account, currency: str, seller=None) -> int:
    return balances(account, seller).get(currency, 0)


def balances_by_seller(account) -> dict[tuple[int, str], int]:
    rows = (
        LedgerEntry.select(LedgerEntry.seller, LedgerEntry.currency, pw.fn.SUM(LedgerEntry.amount))
        .where(LedgerEntry.account == _id(account))
        .group_by(LedgerEntry.seller, LedgerEntry.currency)
        .tuples()
    )
    return {(seller, currency): int(total or 0) for seller, currency, total in rows}


_is_topup = Prepared(
    lambda invoice: PrepaidTopup.select(pw.SQL("1")).where(PrepaidTopup.invoice == invoice).limit(1)
)


def is_topup(invoice) -> bool:
    return _is_topup.scalar(_id(invoice)) is not None


def _allocated_to(invoice_id: int) -> int:
    return int(
        Allocation.select(pw.fn.COALESCE(pw.fn.SUM(Allocation.amount), 0))
        .where(Allocation.invoice == invoice_id)
        .scalar()
        or 0
    )


def credit_applied_to(invoice) -> int:
    """Prepaid credit drawn by an invoice (a positive number)."""
    return -int(
        LedgerEntry.select(pw.fn.COALESCE(pw.fn.SUM(LedgerEntry.amount), 0))
        .where((LedgerEntry.invoice == _id(invoice)) & (LedgerEntry.kind == "credit_applied"))
        .scalar()
        or 0
    )


def open_amount(invoice: Invoice) -> int:
    """The amount due: total less allocated money and prepaid credit applied. 0 for drafts,
    void invoices and credit notes."""
    if invoice.kind != "invoice" or invoice.status in ("draft", "void"):
        return 0
    return invoice.total - _allocated_to(invoice.id) - credit_applied_to(invoice)


def owes(invoice: Invoice) -> bool:
    """Whether anything can be owed on ``invoice``: an issued, paid or void invoice (not a
    draft, not a credit note). Pages and the API show :func:`settlement` only for these."""
    return invoice.kind == "invoice" and invoice.status != "draft"


def settlement(invoice: Invoice) -> dict[str, int]:
    """What settled ``invoice`` so far, in minor units: ``paid`` (payments allocated to it, a
    "marked paid" one included), ``credit`` (credit notes allocated to it and prepaid credit
    drawn) and ``due`` (:func:`open_amount`); ``paid + credit + due == total``. All 0 for
    drafts and credit notes. A void invoice owes and holds nothing: voiding released its
    allocations and reversed the prepaid credit it drew (:func:`on_void`), so all three are 0."""
    if not owes(invoice) or invoice.status == "void" or not invoice.id:
        return {"paid": 0, "credit": 0, "due": 0}
    paid = credit = 0
    for payment_id, amount in (
        Allocation.select(Allocation.payment, Allocation.amount)
        .where(Allocation.invoice == invoice.id)
        .tuples()
    ):
        if payment_id is not None:
            paid += amount
        else:
            credit += amount
    credit += credit_applied_to(invoice)
    return {"paid": paid, "credit": credit, "due": invoice.total - paid - credit}


def amounts_due(invoices) -> dict[int, int]:
    """``{invoice id: amount due}`` for many invoices in three queries."""
    ids = [inv.id for inv in invoices]
    if not ids:
        return {}
    allocated = dict(
        Allocation.select(Allocation.invoice, pw.fn.SUM(Allocation.amount))
        .where(Allocation.invoice.in_(ids))
        .group_by(Allocation.invoice)
        .tuples()
    )
    applied = dict(
        LedgerEntry.select(LedgerEntry.invoice, pw.fn.SUM(LedgerEntry.amount))
        .where(LedgerEntry.invoice.in_(ids) & (LedgerEntry.kind == "credit_applied"))
        .group_by(LedgerEntry.invoice)
        .tuples()
    )
    out = {}
    for inv in invoices:
        if inv.kind != "invoice" or inv.status in ("draft", "void"):
            out[inv.id] = 0
        else:
            out[inv.id] = inv.total - int(allocated.get(inv.id) or 0) + int(applied.get(inv.id)
                                                                           or 0)  # fmt: skip
    return out


def open_invoices(account, seller=None, currency: str | None = None) -> list[tuple[Invoice, int]]:
    """Issued invoices with something still due, oldest first: ``[(invoice, amount due)]``."""
    query = Invoice.select().where(
        (Invoice.account == _id(account))
        & (Invoice.kind == "invoice")
        & (Invoice.status == "issued")
    )
    if seller is not None:
        query = query.where(Invoice.issuer == _id(seller))
    if currency is not None:
        query = query.where(Invoice.currency == currency)
    invoices = list(query.order_by(Invoice.issued_at, Invoice.id))
    due = amounts_due(invoices)
    return [(inv, due[inv.id]) for inv in invoices if due[inv.id] > 0]


def _reversed_entry_ids(entry_ids) -> set[int]:
    if not entry_ids:
        return set()
    return {
        row.reverses_id
        for row in LedgerEntry.select(LedgerEntry.reverses).where(
            LedgerEntry.reverses.in_(list(entry_ids))
        )
    }


def credit_sources(account, seller, currency: str) -> list[tuple[str, object, int]]:
    """Money not allocated yet, oldest first: ``[("payment" | "credit_note", row, left)]``."""
    payments = list(
        Payment.select()
        .where(
            (Payment.account == _id(account))
            & (Payment.payee == _id(seller))
            & (Payment.currency == currency)
            & (Payment.kind == "payment")
        )
        .order_by(Payment.received_on, Payment.id)
    )
    entries = {
        e.payment_id: e.id
        for e in LedgerEntry.select(LedgerEntry.id, LedgerEntry.payment).where(
            LedgerEntry.payment.in_([p.id for p in payments]) & (LedgerEntry.kind == "payment")
        )
    } if payments else {}  # fmt: skip
    reversed_ = _reversed_entry_ids(entries.values())
    used_p = dict(
        Allocation.select(Allocation.payment, pw.fn.SUM(Allocation.amount))
        .where(Allocation.payment.in_([p.id for p in payments]))
        .group_by(Allocation.payment)
        .tuples()
    ) if payments else {}  # fmt: skip
    notes = list(
        Invoice.select()
        .where(
            (Invoice.account == _id(account))
            & (Invoice.issuer == _id(seller))
            & (Invoice.currency == currency)
            & (Invoice.kind == "credit_note")
            & (Invoice.status.in_(("issued", "paid")))
        )
        .order_by(Invoice.issued_at, Invoice.id)
    )
    used_n = dict(
        Allocation.select(Allocation.credit_note, pw.fn.SUM(Allocation.amount))
        .where(Allocation.credit_note.in_([n.id for n in notes]))
        .group_by(Allocation.credit_note)
        .tuples()
    ) if notes else {}  # fmt: skip
    out = []
    for p in payments:
        if entries.get(p.id) in reversed_:
            continue
        left = p.amount - int(used_p.get(p.id) or 0)
        if left > 0:
            out.append((p.received_on, 0, p.id, "payment", p, left))
    for n in notes:
        left = -n.total - int(used_n.get(n.id) or 0)
        if left > 0:
            out.append((n.issued_at.date(), 1, n.id, "credit_note", n, left))
    out.sort(key=lambda row: row[:3])
    return [(kind, row, left) for _, _, _, kind, row, left in out]


def unallocated_credit(account, seller, currency: str) -> int:
    return sum(left for _, _, left in credit_sources(account, seller, currency))


def prepaid_available(account, seller, currency: str) -> int:
    """Prepaid credit left: paid top-ups (less their credit notes) minus credit applied."""
    topups = (
        Invoice.select(Invoice.id, Invoice.total)
        .join(PrepaidTopup, on=(PrepaidTopup.invoice == Invoice.id))
        .where(
            (Invoice.account == _id(account))
            & (Invoice.issuer == _id(seller))
            & (Invoice.currency == currency)
            & (Invoice.status == "paid")
        )
    )
    ids = [t.id for t in topups]
    funded = sum(t.total for t in topups)
    if ids:
        funded += int(
            Invoice.select(pw.fn.COALESCE(pw.fn.SUM(Invoice.total), 0))
            .where(
                Invoice.credit_for.in_(ids)
                & (Invoice.kind == "credit_note")
                & (Invoice.status != "void")
            )
            .scalar()
            or 0
        )
    applied = int(
        LedgerEntry.select(pw.fn.COALESCE(pw.fn.SUM(LedgerEntry.amount), 0))
        .join(Invoice, pw.JOIN.LEFT_OUTER, on=(LedgerEntry.invoice == Invoice.id))
        .where(
            (LedgerEntry.account == _id(account))
            & (LedgerEntry.seller == _id(seller))
            & (LedgerEntry.currency == currency)
            & (LedgerEntry.kind == "credit_applied")
            & (Invoice.id.is_null() | (Invoice.status != "void"))
        )
        .scalar()
        or 0
    )
    return funded + applied


def summary(account) -> list[dict]:
    """Per currency: balance, prepaid credit, unallocated credit, amount due on open
    invoices (what the My account tab and ``GET /accounts/<id>/balance`` show)."""
    by_seller = balances_by_seller(account)
    sellers = defaultdict(set)
    for seller, currency in by_seller:
        sellers[currency].add(seller)
    out = []
    for currency in sorted(sellers):
        prepaid = sum(prepaid_available(account, s, currency) for s in sellers[currency])
        credit = sum(unallocated_credit(account, s, currency) for s in sellers[currency])
        opened = open_invoices(account, currency=currency)
        due = sum(amount for _, amount in opened)
        out.append(
            {
                "currency": currency,
                "balance": sum(by_seller[(s, currency)] for s in sellers[currency]),
                "prepaid_credit": prepaid,
                "unallocated_credit": credit,
                "amount_due": due,
                "open_invoices": len(opened),
            }
        )
    return out


# -- allocating ------------------------------------------------------------------------------


def allocate(account_id: int, amount: int, *, payment=None, credit_note=None, invoice=None,
             refund=None) -> Allocation:  # fmt: skip
    return Allocation.create(
        account=account_id,
        payment=_id(payment),
        credit_note=_id(credit_note),
        invoice=_id(invoice),
        refund=_id(refund),
        amount=amount,
    )


def settle(invoice: Invoice, actor=None) -> None:
    """Mark the invoice paid when nothing is due on it any more."""
    if invoice.kind != "invoice" or invoice.status != "issued" or open_amount(invoice) > 0:
        return
    lock_account(invoice.account_id)  # its callers hold it: the status read here is current
    fresh = Invoice.get_by_id(invoice.id)
    if fresh.status == "issued":  # nothing is due on it: paid, with no payment to record
        before = status.transition(fresh.id, ("issued",), "paid", paid_at=utcnow())
        fresh = status.record_paid(before, actor)
        if is_topup(fresh):
            apply_prepaid(fresh.account_id, fresh.issuer_id, fresh.currency, actor)
    invoice.status, invoice.paid_at = fresh.status, fresh.paid_at


def apply_prepaid(account_id: int, seller_id: int, currency: str, actor=None) -> int:
    """A top-up was just paid: its credit pays what is due on the account's open invoices
    with that seller, oldest first (one ``credit_applied`` entry each). Returns the amount."""
    left = prepaid_available(account_id, seller_id, currency)
    used = 0
    if left <= 0:
        return 0
    topups = {
        t.invoice_id
        for t in PrepaidTopup.select(PrepaidTopup.invoice).where(PrepaidTopup.account == account_id)
    }
    for inv, due in open_invoices(account_id, seller_id, currency):
        if inv.id in topups:
            continue
        take = min(left, due)
        post(account_id, seller_id, "credit_applied", -take, currency, date.today(),
             invoice=inv, actor=actor, memo=f"prepaid credit applied to {inv.number}")  # fmt: skip
        left -= take
        used += take
        settle(inv, actor)
        if left == 0:
            break
    return used


_any_credit = Prepared(
    lambda account, seller, currency, invoice: (
        LedgerEntry.select(pw.SQL("1"))
        .where(
            (LedgerEntry.account == account)
            & (LedgerEntry.seller == seller)
            & (LedgerEntry.currency == currency)
            & LedgerEntry.kind.in_(CREDIT_KINDS)
            & ((LedgerEntry.invoice.is_null()) | (LedgerEntry.invoice != invoice))
        )
        .limit(1)
    )
)


def draw_credit(invoice: Invoice, actor=None) -> int:
    """Pay what is due on ``invoice`` from prepaid credit, then from unallocated payments and
    credit notes (oldest first); returns the amount drawn. See the module rule."""
    if invoice.total <= 0:
        return 0
    anything = _any_credit.scalar(
        invoice.account_id, invoice.issuer_id, invoice.currency, invoice.id
    )
    if anything is None:  # the common case in a bill run: nothing to draw from
        return 0
    due = open_amount(invoice)
    if due <= 0:
        return 0
    drawn = 0
    prepaid = prepaid_available(invoice.account_id, invoice.issuer_id, invoice.currency)
    if prepaid > 0:
        take = min(prepaid, due)
        post(invoice.account_id, invoice.issuer_id, "credit_applied", -take, invoice.currency,
             _issue_date(invoice), invoice=invoice, actor=actor,
             memo=f"prepaid credit applied to {invoice.number}")  # fmt: skip
        due -= take
        drawn += take
    if due > 0:
        for kind, source, left in credit_sources(invoice.account_id, invoice.issuer_id,
                                                 invoice.currency):  # fmt: skip
            take = min(left, due)
            allocate(invoice.account_id, take, invoice=invoice, **{kind: source})
            due -= take
            drawn += take
            if due == 0:
                break
    settle(invoice, actor)
    return drawn


# -- hooks called by the invoice lifecycle, inside its transactions -------------------------


def _issue_date(invoice: Invoice) -> date:
    return invoice.issued_at.date() if invoice.issued_at else date.today()


def post_issued(invoice: Invoice, actor=None) -> None:
    """Called in the transaction that issues ``invoice`` (by hand, as a credit note or in a
    bill run): post its entry, settle what it credits or draw the credit it may use. Exactly
    once per invoice (``posting_key`` is unique). The due date is set before, by the one rule
    (:func:`core.billing.invoicing.lifecycle.due_date_for`)."""
    lock_account(invoice.account_id)
    topup = invoice.kind == "invoice" and is_topup(invoice)
    kind = "credit_note" if invoice.kind == "credit_note" else "invoice"
    if topup:
        kind = "prepaid_topup"
    post(invoice.account_id, invoice.issuer_id, kind, invoice.total, invoice.currency,
         _issue_date(invoice), invoice=invoice, actor=actor, posting_key=f"doc:{invoice.id}",
         memo=f"{kind.replace('_', ' ')} {invoice.number}")  # fmt: skip
    if invoice.kind == "credit_note":
        _apply_credit_note(invoice, actor)
    elif not topup:
        draw_credit(invoice, actor)


def _apply_credit_note(note: Invoice, actor=None) -> None:
    target = Invoice.get_or_none(Invoice.id == note.credit_for_id) if note.credit_for_id else None
    if target is None:
        return
    value = -note.total
    if target.status == "paid" and is_topup(target):
        left = prepaid_available(note.account_id, note.issuer_id, note.currency)
        if value > left:
            from core.billing.money import format_money

            raise Conflict(
                f"{target.number}: only {format_money(max(left, 0), note.currency)} of its "
                "prepaid credit is left unused; a credit note cannot take back more"
            )
    due = open_amount(target)
    if due > 0 and value > 0:
        allocate(note.account_id, min(due, value), credit_note=note, invoice=target)
        settle(target, actor)


def _entry_of(invoice: Invoice) -> LedgerEntry | None:
    return LedgerEntry.get_or_none(LedgerEntry.posting_key == f"doc:{invoice.id}")


def on_void(invoice: Invoice, actor=None) -> None:
    """Called in the transaction that voids ``invoice``: reverse its entry and the prepaid
    credit it drew, release the money allocated to it (or from it, for a credit note)."""
    if invoice.status != "issued":  # as it was before the void (a draft has no entry)
        return
    lock_account(invoice.account_id)  # held already when called by invoices.void
    entry = _entry_of(invoice)
    if invoice.kind == "credit_note":
        used = list(Allocation.select().where(Allocation.credit_note == invoice.id))
        for alloc in used:
            if alloc.refund_id is not None:
                raise Conflict(f"{invoice.number}: its credit was refunded; it cannot be voided")
            target = Invoice.get_by_id(alloc.invoice_id)
            if target.status == "paid":
                raise Conflict(
                    f"{invoice.number} settled {target.number}, which is paid; a paid invoice "
                    "does not reopen, so the credit note cannot be voided"
                )
        Allocation.delete().where(Allocation.credit_note == invoice.id).execute()
    else:
        Allocation.delete().where(Allocation.invoice == invoice.id).execute()
        for applied in LedgerEntry.select().where(
            (LedgerEntry.invoice == invoice.id) & (LedgerEntry.kind == "credit_applied")
        ):
            if not _reversed_entry_ids([applied.id]):
                _post_reversal(applied, actor, f"{invoice.number} voided: prepaid credit returned")
    if entry is not None and not _reversed_entry_ids([entry.id]):
        _post_reversal(entry, actor, f"{invoice.number} voided")


def on_mark_paid(invoice: Invoice, actor=None) -> None:
    """Called in the transaction that marks ``invoice`` paid: what is still due is recorded
    as a payment ("marked paid"), so the balance keeps equalling the ledger."""
    lock_account(invoice.account_id)  # held already when called by invoices.mark_paid
    due = open_amount(invoice)
    if due <= 0:
        return
    payment = create_payment(
        invoice.account_id, invoice.issuer_id, due, invoice.currency, date.today(),
        method="other", reference=f"marked paid: {invoice.number}", actor=actor,
        memo=f"{invoice.number} marked paid",
    )  # fmt: skip
    allocate(invoice.account_id, due, payment=payment, invoice=invoice)
    events.emit("payment_recorded", payment, actor)  # the receipt (core.mail): recorded in
    # this transaction, sent after its commit


# -- payments, refunds, reversals (the services in core.billing.ledger.payments call these) --------


def create_payment(account_id: int, payee_id: int, amount: int, currency: str, on: date, *,
                   kind: str = "payment", method: str = "bank_transfer", reference: str = "",
                   memo: str = "", actor=None) -> Payment:  # fmt: skip
    """Write a payment (or refund) and its ledger entry; allocation is the caller's."""
    payment = Payment.create(
        account=account_id, payee=payee_id, kind=kind, amount=amount, currency=currency,
        received_on=on, method=method, reference=reference, memo=memo, created_by=_id(actor),
    )  # fmt: skip
    post(account_id, payee_id, kind, -amount if kind == "payment" else amount, currency, on,
         payment=payment, actor=actor, memo=memo)  # fmt: skip
    return payment


def entry_of_payment(payment: Payment) -> LedgerEntry:
    return LedgerEntry.get((LedgerEntry.payment == payment.id) & (LedgerEntry.kind == payment.kind))


def is_reversed(entry: LedgerEntry) -> bool:
    return bool(_reversed_entry_ids([entry.id]))


def _post_reversal(entry: LedgerEntry, actor, memo: str, on: date | None = None) -> LedgerEntry:
    return post(entry.account_id, entry.seller_id, "reversal", -entry.amount, entry.currency,
                on or date.today(), invoice=entry.invoice_id, payment=entry.payment_id,
                reverses=entry, actor=actor, memo=memo)  # fmt: skip


def reverse(entry: LedgerEntry, actor=None, memo: str = "", on: date | None = None) -> LedgerEntry:
    """Correct a mistaken payment or refund with a reversing entry (the original stays).

    A reversed payment's allocations are released (its invoices are due again); a payment
    that settled an invoice now ``paid`` cannot be reversed (a paid invoice does not reopen:
    refund or credit instead). A reversed refund's money is credit again. Invoices and credit
    notes are corrected with credit notes or by voiding them, not here.
    """
    if entry.kind not in ("payment", "refund"):
        raise Conflict(
            f"a {entry.kind.replace('_', ' ')} entry is not reversed by hand: "
            + ("void the invoice or issue a credit note"
               if entry.kind in ("invoice", "prepaid_topup", "credit_note")
               else "it is reversed with the invoice it belongs to")
        )  # fmt: skip
    lock_account(entry.account_id)
    if is_reversed(entry):
        raise Conflict(f"ledger entry {entry.id} is already reversed")
    payment = Payment.get_by_id(entry.payment_id)
    if entry.kind == "payment":
        used = list(Allocation.select().where(Allocation.payment == payment.id))
        for alloc in used:
            if alloc.refund_id is not None:
                raise Conflict(
                    f"payment {payment.id} was partly refunded; reverse the refund first"
                )
            target = Invoice.get_by_id(alloc.invoice_id)
            if target.status == "paid":
                raise Conflict(
                    f"payment {payment.id} settled {target.number}, which is paid; a paid "
                    "invoice does not reopen: record a refund or issue a credit note instead"
                )
        Allocation.delete().where(Allocation.payment == payment.id).execute()
    else:
        Allocation.delete().where(Allocation.refund == payment.id).execute()
    return _post_reversal(entry, actor, memo or f"reversal of {entry.kind} {payment.id}", on)


# -- documents issued before the ledger existed ----------------------------------------------


def backfill(actor=None) -> int:
    """Post the entries of invoices issued before the ledger existed (core migration 9, run
    once at the first start of the release; idempotent: an invoice with its entry is skipped). Each issued document gets its
    entry on its issue date; a credit note settles what it credits; a paid invoice gets a
    payment ("paid before the ledger") on its payment date for what was due; a void one a
    reversal on its void date. Returns the number of documents posted."""
    posted = 0
    query = Invoice.select().where(
        (Invoice.status != "draft")
        & Invoice.id.not_in(
            LedgerEntry.select(LedgerEntry.invoice).where(
                LedgerEntry.posting_key.startswith("doc:") & LedgerEntry.invoice.is_null(False)
            )
        )
    )
    for invoice in query.order_by(Invoice.issued_at, Invoice.id):
        with write_transaction():
            kind = "credit_note" if invoice.kind == "credit_note" else "invoice"
            if kind == "invoice" and is_topup(invoice):
                kind = "prepaid_topup"
            entry = post(invoice.account_id, invoice.issuer_id, kind, invoice.total,
                         invoice.currency, _issue_date(invoice), invoice=invoice, actor=actor,
                         posting_key=f"doc:{invoice.id}",
                         memo=f"{kind.replace('_', ' ')} {invoice.number}")  # fmt: skip
            if invoice.kind == "credit_note" and invoice.status != "void":
                _apply_credit_note(invoice, actor)
            if invoice.status == "paid":
                due = open_amount(invoice)
                if due > 0:
                    on = invoice.paid_at.date() if invoice.paid_at else _issue_date(invoice)
                    payment = create_payment(
                        invoice.account_id, invoice.issuer_id, due, invoice.currency, on,
                        method="other", reference=f"paid before the ledger: {invoice.number}",
                        actor=actor,
                    )  # fmt: skip
                    allocate(invoice.account_id, due, payment=payment, invoice=invoice)
            elif invoice.status == "void":
                on = invoice.voided_at.date() if invoice.voided_at else None
                _post_reversal(entry, actor, f"{invoice.number} voided", on)
        posted += 1
    return posted
