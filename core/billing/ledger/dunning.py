"""Dunning: chasing overdue invoices in levels, each step once per invoice and level.

**Levels.** Every issuer (the provider and each reseller) has three levels, in this order:
``reminder_1``, ``reminder_2`` and ``final_notice`` (the names of the mail templates that
``core.mail.send_for_invoice`` sends). A level is reached ``days`` days after the invoice's
``due_date`` (defaults :data:`DEFAULT_LEVELS`: 3, 14, 30), may be switched off, may carry a
late fee (``fee`` minor units of ``fee_currency``, invoiced separately as a new, normal
invoice through :mod:`core.billing.invoicing.lifecycle`, so numbering, ledger and credit drawing stay
right), and the final notice may suspend the billed account. The issuer's admins (holders of
``invoices.issue`` at the issuer or above) edit them; days must ascend over the levels
that are on, fees are 0 to
``core.fields.MAX_AMOUNT``.

**A run** (:func:`run`: ``billhive dunning run [--date]``, and every ``DUNNING_SECONDS`` in
``billhive worker``) looks at issued invoices (not credit notes) whose due date is before the
run's date, and takes for each the *highest* level it has reached, unless that level or a
higher one was taken already: an invoice that a paused run finds 40 days overdue gets the
final notice only, never three mails. Nothing happens to an invoice that is paid, void, has
nothing left to pay, or has a credit note (not void) against it (the seller corrected it:
people decide what is owed now), nor to invoices of an account whose dunning is paused
(:func:`pause`). A run's date is never after today (:func:`core.clock.today`).

**Once.** A step is a :class:`~core.billing.models.DunningStep` row with a unique
(invoice, level) key, written in one transaction with its late-fee invoice under the
invoice's lock (:func:`core.billing.invoicing.status.lock_invoice`, taken after the issuer's number
sequence, the order every issue takes), after checking the invoice as it is then; so of two
parallel runs one takes the step and the other sees it taken. What follows the commit is
marked on the row as it is done: the ``invoice_overdue`` hook (claimed by a conditional
update before the call: at most once per step), the suspension
(``core.accounts.set_account_status``; asking twice changes nothing), the reminder mail
(``core.mail.send_for_invoice`` with the event key ``dunning:<invoice id>:<level>``, which
never sends one event twice), then ``completed_at``. A run
killed after the commit leaves the step incomplete; every run first finishes such steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import peewee as pw
from marshmallow import Schema, fields, validate

from core import audit, clock, events, rbac
from core.billing.invoicing import lifecycle, numbering
from core.billing.invoicing.status import lock_account, lock_invoice
from core.billing.ledger import entries as ledger
from core.billing.models import (
    DUNNING_LEVELS,
    DunningLevel,
    DunningPause,
    DunningStep,
    Invoice,
)
from core.billing.money import MoneyError, check_currency, format_money, to_decimal, to_minor
from core.billing.periods import PeriodError, parse_date
from core.current import host
from core.db import utcnow, write_transaction
from core.errors import (
    BillhiveError,
    Conflict,
    Forbidden,
    ValidationFailed,
    load,
)
from core.fields import MAX_AMOUNT, DecimalString, Text
from core.models import Account

log = logging.getLogger("billhive.dunning")

PRIVILEGE = "invoices.issue"  # levels, pauses: the people who issue (and void) invoices
MAX_DAYS = 3650
TITLES = {"reminder_1": "Reminder", "reminder_2": "Second reminder",
          "final_notice": "Final notice"}  # fmt: skip


@dataclass(frozen=True)
class Level:
    """One dunning level of an issuer, as the ``invoice_overdue`` hook receives it."""

    code: str  # reminder_1, reminder_2, final_notice
    days: int  # after the due date
    enabled: bool = True
    fee: int = 0  # minor units of fee_currency; 0: no late fee
    fee_currency: str = ""
    suspend: bool = False  # final_notice only: suspend the billed account

    @property
    def title(self) -> str:
        return TITLES[self.code]

    @property
    def rank(self) -> int:
        return DUNNING_LEVELS.index(self.code)

    def fee_text(self) -> str:
        return format_money(self.fee, self.fee_currency) if self.fee else ""


DEFAULT_LEVELS = (
    Level("reminder_1", 3),
    Level("reminder_2", 14),
    Level("final_notice", 30),
)


# -- levels ----------------------------------------------------------------------------------


def levels_of(issuer) -> list[Level]:
    """The issuer's three levels in order: its own settings, else the defaults."""
    issuer_id = issuer if isinstance(issuer, int) else issuer.id
    stored = {
        row.level: row for row in DunningLevel.select().where(DunningLevel.issuer == issuer_id)
    }
    out = []
    for default in DEFAULT_LEVELS:
        row = stored.get(default.code)
        if row is None:
            out.append(default)
        else:
            out.append(Level(row.level, row.days, row.enabled, row.fee, row.fee_currency,
                             row.suspend and row.level == "final_notice"))  # fmt: skip
    return out


