"""What a bill run did: :class:`RunSummary`, the one way its summary is built, whoever bills
(an in-process run, a resumed one, the workers of a queued one) and whoever shows it (the
CLI, the API, the panel, ``BillRun.summary``).

As a dict (:meth:`RunSummary.as_dict`, the JSON the CLI prints and the API answers):
``as_of``, ``bill_run_id``, ``queued`` (queued runs only), ``accounts``, ``invoices_created``,
``invoices`` (each: id, number, account_id, account, issuer, period, currency, total_minor,
total; left out of what a run stores), ``invoices_skipped`` (account_id, account, issuer,
period, reason), ``failures`` (error, and account_id, account, period when one account
failed), ``render_errors``, ``totals`` (currency -> minor, formatted) and ``resumed``
(resumed runs only).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

import peewee as pw

from core.billing.models import Invoice
from core.billing.money import format_money
from core.models import Account


def invoice_row(invoice: Invoice, account: str, issuer: str) -> dict:
    """One invoice of a run as the summary lists it (``account``, ``issuer``: their names)."""
    return {
        "id": invoice.id,
        "number": invoice.number,
        "account_id": invoice.account_id,
        "account": account,
        "issuer": issuer,
        "period": f"{invoice.period_start}/{invoice.period_end}",
        "currency": invoice.currency,
        "total_minor": invoice.total,
        "total": format_money(invoice.total, invoice.currency),
    }


def invoice_rows(invoices: list[Invoice]) -> list[dict]:
    """:func:`invoice_row` of each invoice, the account and issuer names read in a query per
    500 accounts (not one per account)."""
    ids = sorted({i for inv in invoices for i in (inv.account_id, inv.issuer_id)})
    names = {}
    for chunk in pw.chunked(ids, 500):
        query = Account.select(Account.id, Account.name).where(Account.id.in_(chunk))
        names.update(query.tuples())
    return [invoice_row(inv, names[inv.account_id], names[inv.issuer_id]) for inv in invoices]


def _period(period) -> str | None:
    return f"{period[0]}/{period[1]}" if period else None


def money_totals(minor_by_currency: dict[str, int]) -> dict[str, dict]:
    return {
        code: {"minor": minor, "formatted": format_money(minor, code)}
        for code, minor in sorted(minor_by_currency.items())
    }


@dataclass
class RunSummary:
    """What a run did so far: the billing steps add to it (:meth:`invoiced`, :meth:`skipped`,
    :meth:`failed`), :meth:`finish` totals it, :meth:`as_dict` shows and stores it. A queued
    run's workers keep no list of invoices: its summary is built from the database with
    ``invoices_created`` and ``totals`` given."""

    as_of: date
    accounts: int
    bill_run_id: int | None = None
    invoices: list[dict] = field(default_factory=list)
    invoices_skipped: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    render_errors: list[str] = field(default_factory=list)
    totals: dict[str, dict] = field(default_factory=dict)
    invoices_created: int = 0
    queued: bool = False
    resumed: bool = False

    def invoiced(self, invoice: Invoice, account: Account, issuer: Account) -> None:
        self.invoices.append(invoice_row(invoice, account.name, issuer.name))

    def skipped(self, account: Account, issuer: Account | None, period, reason: str) -> None:
        self.invoices_skipped.append(
            {
                "account_id": account.id,
                "account": account.name,
                "issuer": issuer.name if issuer else None,
                "period": _period(period),
                "reason": reason,
            }
        )

    def failed(self, error: str, account: Account | None = None, period=None) -> None:
        """A failure: of one account (and period), or of the run (``account`` None)."""
        if account is None:
            self.failures.append({"error": error})
        else:
            self.failures.append(
                {"account_id": account.id, "account": account.name, "period": _period(period),
                 "error": error}
            )  # fmt: skip

    def finish(self) -> RunSummary:
        """Totals per currency and the created count from the invoices listed, once every
        account is billed."""
        minor: dict[str, int] = defaultdict(int)
        for inv in self.invoices:
            minor[inv["currency"]] += inv["total_minor"]
        self.totals = money_totals(minor)
        self.invoices_created = len(self.invoices)
        return self

    def as_dict(self, *, invoices: bool = True) -> dict:
        """The summary as JSON data; ``invoices=False``: what a run stores (the list stays in
        the invoices table), counted in ``invoices_created``."""
        out = {"as_of": self.as_of.isoformat(), "bill_run_id": self.bill_run_id}
        if self.queued:
            out["queued"] = True
        out["accounts"] = self.accounts
        # counted from the list when there is one (a run stopped before finish() counts too)
        out["invoices_created"] = len(self.invoices) if self.invoices else self.invoices_created
        if invoices:
            out["invoices"] = self.invoices
        out |= {
            "invoices_skipped": self.invoices_skipped,
            "failures": self.failures,
            "render_errors": self.render_errors,
            "totals": self.totals,
        }
        if self.resumed:
            out["resumed"] = True
        return out
