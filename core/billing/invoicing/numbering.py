"""Invoice numbers: per issuing account and document kind, gap-free.

The sequence row is incremented with an ``UPDATE ... SET next_number = next_number + 1``
inside the issuing transaction, so concurrent issuers queue on that row and a rolled-back
issue gives its number back. Invoices are ``<prefix><000001>``, credit notes
``<prefix>CN<000001>`` where the prefix is the issuer's ``invoice_prefix``.
"""

from __future__ import annotations

from core._fastpath import Prepared
from core.billing.models import InvoiceSequence
from core.db import database
from core.models import Account

NUMBER_DIGITS = 6


def ensure_sequence(issuer_id: int, kind: str) -> None:
    """Create the number sequence of ``issuer_id`` for ``kind`` if it has none, in its own
    transaction, *before* the issuing one: two writers issuing an issuer's first invoices at
    once then queue on the row instead of both creating it."""
    if InvoiceSequence.get_or_none(issuer=issuer_id, kind=kind) is None:
        try:
            with database.atomic():
                InvoiceSequence.create(issuer=issuer_id, kind=kind, next_number=1)
        except Exception:  # noqa: BLE001 - a concurrent creator won; the row exists now
            if InvoiceSequence.get_or_none(issuer=issuer_id, kind=kind) is None:
                raise


_take_number = Prepared(
    lambda issuer, kind: InvoiceSequence.update(next_number=InvoiceSequence.next_number + 1).where(
        (InvoiceSequence.issuer == issuer) & (InvoiceSequence.kind == kind)
    )
)
_taken_number = Prepared(
    lambda issuer, kind: InvoiceSequence.select(InvoiceSequence.next_number - 1).where(
        (InvoiceSequence.issuer == issuer) & (InvoiceSequence.kind == kind)
    )
)


def next_number(issuer: Account, kind: str) -> str:
    """Take the next number of ``issuer`` for ``kind``; call inside the issuing transaction."""
    if not _take_number.rowcount(issuer.id, kind):
        InvoiceSequence.create(issuer=issuer.id, kind=kind, next_number=2)
        taken = 1
    else:
        taken = _taken_number.scalar(issuer.id, kind)
    infix = "CN" if kind == "credit_note" else ""
    return f"{issuer.invoice_prefix}{infix}{taken:0{NUMBER_DIGITS}d}"