def is_issuer(account: Account) -> bool:
    """Only accounts that sell (provider, resellers) have dunning levels."""
    return rbac.level_of(account) in ("provider", "reseller")


def can_manage_levels(actor, issuer: Account) -> bool:
    """The issuer's admins: ``invoices.issue`` at the issuer or above (``None``: the shell)."""
    if actor is None:
        return True
    return issuer.is_within(actor.account) and rbac.has(actor, PRIVILEGE)


class LevelInput(Schema):
    level = fields.String(required=True, validate=validate.OneOf(DUNNING_LEVELS),
                          metadata={"description": "reminder_1, reminder_2 or final_notice"})  # fmt: skip
    days = fields.Integer(required=True, strict=True, validate=validate.Range(
        1, MAX_DAYS, error="must be a whole number of days from {min} to {max}"),
        metadata={"description": "days after the due date"})  # fmt: skip
    enabled = fields.Boolean(load_default=True)
    fee = DecimalString(0, MAX_AMOUNT, load_default=Decimal(0),
                        metadata={"description": "late fee in major units, invoiced separately"})  # fmt: skip
    fee_currency = Text(3, load_default="", card_numbers=False,
                        metadata={"description": "ISO 4217 code; required with a fee"})  # fmt: skip
    suspend = fields.Boolean(load_default=False,
                             metadata={"description": "final_notice only: suspend the account"})  # fmt: skip


class LevelsInput(Schema):
    levels = fields.List(fields.Nested(LevelInput), required=True,
                         validate=validate.Length(equal=len(DUNNING_LEVELS),
                                                  error="must list the 3 levels"),
                         metadata={"description": "reminder_1, reminder_2 and final_notice, "
                                                  "each once"})  # fmt: skip


def _check_levels(rows: list[dict]) -> list[Level]:
    """Money and order rules the schema cannot state; errors keyed ``levels.<n>.<field>``.
    Checked after the caller's scope, so an account outside it answers 404 whatever the body."""
    codes = [row["level"] for row in rows]
    if sorted(codes) != sorted(DUNNING_LEVELS):
        raise ValidationFailed.field(
            "levels", f"must list each of {', '.join(DUNNING_LEVELS)} once"
        )
    errors: dict[str, list[str]] = {}
    by_code = {row["level"]: (index, row) for index, row in enumerate(rows)}
    out = []
    for code in DUNNING_LEVELS:
        index, row = by_code[code]
        key = f"levels.{index}"
        fee, currency = row["fee"], (row["fee_currency"] or "").strip().upper()
        minor = 0
        if fee:
            try:
                currency = check_currency(currency, "fee_currency")
                minor = to_minor(fee, currency)
                if to_decimal(minor, currency) != fee:
                    errors[f"{key}.fee"] = [f"{currency} has at most "
                                            f"{-to_decimal(1, currency).as_tuple().exponent} "
                                            "decimals"]  # fmt: skip
            except MoneyError as exc:
                errors[f"{key}.fee_currency"] = [str(exc.message)]
        elif currency:
            try:
                currency = check_currency(currency, "fee_currency")
            except MoneyError as exc:
                errors[f"{key}.fee_currency"] = [str(exc.message)]
        if row["suspend"] and code != "final_notice":
            errors[f"{key}.suspend"] = ["only the final notice can suspend the account"]
        out.append(Level(code, row["days"], row["enabled"], minor, currency if minor else "",
                         row["suspend"]))  # fmt: skip
    enabled = [lv for lv in out if lv.enabled]  # a switched-off level keeps its days aside
    for before, after in zip(enabled, enabled[1:], strict=False):
        if after.days <= before.days:
            index = by_code[after.code][0]
            errors.setdefault(f"levels.{index}.days", []).append(
                f"{after.title}: must be more days than {before.title} ({before.days})"
            )
    if errors:
        raise ValidationFailed(
            "invalid dunning levels — " + ", ".join(f"{k}: {v[0]}" for k, v in errors.items()),
            errors,
        )
    return out


