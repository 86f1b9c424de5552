"""Payments, refunds, reversals, prepaid top-ups, payment settings and payment methods:
validated services shared by the API and the panel (``actor=None`` is the operator's shell).

Who may do what (on top of the account being in the caller's subtree, else 404):

* record a payment or refund, reverse one: ``payments.record``, and the *payee* (the seller
  being paid) must be the caller's account or one below it — you record the money your part
  of the tree receives. The payee is the seller of the invoices chosen, else the account's
  parent (the account that bills it), else ``payee_id``.
* issue a prepaid top-up invoice: ``invoices.issue``, issued by the caller's account to an
  account below it.
* payment settings and payment methods: ``billing.edit`` (an account manages its own).

**No card numbers (PCI DSS).** Payment methods are stored as descriptions only ("Visa
ending 4242, expires 12/28"). Storing, processing or transmitting a primary account number
(PAN) puts the whole system — database, backups, logs, every server and admin account that
can read them — in PCI DSS scope (requirement 3: protect stored account data). Billhive is
not a card vault; card numbers belong with a payment service provider, which gives back a
token or a description. So any text field here that contains something that looks like a
PAN (13 to 19 digits, spaces or dashes allowed between them, passing the Luhn check) is
refused with a message saying why, and nothing is written.

**Idempotency.** ``POST`` requests that create money (payments, refunds) accept an
``Idempotency-Key`` header (1-255 printable characters). A key belongs to its caller: it is
stored as a digest of (calling user, method, path, key) beside the account, with a
fingerprint of the request (method, path and JSON body, keys sorted) and the first answer
(status and body), in the same transaction as the payment, under a unique (account, key)
index. So another user, or the same user on another account or route, sending the same key
is another key and never gets someone else's answer (a caller refused the request itself is
refused with the key too). A retry by the same caller with the same key and body gets the
first answer again (``Idempotent-Replayed: true``) and records nothing; the same key with
another body is refused with 422;
two concurrent requests with one key record one payment (the second waits on the unique
index and then replays the first answer). A request that fails (4xx) stores nothing, so it
can be corrected and retried with the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date

import peewee as pw
from marshmallow import Schema, fields, validate

from core import audit, events, rbac
from core.accounts import require_billing_terms
from core.billing.invoicing import lifecycle, status
from core.billing.invoicing.status import lock_account
from core.billing.ledger import entries as ledger
from core.billing.models import (
    BillingSettings,
    IdempotencyKey,
    Invoice,
    LedgerEntry,
    Payment,
    PaymentMethod,
    PrepaidTopup,
)
from core.billing.money import MoneyError, check_currency, format_money, parse_decimal, to_minor
from core.billing.periods import PeriodError, parse_date
from core.db import database, utcnow, write_transaction
from core.errors import Conflict, Forbidden, ValidationFailed, load
from core.fields import PAN_MESSAGE, Amount, Id, Text, looks_like_pan
from core.models import Account, User

PAYMENT_CHANNELS = ("bank_transfer", "card", "direct_debit", "cash", "cheque", "other")
METHOD_TYPES = ("card", "bank_account", "direct_debit", "paypal", "other")
MAX_TERMS_DAYS = 365

# -- card numbers: the one rule is core.fields.looks_like_pan (every free-text field) ---------


def refuse_pan(values: dict, names) -> None:
    errors = {name: [PAN_MESSAGE] for name in names if looks_like_pan(str(values.get(name) or ""))}
    if errors:
        raise ValidationFailed("; ".join(f"{name}: {PAN_MESSAGE}" for name in errors), errors)


# -- helpers ---------------------------------------------------------------------------------


def _require(actor, code: str, account: Account) -> None:
    if actor is not None:
        rbac.require(actor, code, account)


def _money(value, currency: str, field: str = "amount") -> int:
    """A positive amount in major units ("12.34") as minor units, exactly."""
    try:
        amount = parse_decimal(value, field)
        minor = to_minor(amount, currency)
    except MoneyError as exc:
        raise ValidationFailed.field(exc.field or field, exc.message) from None
    if amount <= 0:
        raise ValidationFailed.field(field, "must be greater than 0")
    if ledger_exact(minor, currency) != amount:
        raise ValidationFailed.field(
            field, f"has more decimals than {currency} allows ({format_money(minor, currency)}?)"
        )
    return minor


def ledger_exact(minor: int, currency: str):
    from core.billing.money import to_decimal

    return to_decimal(minor, currency)


def _currency(value, account: Account) -> str:
    try:
        return check_currency(value or account.currency)
    except MoneyError as exc:
        raise ValidationFailed.field("currency", exc.message) from None


def _date(value, field: str = "date") -> date:
    if value in (None, ""):
        return date.today()
    try:
        day = parse_date(value, field)
    except PeriodError as exc:
        raise ValidationFailed.field(field, str(exc)) from None
    if day > date.today():
        raise ValidationFailed.field(field, "cannot be in the future")
    return day


def _seller_check(actor, payee: Account, account: Account) -> None:
    if not (account.is_within(payee) and account.id != payee.id):
        raise ValidationFailed.field(
            "payee_id", f"{payee.name} does not bill {account.name} (it is not above it)"
        )
    if actor is not None and not payee.is_within(actor.account):
        raise Forbidden(
            f"payments to {payee.name} are recorded by {payee.name} or an account above it"
        )


def _payee(actor, account: Account, payee_id, invoices: list[Invoice]) -> Account:
    if payee_id:
        payee = Account.get_or_none(Account.id == payee_id)
        if payee is None or not account.is_within(payee):
            raise ValidationFailed.field("payee_id", f"account {payee_id} does not bill this one")
    elif invoices:
        issuers = {inv.issuer_id for inv in invoices}
        if len(issuers) > 1:
            raise ValidationFailed.field(
                "invoice_ids", "the invoices are from different sellers: record one payment each"
            )
        payee = Account.get_by_id(issuers.pop())
    elif account.parent_id:
        payee = Account.get_by_id(account.parent_id)
    else:
        raise ValidationFailed.field("payee_id", f"{account.name} has no seller above it")
    _seller_check(actor, payee, account)
    return payee


def payment_snapshot(payment: Payment) -> dict:
    return {
        "kind": payment.kind,
        "account_id": payment.account_id,
        "payee_id": payment.payee_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "received_on": payment.received_on.isoformat(),
        "method": payment.method,
        "reference": payment.reference,
    }


# -- payments --------------------------------------------------------------------------------


class PaymentInput(Schema):
    amount = Amount(required=True, metadata={"description": 'major units, e.g. "12.34"'})
    currency = Text(10, load_default=None, allow_none=True, card_numbers=False)
    date = fields.Raw(load_default=None, allow_none=True,
                      metadata={"description": "YYYY-MM-DD, default today"})  # fmt: skip
    method = fields.String(load_default="bank_transfer", validate=validate.OneOf(PAYMENT_CHANNELS))
    reference = Text(200, load_default="")
    memo = Text(500, load_default="", multiline=True)
    invoice_ids = fields.List(Id(),
                              load_default=None, allow_none=True,
                              metadata={"description": "allocate to these, in this order; "
                                        "default: open invoices oldest first"})  # fmt: skip
    payee_id = Id(load_default=None, allow_none=True)


def _chosen_invoices(account: Account, ids, currency: str) -> list[Invoice]:
    chosen, errors = [], []
    for invoice_id in ids or []:
        inv = Invoice.get_or_none((Invoice.id == invoice_id) & (Invoice.account == account.id))
        if inv is None or inv.kind != "invoice":
            errors.append(f"{invoice_id}: not an invoice of {account.name}")
        elif inv.currency != currency:
            errors.append(f"{inv.number}: is in {inv.currency}, the payment in {currency}")
        elif inv.status != "issued" or ledger.open_amount(inv) <= 0:
            errors.append(f"{inv.number}: nothing is due on it ({inv.status})")
        elif inv in chosen:
            errors.append(f"{inv.number}: named twice")
        else:
            chosen.append(inv)
    if errors:
        raise ValidationFailed("invoice_ids: " + "; ".join(errors), {"invoice_ids": errors})
    return chosen


def record_payment(actor, account: Account, payload) -> Payment:
    """Record money received from ``account`` and allocate it: to ``invoice_ids`` in that
    order when given, else to its open invoices with the payee, oldest first. An invoice is
    paid when nothing is due on it any more; what is left over is credit."""
    _require(actor, "payments.record", account)
    data = load(PaymentInput(), payload)
    currency = _currency(data["currency"], account)
    amount = _money(data["amount"], currency)
    on = _date(data["date"])
    refuse_pan(data, ("reference", "memo"))
    with write_transaction():
        lock_account(account.id)
        chosen = _chosen_invoices(account, data["invoice_ids"], currency)
        payee = _payee(actor, account, data["payee_id"], chosen)
        if chosen and any(inv.issuer_id != payee.id for inv in chosen):
            raise ValidationFailed.field("invoice_ids", f"not all are invoices of {payee.name}")
        payment = ledger.create_payment(
            account.id, payee.id, amount, currency, on, method=data["method"],
            reference=data["reference"], memo=data["memo"], actor=actor,
        )  # fmt: skip
        targets = chosen or [inv for inv, _ in ledger.open_invoices(account, payee, currency)]
        left = amount
        for inv in targets:
            if left == 0:
                break
            # due now: a top-up paid a moment ago may have paid part of it with its credit
            due = ledger.open_amount(Invoice.get_by_id(inv.id))
            if due <= 0:
                continue
            take = min(left, due)
            ledger.allocate(account.id, take, payment=payment, invoice=inv)
            left -= take
            ledger.settle(inv, actor)
        audit.record(actor, "payment.record", payment, account=account.id,
                     after={**payment_snapshot(payment), "unallocated": left})  # fmt: skip
        # the receipt (core.mail): recorded with the payment, sent after the commit
        events.emit("payment_recorded", payment, actor)
    return payment


def allocations_of(payment: Payment) -> list[dict]:
    from core.billing.models import Allocation

    rows = Allocation.select().where(
        (Allocation.payment == payment.id) | (Allocation.refund == payment.id)
    )
    out = []
    for a in rows.order_by(Allocation.id):
        if a.invoice_id:
            inv = Invoice.get_by_id(a.invoice_id)
            out.append({"invoice_id": inv.id, "number": inv.number, "amount": a.amount})
        elif a.refund_id and a.payment_id == payment.id:
            out.append({"refund_id": a.refund_id, "amount": a.amount})
        elif a.refund_id == payment.id:
            source = a.payment_id or a.credit_note_id
            out.append({"source": "payment" if a.payment_id else "credit_note",
                        "source_id": source, "amount": a.amount})  # fmt: skip
    return out


def unallocated_of(payment: Payment) -> int:
    if payment.kind != "payment":
        return 0
    for kind, row, left in ledger.credit_sources(payment.account_id, payment.payee_id,
                                                 payment.currency):  # fmt: skip
        if kind == "payment" and row.id == payment.id:
            return left
    return 0


# -- refunds ---------------------------------------------------------------------------------


class RefundInput(Schema):
    amount = Amount(required=True)
    currency = Text(10, load_default=None, allow_none=True, card_numbers=False)
    date = fields.Raw(load_default=None, allow_none=True)
    method = fields.String(load_default="bank_transfer", validate=validate.OneOf(PAYMENT_CHANNELS))
    reference = Text(200, load_default="")
    memo = Text(500, load_default="", multiline=True)
    payment_id = Id(load_default=None, allow_none=True,
                    metadata={"description": "refund this payment's credit first"})  # fmt: skip
    payee_id = Id(load_default=None, allow_none=True)


def record_refund(actor, account: Account, payload) -> Payment:
    """Pay credit back to ``account``: at most its unallocated credit with the payee (money
    that settled an invoice is refunded after a credit note turned it into credit)."""
    _require(actor, "payments.record", account)
    data = load(RefundInput(), payload)
    currency = _currency(data["currency"], account)
    amount = _money(data["amount"], currency)
    on = _date(data["date"])
    refuse_pan(data, ("reference", "memo"))
    with write_transaction():
        lock_account(account.id)
        first = None
        if data["payment_id"]:
            first = Payment.get_or_none((Payment.id == data["payment_id"])
                                        & (Payment.account == account.id)
                                        & (Payment.kind == "payment"))  # fmt: skip
            if first is None:
                raise ValidationFailed.field("payment_id", "not a payment of this account")
        payee_id = data["payee_id"] or (first.payee_id if first else None)
        payee = _payee(actor, account, payee_id, [])
        sources = ledger.credit_sources(account.id, payee.id, currency)
        if first is not None:
            mine = [s for s in sources if s[0] == "payment" and s[1].id == first.id]
            if not mine:
                raise ValidationFailed.field("payment_id", f"payment {first.id} has no credit left")
            sources = mine + [s for s in sources if s not in mine]
        available = sum(left for _, _, left in sources)
        if amount > available:
            raise ValidationFailed.field(
                "amount",
                f"only {format_money(available, currency)} of credit with {payee.name} can be "
                "refunded (money that settled invoices needs a credit note first)",
            )
        refund = ledger.create_payment(
            account.id, payee.id, amount, currency, on, kind="refund", method=data["method"],
            reference=data["reference"], memo=data["memo"], actor=actor,
        )  # fmt: skip
        left = amount
        for kind, source, free in sources:
            take = min(left, free)
            ledger.allocate(account.id, take, refund=refund, **{kind: source})
            left -= take
            if left == 0:
                break
        audit.record(actor, "refund.record", refund, object_type="payment", account=account.id,
                     after=payment_snapshot(refund))  # fmt: skip
    return refund


# -- reversals -------------------------------------------------------------------------------


def reverse_entry(actor, account: Account, entry_id, memo: str = "") -> LedgerEntry:
    """Correct a mistaken payment or refund with a reversing entry."""
    _require(actor, "payments.record", account)
    entry = rbac.get_in_account(LedgerEntry, actor, account, entry_id, label="ledger entry")
    if actor is not None and not entry.seller.is_within(actor.account):
        raise Forbidden(f"entries with {entry.seller.name} are corrected by {entry.seller.name}")
    if len(memo or "") > 500:
        raise ValidationFailed.field("memo", "at most 500 characters")
    refuse_pan({"memo": memo}, ("memo",))
    with write_transaction():
        reversal = ledger.reverse(entry, actor, memo)
        audit.record(actor, "ledger.reverse", reversal, object_type="ledgerentry",
                     account=account.id, after={"reverses": entry.id, "amount": reversal.amount,
                                                "currency": reversal.currency})  # fmt: skip
    return reversal


# -- prepaid top-ups -------------------------------------------------------------------------


class TopupInput(Schema):
    amount = Amount(required=True, metadata={"description": "credit to buy, major units"})
    currency = Text(10, load_default=None, allow_none=True, card_numbers=False)
    description = Text(200, min_length=1, load_default="Prepaid credit")


def create_topup(actor, account: Account, payload) -> Invoice:
    """Issue a prepaid top-up invoice from the caller's account to ``account``. Tax is not
    charged on it (the invoices the credit pays carry the tax); its total becomes prepaid
    credit once it is paid."""
    _require(actor, "invoices.issue", account)
    data = load(TopupInput(), payload)
    currency = _currency(data["currency"], account)
    amount = _money(data["amount"], currency)
    refuse_pan(data, ("description",))
    issuer = actor.account if actor is not None else account.parent
    if issuer is None or account.id == issuer.id or not account.is_within(issuer):
        raise Forbidden("a top-up invoice is issued by the account that bills this one")
    value = ledger_exact(amount, currency)
    with write_transaction():
        invoice = Invoice.create(account=account.id, issuer=issuer.id, kind="invoice",
                                 status="draft", currency=currency, tax_rate="0")  # fmt: skip
        lifecycle.add_line(invoice, {"description": data["description"], "quantity": "1",
                                     "unit_price": value, "product_code": "PREPAID"})  # fmt: skip
        lifecycle.recompute_totals(invoice)
        invoice.save()
        PrepaidTopup.create(invoice=invoice.id, account=account.id, created_by=actor)
        audit.record(actor, "invoice.draft", invoice, account=account.id,
                     after={**status.snapshot(invoice), "prepaid": True})  # fmt: skip
    return lifecycle.issue(invoice, actor)


def topups(account: Account) -> list[Invoice]:
    return list(
        Invoice.select()
        .join(PrepaidTopup, on=(PrepaidTopup.invoice == Invoice.id))
        .where(Invoice.account == account.id)
        .order_by(Invoice.id.desc())
    )


# -- payment settings ------------------------------------------------------------------------


class BillingSettingsInput(Schema):
    contact_name = Text(200, load_default="")
    contact_email = Text(254, load_default="", card_numbers=False)
    contact_phone = Text(40, load_default="")
    invoice_email = Text(254, load_default="", card_numbers=False)
    payment_terms_days = fields.Raw(load_default=None, allow_none=True,
                                    metadata={"description": "net days; empty = default (14)"})  # fmt: skip


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def settings_of(account: Account) -> BillingSettings:
    found = BillingSettings.get_or_none(BillingSettings.account == account.id)
    return found or BillingSettings(account=account.id)


def update_settings(actor, account: Account, payload) -> BillingSettings:
    _require(actor, "billing.edit", account)
    data = load(BillingSettingsInput(), payload)
    errors: dict[str, list[str]] = {}
    for name in ("contact_name", "contact_email", "contact_phone", "invoice_email"):
        data[name] = (data[name] or "").strip()
    for name in ("contact_email", "invoice_email"):
        if data[name] and not _EMAIL.match(data[name]):
            errors[name] = ["must be an e-mail address like billing@example.com"]
    terms = data["payment_terms_days"]
    if "payment_terms_days" not in (payload or {}):  # left out: the terms stay as they are
        data.pop("payment_terms_days")
    elif terms in ("", None):
        data["payment_terms_days"] = None
    else:
        text = str(terms).strip()
        if isinstance(terms, bool) or not text.isdigit() or int(text) > MAX_TERMS_DAYS:
            errors["payment_terms_days"] = [f"must be a whole number of days, 0-{MAX_TERMS_DAYS}"]
        else:
            data["payment_terms_days"] = int(text)
    if errors:
        raise ValidationFailed(
            "invalid input — " + ", ".join(f"{k}: {v[0]}" for k, v in errors.items()), errors
        )
    refuse_pan(data, ("contact_name", "contact_phone"))
    if "payment_terms_days" in data and (
        data["payment_terms_days"] != settings_of(account).payment_terms_days
    ):  # payment terms are a billing term: the seller's to set
        require_billing_terms(actor, account, ["payment_terms_days"], dict(payload))
    with database.atomic():
        settings = BillingSettings.get_or_none(BillingSettings.account == account.id)
        before = _settings_snapshot(settings) if settings else None
        if settings is None:
            settings = BillingSettings(account=account.id)
        for key, value in data.items():
            setattr(settings, key, value)
        settings.updated_by, settings.updated_at = actor, utcnow()
        settings.save()
        audit.record(actor, "billing.settings", settings, object_type="billingsettings",
                     account=account.id, before=before, after=_settings_snapshot(settings))  # fmt: skip
    return settings


def _settings_snapshot(s: BillingSettings) -> dict:
    return {
        "contact_name": s.contact_name,
        "contact_email": s.contact_email,
        "contact_phone": s.contact_phone,
        "invoice_email": s.invoice_email,
        "payment_terms_days": s.payment_terms_days,
    }


# -- payment methods -------------------------------------------------------------------------


class MethodInput(Schema):
    type = fields.String(required=True, validate=validate.OneOf(METHOD_TYPES))
    description = Text(200, min_length=1, required=True)
    is_default = fields.Boolean(load_default=False)


def methods_of(account: Account) -> list[PaymentMethod]:
    return list(
        PaymentMethod.select()
        .where(PaymentMethod.account == account.id)
        .order_by(PaymentMethod.is_default.desc(), PaymentMethod.id)
    )


def add_method(actor, account: Account, payload) -> PaymentMethod:
    _require(actor, "billing.edit", account)
    data = load(MethodInput(), payload)
    data["description"] = data["description"].strip()
    if not data["description"]:
        raise ValidationFailed.field("description", "must not be empty")
    refuse_pan(data, ("description",))
    with database.atomic():
        first = not PaymentMethod.select().where(PaymentMethod.account == account.id).exists()
        if data["is_default"]:
            PaymentMethod.update(is_default=False).where(
                PaymentMethod.account == account.id
            ).execute()
        method = PaymentMethod.create(account=account.id, type=data["type"],
                                      description=data["description"],
                                      is_default=data["is_default"] or first,
                                      created_by=actor)  # fmt: skip
        audit.record(actor, "payment_method.add", method, object_type="paymentmethod",
                     account=account.id, after={"type": method.type,
                                                "description": method.description})  # fmt: skip
    return method


def remove_method(actor, account: Account, method_id) -> None:
    _require(actor, "billing.edit", account)
    method = rbac.get_in_account(PaymentMethod, actor, account, method_id, label="payment method")
    with database.atomic():
        audit.record(actor, "payment_method.remove", method, object_type="paymentmethod",
                     account=account.id, before={"type": method.type,
                                                 "description": method.description})  # fmt: skip
        method.delete_instance()


# -- idempotency -----------------------------------------------------------------------------

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def fingerprint(method: str, path: str, body) -> str:
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"),
                           default=str)  # fmt: skip
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_scope(caller: User, method: str, path: str, key: str) -> str:
    """What is stored for an ``Idempotency-Key``: a digest of (caller, method, path, key);
    the account is the row's own column. One caller's key is never another's."""
    canonical = json.dumps([caller.id, method.upper(), path, key], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent(caller: User, account: Account, key: str | None, method: str, path: str, body,
               produce) -> tuple[int, dict, bool]:  # fmt: skip
    """Run ``produce() -> (status, body)`` once per (caller, account, method, path, key);
    see the module doc. Returns ``(status, body, replayed)``."""
    if key is None:
        status, answer = produce()
        return status, answer, False
    if not _KEY.match(key):
        raise ValidationFailed.field(
            "Idempotency-Key", "must be 1-255 printable characters without spaces"
        )
    digest = fingerprint(method, path, body)
    scoped_key = idempotency_scope(caller, method, path, key)
    with write_transaction():
        try:
            with database.atomic():
                row = IdempotencyKey.create(account=account.id, key=scoped_key,
                                            request_hash=digest)  # fmt: skip
        except pw.IntegrityError:
            row = None
        if row is None:
            first = IdempotencyKey.get((IdempotencyKey.account == account.id)
                                       & (IdempotencyKey.key == scoped_key))  # fmt: skip
            if first.request_hash != digest:
                raise ValidationFailed(
                    f"Idempotency-Key '{key}' was already used with a different request; "
                    "use a new key for a new payment",
                    {"Idempotency-Key": ["already used with a different request body"]},
                )
            if first.status_code is None:  # pragma: no cover - written in one transaction
                raise Conflict(f"a request with Idempotency-Key '{key}' is still running")
            return first.status_code, first.response, True
        status, answer = produce()
        IdempotencyKey.update(status_code=status, response=answer).where(
            IdempotencyKey.id == row.id
        ).execute()
    return status, answer, False
