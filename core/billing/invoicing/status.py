"""An invoice's status changes and the locks that guard them: the one primitive the invoice
lifecycle (:mod:`core.billing.invoicing.lifecycle`) and the ledger
(:mod:`core.billing.ledger.entries`, which marks a settled invoice paid) both use, so neither
needs the other for it. It imports neither.

* :func:`lock_account` serialises one account's money operations (payments, refunds,
  reversals, prepaid credit drawn, status changes of its invoices);
* :func:`lock_invoice` locks an invoice row (after its account: the one lock order);
* :func:`transition` changes the status, guarded: ``UPDATE ... WHERE status = <what was
  read>``, exactly one row or a 409 (:func:`refusal`) saying what the invoice already is;
* :func:`record_paid` audits a change to ``paid``; :func:`snapshot` is what the audit keeps.
"""

from __future__ import annotations

from core import audit
from core._fastpath import Prepared
from core.billing.models import Invoice
from core.db import is_postgres, lock_row
from core.errors import Conflict, NotFound
from core.models import Account


def lock_account(account_id: int) -> None:
    """Serialise money operations of one account. On PostgreSQL a row lock on the account
    (held until the transaction ends); SQLite's write transactions (BEGIN IMMEDIATE, see
    :func:`core.db.write_transaction`) are serialised already."""
    if is_postgres():
        _lock_account.execute(account_id).fetchall()


# NO KEY UPDATE: it serialises the account's money operations like FOR UPDATE, but does not
# conflict with the KEY SHARE lock every insert referencing the account takes (an invoice, a
# credit note), so two issuers cannot deadlock on it
_lock_account = Prepared(
    lambda account: (
        Account.select(Account.id).where(Account.id == account).for_update("FOR NO KEY UPDATE")
    )
)


def snapshot(invoice: Invoice) -> dict:
    return {
        "status": invoice.status,
        "number": invoice.number,
        "kind": invoice.kind,
        "account_id": invoice.account_id,
        "issuer_id": invoice.issuer_id,
        "currency": invoice.currency,
        "total": invoice.total,
    }


def lock_invoice(invoice_id: int) -> Invoice:
    """The invoice as stored now, locked until the transaction ends (call inside a write
    transaction): first its account's money operations (:func:`lock_account`), then
    its row (:func:`core.db.lock_row`). Whoever holds it may check the status and change it;
    a concurrent caller waits and then reads what the first committed."""
    account_id = Invoice.select(Invoice.account).where(Invoice.id == invoice_id).scalar()
    if account_id is None:
        raise NotFound(f"invoice {invoice_id} not found")
    lock_account(account_id)  # the account first: the order every money operation takes
    stored = lock_row(Invoice, invoice_id)
    if stored is None:  # deleted (a draft) while we waited
        raise NotFound(f"invoice {invoice_id} not found")
    return stored


_REFUSALS = {
    # (status now, status wanted): why not
    ("issued", "issued"): "is already issued",
    ("paid", "issued"): "is already issued and paid",
    ("void", "issued"): "is void: it cannot be issued",
    ("paid", "paid"): "is already paid",
    ("void", "paid"): "is void: only an issued invoice can be marked paid",
    ("draft", "paid"): "is a draft: only an issued invoice can be marked paid",
    ("void", "void"): "is already void",
    ("paid", "void"): "is paid: a paid invoice is not voided (issue a credit note instead)",
}


def refusal(stored: Invoice, to: str) -> Conflict:
    """The 409 for moving ``stored`` (as it is now) to ``to``."""
    name = stored.number or stored.id
    why = _REFUSALS.get((stored.status, to), f"is {stored.status}: it cannot become {to}")
    return Conflict(f"invoice {name} {why}", {"status": [stored.status]})


def transition(invoice_id: int, allowed: tuple[str, ...], to: str, **values) -> Invoice:
    """Move the invoice to status ``to`` if it is in one of ``allowed`` now, guarded: inside
    the caller's write transaction, lock it (:func:`lock_invoice`), check, then ``UPDATE ...
    SET status = to WHERE id = ? AND status = <what was read>`` (with ``values``, e.g.
    ``paid_at``), which must change exactly one row. Returns the invoice *as it was before*
    (the ledger hooks look at what it was); raises 409 (:func:`refusal`) otherwise."""
    stored = lock_invoice(invoice_id)
    if stored.status not in allowed:
        raise refusal(stored, to)
    changed = (
        Invoice.update(status=to, **values)
        .where((Invoice.id == invoice_id) & (Invoice.status == stored.status))
        .execute()
    )
    if changed != 1:  # pragma: no cover - the row lock makes this unreachable
        raise refusal(Invoice.get_by_id(invoice_id), to)
    return stored


def record_paid(before: Invoice, actor=None) -> Invoice:
    """Audit the change of ``before`` (the invoice as :func:`transition` read it) to paid, in
    the caller's transaction; returns the invoice as stored now."""
    after = Invoice.get_by_id(before.id)
    audit.record(actor, "invoice.pay", after, account=after.account_id,
                 before=snapshot(before), after=snapshot(after))  # fmt: skip
    return after