def _level_snapshot(levels: list[Level]) -> dict:
    return {lv.code: {"days": lv.days, "enabled": lv.enabled, "fee": lv.fee,
                      "fee_currency": lv.fee_currency, "suspend": lv.suspend}
            for lv in levels}  # fmt: skip


def update_levels(actor, issuer: Account, payload) -> list[Level]:
    """Replace the issuer's three levels (the API's PUT and the panel form), one transaction,
    audited. 403 without ``invoices.issue`` or for an account that does not sell."""
    if actor is not None:
        rbac.require(actor, PRIVILEGE, issuer)  # 404 outside the subtree, then 403
    if not is_issuer(issuer):
        raise Forbidden(f"{issuer.name} does not issue invoices: it has no dunning levels")
    data = load(LevelsInput(), payload if isinstance(payload, dict) else {})
    levels = _check_levels(data["levels"])
    with write_transaction():
        before = levels_of(issuer)
        for lv in levels:
            values = {"days": lv.days, "enabled": lv.enabled, "fee": lv.fee,
                      "fee_currency": lv.fee_currency, "suspend": lv.suspend,
                      "updated_by": actor, "updated_at": utcnow()}  # fmt: skip
            changed = (
                DunningLevel.update(**values)
                .where((DunningLevel.issuer == issuer.id) & (DunningLevel.level == lv.code))
                .execute()
            )
            if not changed:
                DunningLevel.create(issuer=issuer.id, level=lv.code, **values)
        audit.record(actor, "dunning.levels", issuer, object_type="account", account=issuer.id,
                     before=_level_snapshot(before), after=_level_snapshot(levels))  # fmt: skip
    return levels


# -- pausing ---------------------------------------------------------------------------------


def pause_of(account) -> DunningPause | None:
    account_id = account if isinstance(account, int) else account.id
    return DunningPause.get_or_none(DunningPause.account == account_id)


def _require_seller(actor, account: Account) -> None:
    """Pausing is the seller's: ``invoices.issue`` on an account strictly below the caller's
    (nobody pauses the dunning of their own account). 404 outside the subtree."""
    if actor is None:
        return
    rbac.require(actor, PRIVILEGE, account)
    if account.id == actor.account_id:
        raise Forbidden(
            "the dunning of your own account is paused by the account that bills it, not by you",
            {"paused": ["set by the account above yours"]},
        )


class PauseInput(Schema):
    reason = Text(500, load_default="", multiline=True,
                  metadata={"description": "why (shown on the account's Dunning tab)"})  # fmt: skip


def pause(actor, account: Account, payload=None) -> DunningPause:
    """Stop dunning ``account``'s invoices until :func:`resume`; audited. Pausing a paused
    account keeps the first pause and answers 409."""
    _require_seller(actor, account)
    data = load(PauseInput(), payload if isinstance(payload, dict) else {})
    try:
        with write_transaction():
            # the account's money lock, which every step holds: a step under way finishes
            # first, one starting later sees the pause
            lock_account(account.id)
            row = DunningPause.create(account=account.id, reason=data["reason"].strip(),
                                      paused_by=actor)  # fmt: skip
            audit.record(actor, "dunning.pause", account, account=account.id,
                         after={"reason": row.reason})  # fmt: skip
    except pw.IntegrityError:
        raise Conflict(f"the dunning of {account.name} is already paused",
                       {"paused": ["already paused"]}) from None  # fmt: skip
    return row


def resume(actor, account: Account) -> None:
    """Dun ``account`` again (the next run takes the level its invoices reached); audited."""
    _require_seller(actor, account)
    with write_transaction():
        row = pause_of(account)
        if row is None or not DunningPause.delete().where(DunningPause.id == row.id).execute():
            raise Conflict(f"the dunning of {account.name} is not paused",
                           {"paused": ["not paused"]})  # fmt: skip
        audit.record(actor, "dunning.resume", account, account=account.id,
                     before={"reason": row.reason, "paused_at": str(row.paused_at)})  # fmt: skip


# -- which step is due -----------------------------------------------------------------------


def check_date(value, field: str = "date") -> date:
    """A run's date: a date or 'YYYY-MM-DD', never after today in the instance's time zone."""
    day = parse_date(value, field)
    today = clock.today()
    if day > today:
        raise PeriodError(
            f"{field} {day} is after today ({today}, time zone {clock.timezone_name()}): "
            "dunning chases what is overdue now, and a reminder cannot be taken back",
            field=field,
        )
    return day


def due_level(levels: list[Level], due: date, on: date) -> Level | None:
    """The highest enabled level an invoice due on ``due`` has reached on ``on``."""
    overdue = (on - due).days
    reached = [lv for lv in levels if lv.enabled and overdue >= lv.days]
    return reached[-1] if reached else None


def _credited(invoice_id) -> pw.Expression:
    note = Invoice.alias()
    return pw.fn.EXISTS(
        note.select(note.id).where((note.credit_for == invoice_id) & (note.status != "void"))
    )


def _candidates(on: date, scope: Account | None = None) -> pw.ModelSelect:
    """Issued invoices due before ``on`` that may be dunned (ids, oldest due first)."""
    paused = DunningPause.select(DunningPause.account)
    query = Invoice.select(Invoice.id, Invoice.issuer, Invoice.due_date).where(
        (Invoice.kind == "invoice")
        & (Invoice.status == "issued")
        & Invoice.due_date.is_null(False)
        & (Invoice.due_date < on)
        & Invoice.account.not_in(paused)
        & ~_credited(Invoice.id)
    )
    if scope is not None:
        query = query.where(Invoice.issuer.in_(
            Account.select(Account.id).where(rbac.in_subtree(scope))))  # fmt: skip
    return query.order_by(Invoice.due_date, Invoice.id)


def _why_not(stored: Invoice, on: date) -> str | None:
    """Why ``stored`` (read under its lock) is not dunned now, or None."""
    if stored.kind != "invoice" or stored.status != "issued":
        return f"is {stored.status}"
    if stored.due_date is None or stored.due_date >= on:
        return "is not overdue"
    if ledger.open_amount(stored) <= 0:
        return "has nothing left to pay"
    credited = Invoice.select(Invoice.id).where(
        (Invoice.credit_for == stored.id) & (Invoice.status != "void")
    )
    if credited.exists():
        return "has a credit note"
    if pause_of(stored.account_id) is not None:
        return "belongs to an account whose dunning is paused"
    return None


def _taken(invoice_id: int) -> set[str]:
    return {
        row[0]
        for row in DunningStep.select(DunningStep.level)
        .where(DunningStep.invoice == invoice_id)
        .tuples()
    }


def _is_fee_invoice(invoice_id: int) -> bool:
    return DunningStep.select(DunningStep.id).where(DunningStep.fee_invoice == invoice_id).exists()


def take_step(invoice_id: int, level: Level, on: date) -> DunningStep | None:
    """Take ``level`` for the invoice if it is still due (checked under the invoice's lock):
    the step row, its audit record and its late-fee invoice in one transaction. Returns the
    step, or None when the invoice is settled, paused, credited or the level (or a higher one)
    was taken already, by this run or a parallel one."""
    invoice = Invoice.get_or_none(Invoice.id == invoice_id)
    if invoice is None:
        return None
    issuer = Account.get_by_id(invoice.issuer_id)
    fee, note = level.fee, ""
    if fee and level.fee_currency != invoice.currency:
        fee, note = 0, (f"no late fee: the level's fee is in {level.fee_currency}, "
                        f"the invoice in {invoice.currency}")  # fmt: skip
    if fee and _is_fee_invoice(invoice_id):
        fee, note = 0, "no late fee on a late-fee invoice"
    if fee:
        numbering.ensure_sequence(issuer.id, "invoice")
    try:
        with write_transaction():
            # the issuer's number first, then the account and the invoice: the order of
            # every issue (core.billing.invoicing.lifecycle), so this never deadlocks with one
            number = numbering.next_number(issuer, "invoice") if fee else None
            stored = lock_invoice(invoice_id)
            if _why_not(stored, on) is not None:
                raise _NotDue
            taken = _taken(invoice_id)
            if any(DUNNING_LEVELS.index(code) >= level.rank for code in taken):
                raise _NotDue
            account = Account.get_by_id(stored.account_id)
            step = DunningStep.create(
                invoice=stored.id, level=level.code, account=stored.account_id, run_date=on,
                days_overdue=(on - stored.due_date).days, note=note,
            )  # fmt: skip
            if fee:
                draft = lifecycle.create_draft(None, account, issuer, [{
                    "description": f"Late fee: {stored.number} unpaid "
                                   f"({level.title.lower()}, due {stored.due_date})",
                    "unit_price": str(to_decimal(fee, invoice.currency)),
                    "quantity": "1",
                }])  # fmt: skip
                lifecycle._issue_in_transaction(draft, None, number=number)
                step.fee_invoice = draft.id
                step.save()
            audit.record(None, "invoice.dunning", stored, object_type="invoice",
                         account=stored.account_id,
                         after={"level": level.code, "run_date": on.isoformat(),
                                "days_overdue": step.days_overdue,
                                "fee_invoice": step.fee_invoice_id, "note": note})  # fmt: skip
    except _NotDue:
        return None
    except pw.IntegrityError:
        # a parallel run inserted (invoice, level) first: the unique key keeps it once
        if DunningStep.get_or_none(invoice=invoice_id, level=level.code) is not None:
            return None
        raise
    if step.fee_invoice_id:
        lifecycle.finalize(Invoice.get_by_id(step.fee_invoice_id))  # render, invoice_finalized
    return step


class _NotDue(Exception):
    """Rolls the step's transaction back (and gives a taken fee number back)."""


# -- after the commit: mail, suspension, hook ------------------------------------------------


def _send(invoice: Invoice, level: str, context: dict) -> None:
    """Hand the reminder to the mailer (the core event ``dunning_reminder``: core.mail records
    it once per event key and sends, and retries, it after the commit; its send history shows
    on the invoice and :func:`core.mail.messages.reminder_status` reads it back)."""
    events.emit("dunning_reminder", invoice, level, event_key=reminder_key(invoice.id, level),
                context=context)  # fmt: skip


def reminder_key(invoice_id: int, level: str) -> str:
    """The event key of the reminder of ``level`` about an invoice (sent once per key)."""
    return f"dunning:{invoice_id}:{level}"


def _suspend(account: Account, step: DunningStep, invoice: Invoice) -> None:
    from core import accounts

    accounts.set_account_status(account, "suspended", None,
                                reason=f"final notice for {invoice.number} (unpaid since "
                                       f"{invoice.due_date})")  # fmt: skip


def _level_for(step: DunningStep, invoice: Invoice) -> Level:
    for lv in levels_of(invoice.issuer_id):
        if lv.code == step.level:
            return lv
    raise LookupError(step.level)  # pragma: no cover - levels are fixed


def complete(step: DunningStep) -> bool:
    """Do what follows a step's commit that is not done yet: the ``invoice_overdue`` hook,
    the suspension (when the final notice says so), the mail; then mark it complete. Each
    part is marked as it is done, so calling this again (a run after a crash, two runs at
    once) repeats nothing: the hook is claimed before it is called, a suspended account stays
    so, the mail is idempotent by its event key. Returns True when the step is complete; a
    mail failure is recorded on the step and retried by the next run."""

    invoice = Invoice.get_by_id(step.invoice_id)
    level = _level_for(step, invoice)
    claimed = (
        DunningStep.update(notified_at=utcnow())
        .where((DunningStep.id == step.id) & DunningStep.notified_at.is_null())
        .execute()
    )
    if claimed:
        try:
            host().call("invoice_overdue", invoice=invoice, level=level)
        except Exception:  # noqa: BLE001 - a plugin's failure does not undo the step
            log.exception("a plugin failed on invoice_overdue of %s", invoice.number)
    if level.suspend and step.level == "final_notice" and not step.suspended:
        account = Account.get_by_id(step.account_id)
        if account.status == "active":
            try:
                _suspend(account, step, invoice)
            except BillhiveError as exc:  # closed meanwhile, or the provider: not suspended
                log.info("dunning: %s not suspended: %s", account.name, exc.message)
        step.suspended = True
        DunningStep.update(suspended=True).where(DunningStep.id == step.id).execute()
    if step.mailed_at is None:
        try:
            fee = Invoice.get_or_none(Invoice.id == step.fee_invoice_id)
            _send(invoice, step.level, {
                "level": step.level, "days_overdue": step.days_overdue,
                "late_fee": format_money(fee.total, fee.currency) if fee else ""})  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - recorded on the step, retried next run
            log.warning("dunning %s of %s: sending failed", step.level, invoice.number,
                        exc_info=True)  # fmt: skip
            error = f"{type(exc).__name__}: {exc}"[:2000]
            DunningStep.update(mail_error=error).where(DunningStep.id == step.id).execute()
            step.mail_error = error
            return False
        step.mailed_at = utcnow()
    step.completed_at = utcnow()
    DunningStep.update(mailed_at=step.mailed_at, mail_error=None,
                       completed_at=step.completed_at).where(
        (DunningStep.id == step.id) & DunningStep.completed_at.is_null()
    ).execute()  # fmt: skip
    return True


# -- a run -----------------------------------------------------------------------------------


def run(on: date | None = None, *, scope: Account | None = None,
        progress: Callable[[int, int], None] | None = None) -> dict:  # fmt: skip
    """Dun every overdue invoice (of issuers within ``scope``) as of ``on`` (default today;
    never after it). Finishes steps a killed run left first. Returns a summary:
    ``{"date", "checked", "steps": [...], "by_level": {...}, "resumed", "failures": [...]}``."""
    on = check_date(on or clock.today())
    summary = {"date": on.isoformat(), "checked": 0, "steps": [], "resumed": 0,
               "by_level": dict.fromkeys(DUNNING_LEVELS, 0), "failures": []}  # fmt: skip
    for step in (
        DunningStep.select().where(DunningStep.completed_at.is_null()).order_by(DunningStep.id)
    ):
        if complete(step):
            summary["resumed"] += 1
        else:
            summary["failures"].append(_failure(step, f"sending failed: {step.mail_error}"))
    rows = list(_candidates(on, scope).tuples())
    highest = _highest_taken([row[0] for row in rows])
    levels: dict[int, list[Level]] = {}
    for done, (invoice_id, issuer_id, due) in enumerate(rows, start=1):
        summary["checked"] += 1
        if issuer_id not in levels:
            levels[issuer_id] = levels_of(issuer_id)
        level = due_level(levels[issuer_id], due, on)
        if level is not None and highest.get(invoice_id, -1) >= level.rank:
            level = None  # taken already: no transaction, no lock (take_step checks again)
        try:
            step = take_step(invoice_id, level, on) if level is not None else None
            if step is not None:
                summary["by_level"][step.level] += 1
                summary["steps"].append(_describe(step))
                if not complete(step):
                    summary["failures"].append(_failure(step, f"sending failed: "
                                                              f"{step.mail_error}"))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one invoice's failure never stops the run
            log.exception("dunning invoice %s failed", invoice_id)
            summary["failures"].append({"invoice_id": invoice_id,
                                        "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
        if progress is not None:
            progress(done, len(rows))
    return summary


def _highest_taken(invoice_ids: list[int]) -> dict[int, int]:
    """``{invoice id: rank of the highest level taken}`` for many invoices, in chunks."""
    out: dict[int, int] = {}
    for chunk in pw.chunked(invoice_ids, 500):
        query = DunningStep.select(DunningStep.invoice, DunningStep.level).where(
            DunningStep.invoice.in_(list(chunk))
        )
        for invoice_id, code in query.tuples():
            out[invoice_id] = max(out.get(invoice_id, -1), DUNNING_LEVELS.index(code))
    return out


def _describe(step: DunningStep) -> dict:
    invoice = Invoice.get_by_id(step.invoice_id)
    fee = Invoice.get_by_id(step.fee_invoice_id) if step.fee_invoice_id else None
    return {"invoice_id": invoice.id, "number": invoice.number, "account_id": step.account_id,
            "level": step.level, "days_overdue": step.days_overdue,
            "fee_invoice": fee.number if fee else None,
            "fee": format_money(fee.total, fee.currency) if fee else None}  # fmt: skip


def _failure(step: DunningStep, error: str) -> dict:
    return {"invoice_id": step.invoice_id, "level": step.level, "error": error}


def steps_of(invoice: Invoice) -> list[DunningStep]:
    """The steps taken for ``invoice``, in level order (the invoice page, the API)."""
    rows = list(DunningStep.select().where(DunningStep.invoice == invoice.id))
    return sorted(rows, key=lambda s: DUNNING_LEVELS.index(s.level))


def step_status(step: DunningStep) -> str:
    if step.completed_at is not None:
        return "done"
    if step.mail_error:
        return "sending failed (retried by the next run)"
    return "in progress"


__all__ = [
    "DEFAULT_LEVELS",
    "Level",
    "complete",
    "due_level",
    "levels_of",
    "pause",
    "pause_of",
    "resume",
    "run",
    "steps_of",
    "take_step",
    "update_levels",
]
