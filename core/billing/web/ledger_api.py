"""REST API of the Billing page: balance, ledger, payments (with ``Idempotency-Key``),
refunds, reversals, prepaid top-ups, payment settings and methods, statements, activity
reports. Every route takes an account in the caller's subtree (404 otherwise)."""

from __future__ import annotations

import json
from datetime import date

from flask import Response, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from core import rbac
from core.api.schemas import UtcDateTime
from core.auth import api_login_required, api_user
from core.billing.invoicing.parties import DEFAULT_TERMS_DAYS
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments, reports, statements
from core.billing.models import LedgerEntry, Payment
from core.billing.money import format_money
from core.billing.periods import PeriodError, parse_date
from core.billing.web.api import InvoiceOut
from core.errors import ValidationFailed
from core.fields import Text
from core.models import Account

blp = Blueprint("billing_ledger", __name__, url_prefix="/api/v1",
                description="Billing page: balance, ledger, payments, refunds, prepaid "
                            "credit, payment settings and methods, statements, reports")  # fmt: skip


def blueprints():
    return [blp]


# -- schemas ---------------------------------------------------------------------------------


class BalanceRow(Schema):
    currency = fields.String()
    balance_minor = fields.Integer(attribute="balance")
    balance = fields.Method("_balance")
    amount_due_minor = fields.Integer(attribute="amount_due")
    prepaid_credit_minor = fields.Integer(attribute="prepaid_credit")
    prepaid_credit = fields.Method("_prepaid")
    unallocated_credit_minor = fields.Integer(attribute="unallocated_credit")
    open_invoices = fields.Integer()

    def _balance(self, row):
        return format_money(row["balance"], row["currency"])

    def _prepaid(self, row):
        return format_money(row["prepaid_credit"], row["currency"])


class BalanceOut(Schema):
    account_id = fields.Integer()
    balances = fields.List(fields.Nested(BalanceRow))


class EntryOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    seller_id = fields.Integer()
    kind = fields.String()
    amount_minor = fields.Integer(attribute="amount")
    amount = fields.Method("_amount")
    currency = fields.String()
    occurred_on = fields.Date()
    invoice_id = fields.Integer(allow_none=True)
    payment_id = fields.Integer(allow_none=True)
    reverses_id = fields.Integer(allow_none=True)
    memo = fields.String()
    created_at = UtcDateTime()

    def _amount(self, e):
        return format_money(e.amount, e.currency)


class LedgerQuery(Schema):
    currency = Text(10, load_default=None, card_numbers=False)
    kind = Text(40, load_default=None, card_numbers=False)
    page = fields.Integer(load_default=1, validate=validate.Range(1, 1_000_000))
    per_page = fields.Integer(load_default=100, validate=validate.Range(1, 500))


class PaymentOut(Schema):
    id = fields.Integer()
    kind = fields.String()
    account_id = fields.Integer()
    payee_id = fields.Integer()
    amount_minor = fields.Integer(attribute="amount")
    amount = fields.Method("_amount")
    currency = fields.String()
    date = fields.Date(attribute="received_on")
    method = fields.String()
    reference = fields.String()
    memo = fields.String()
    ledger_entry_id = fields.Method("_entry")
    reversed = fields.Method("_reversed")
    allocations = fields.Method("_allocations")
    unallocated_minor = fields.Method("_unallocated")

    def _amount(self, p):
        return format_money(p.amount, p.currency)

    def _entry(self, p):
        return ledger.entry_of_payment(p).id

    def _reversed(self, p):
        return ledger.is_reversed(ledger.entry_of_payment(p))

    def _allocations(self, p):
        return payments.allocations_of(p)

    def _unallocated(self, p):
        return payments.unallocated_of(p)


class ReverseIn(Schema):
    memo = Text(500, load_default="", multiline=True)


class OpenInvoiceOut(InvoiceOut):
    amount_due_minor = fields.Method("_due", metadata={"type": "integer"})
    overdue = fields.Method("_overdue", metadata={"type": "boolean",
                                                  "description": "past its due date"})  # fmt: skip

    def _due(self, inv):
        return ledger.open_amount(inv)

    def _overdue(self, inv):
        return inv.due_date is not None and inv.due_date < date.today()


class PrepaidRow(Schema):
    seller_id = fields.Integer()
    currency = fields.String()
    available_minor = fields.Integer()
    available = fields.String()


class PrepaidOut(Schema):
    credit = fields.List(fields.Nested(PrepaidRow))
    topups = fields.List(fields.Nested(InvoiceOut))


class BillingSettingsOut(Schema):
    contact_name = fields.String()
    contact_email = fields.String()
    contact_phone = fields.String()
    invoice_email = fields.String()
    payment_terms_days = fields.Integer(allow_none=True)
    effective_terms_days = fields.Method("_effective")

    def _effective(self, s):
        return DEFAULT_TERMS_DAYS if s.payment_terms_days is None else s.payment_terms_days


class MethodOut(Schema):
    id = fields.Integer()
    type = fields.String()
    description = fields.String()
    is_default = fields.Boolean()
    created_at = UtcDateTime()


class StatementQuery(Schema):
    from_ = Text(
        40,
        card_numbers=False,
        data_key="from",
        load_default=None,
        metadata={"description": "YYYY-MM-DD, default: the 1st of this month"},
    )
    to = Text(40, card_numbers=False, load_default=None,
              metadata={"description": "YYYY-MM-DD, included"})  # fmt: skip
    currency = Text(10, card_numbers=False, load_default=None,
                    metadata={"description": "one currency only"})  # fmt: skip


class ReportQuery(Schema):
    from_ = Text(40, card_numbers=False, data_key="from", load_default=None,
                 metadata={"description": "YYYY-MM"})  # fmt: skip
    to = Text(40, card_numbers=False, load_default=None,
              metadata={"description": "YYYY-MM, included"})  # fmt: skip


class StatementLine(Schema):
    id = fields.Integer()
    date = fields.String()
    kind = fields.String()
    type = fields.String()
    reference = fields.String()
    description = fields.String()
    debit = fields.String()
    credit = fields.String()
    balance = fields.String()
    amount_minor = fields.Integer()
    balance_minor = fields.Integer()


class StatementBlock(Schema):
    currency = fields.String()
    opening_minor = fields.Integer()
    closing_minor = fields.Integer()
    debits_minor = fields.Integer()
    credits_minor = fields.Integer()
    opening = fields.String()
    closing = fields.String()
    debits = fields.String()
    credits = fields.String()
    lines = fields.List(fields.Nested(StatementLine))


class StatementOut(Schema):
    kind = fields.String()
    title = fields.String()
    account = fields.Dict()
    start = fields.String()
    end = fields.String()
    generated_on = fields.String()
    currencies = fields.List(fields.Nested(StatementBlock))


class ActivityRow(Schema):
    account_id = fields.Integer()
    account = fields.String()
    month = fields.String()
    product = fields.String()
    product_name = fields.String()
    unit = fields.String()
    usage = fields.String()
    currency = fields.String()
    charges_minor = fields.Integer()
    charges = fields.String()


class ActivityOut(Schema):
    account_id = fields.Integer()
    account = fields.String()
    from_ = fields.String(data_key="from")
    to = fields.String()
    months = fields.List(fields.String())
    rows = fields.List(fields.Nested(ActivityRow))
    by_month = fields.Dict()
    children_by_month = fields.Dict()
    totals = fields.List(fields.Dict())
    children = fields.List(fields.Dict())


# -- helpers ---------------------------------------------------------------------------------


def _account(account_id, privilege: str) -> tuple:
    user = api_user()
    account = rbac.get_account(user, account_id)
    rbac.require(user, privilege, account)
    return user, account


def _json(status: int, body, replayed: bool = False) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _money_post(account_id, make):
    """Run ``make(user, account, payload) -> Payment`` once per Idempotency-Key of this
    caller on this account and route (the privilege is checked first, and a key is never
    shared between callers: a replay answers only the user who sent the first request)."""
    user, account = _account(account_id, "payments.record")
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ValidationFailed.field("_schema", "send a JSON object")
    key = request.headers.get("Idempotency-Key")

    def produce():
        payment = make(user, account, payload)
        return 201, PaymentOut().dump(payment)

    status, body, replayed = payments.idempotent(
        user, account, key, request.method, request.path, payload, produce
    )
    return _json(status, body, replayed)


def _statement_period(args) -> tuple[date, date]:
    today = date.today()
    try:
        start = parse_date(args["from_"], "from") if args["from_"] else today.replace(day=1)
        end = parse_date(args["to"], "to") if args["to"] else today
    except PeriodError as exc:
        raise ValidationFailed.field(getattr(exc, "field", None) or "from", str(exc)) from None
    return start, end


# -- balance and ledger ----------------------------------------------------------------------


@blp.route("/accounts/<int:account_id>/balance", methods=["GET"])
@blp.response(200, BalanceOut)
@api_login_required
def get_balance(account_id):
    """Balance per currency (the SUM of the ledger), amount due, prepaid and other credit."""
    _, account = _account(account_id, "billing.view")
    return {"account_id": account.id, "balances": ledger.summary(account)}


@blp.route("/accounts/<int:account_id>/ledger", methods=["GET"])
@blp.arguments(LedgerQuery, location="query")
@blp.response(200, EntryOut(many=True))
@api_login_required
def list_ledger(args, account_id):
    """The account's transactions, newest first."""
    _, account = _account(account_id, "billing.view")
    query = LedgerEntry.select().where(LedgerEntry.account == account.id)
    if args["currency"]:
        query = query.where(LedgerEntry.currency == args["currency"].upper())
    if args["kind"]:
        query = query.where(LedgerEntry.kind == args["kind"])
    return query.order_by(LedgerEntry.occurred_on.desc(), LedgerEntry.id.desc()).paginate(
        args["page"], args["per_page"]
    )


@blp.route("/accounts/<int:account_id>/ledger/<int:entry_id>/reverse", methods=["POST"])
@blp.arguments(ReverseIn)
@blp.response(201, EntryOut)
@api_login_required
def reverse_entry(data, account_id, entry_id):
    """Correct a mistaken payment or refund with a reversing entry."""
    user, account = _account(account_id, "billing.view")
    return payments.reverse_entry(user, account, entry_id, data["memo"])


@blp.route("/accounts/<int:account_id>/open-invoices", methods=["GET"])
@blp.response(200, OpenInvoiceOut(many=True))
@api_login_required
def open_invoices(account_id):
    """Issued invoices with something still due, oldest first."""
    _, account = _account(account_id, "billing.view")
    return [inv for inv, _ in ledger.open_invoices(account)]


# -- payments and refunds --------------------------------------------------------------------


@blp.route("/accounts/<int:account_id>/payments", methods=["GET"])
@blp.response(200, PaymentOut(many=True))
@api_login_required
def list_payments(account_id):
    _, account = _account(account_id, "billing.view")
    return Payment.select().where(Payment.account == account.id).order_by(Payment.id.desc())


@blp.route("/accounts/<int:account_id>/payments", methods=["POST"])
@blp.arguments(payments.PaymentInput)
@blp.response(201, PaymentOut)
@blp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "required": False,
                      "schema": {"type": "string", "maxLength": 255},
                      "description": "a retry by the same user with the same key and body "
                                     "returns the first answer and records nothing; keys "
                                     "are per user, account and route"}])  # fmt: skip
@api_login_required
def post_payment(_data, account_id):
    """Record a payment: allocated to ``invoice_ids`` in order, else to open invoices oldest
    first; fully allocated invoices become paid, the rest is credit."""
    return _money_post(account_id, payments.record_payment)


@blp.route("/accounts/<int:account_id>/payments/<int:payment_id>", methods=["GET"])
@blp.response(200, PaymentOut)
@api_login_required
def get_payment(account_id, payment_id):
    user, account = _account(account_id, "billing.view")
    return rbac.get_in_account(Payment, user, account, payment_id)


@blp.route("/accounts/<int:account_id>/refunds", methods=["POST"])
@blp.arguments(payments.RefundInput)
@blp.response(201, PaymentOut)
@blp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "required": False,
                      "schema": {"type": "string", "maxLength": 255}}])  # fmt: skip
@api_login_required
def post_refund(_data, account_id):
    """Pay credit back to the account (at most its unallocated credit)."""
    return _money_post(account_id, payments.record_refund)


# -- prepaid ---------------------------------------------------------------------------------


def prepaid_rows(account: Account) -> list[dict]:
    pairs = {(e.seller_id, e.currency) for e in LedgerEntry.select(
        LedgerEntry.seller, LedgerEntry.currency).where(
        (LedgerEntry.account == account.id) & (LedgerEntry.kind == "prepaid_topup")).distinct()}  # fmt: skip
    rows = []
    for seller, currency in sorted(pairs):
        left = ledger.prepaid_available(account.id, seller, currency)
        rows.append({"seller_id": seller, "currency": currency, "available_minor": left,
                     "available": format_money(left, currency)})  # fmt: skip
    return rows


@blp.route("/accounts/<int:account_id>/prepaid", methods=["GET"])
@blp.response(200, PrepaidOut)
@api_login_required
def get_prepaid(account_id):
    """Prepaid credit left per seller and currency, and the top-up invoices."""
    _, account = _account(account_id, "billing.view")
    return {"credit": prepaid_rows(account), "topups": payments.topups(account)}


@blp.route("/accounts/<int:account_id>/prepaid-topups", methods=["POST"])
@blp.arguments(payments.TopupInput)
@blp.response(201, InvoiceOut)
@api_login_required
def post_topup(data, account_id):
    """Issue a prepaid top-up invoice (from your account); paid, it becomes prepaid credit."""
    user, account = _account(account_id, "billing.view")
    return payments.create_topup(user, account, request.get_json(silent=True) or {})


# -- settings and methods --------------------------------------------------------------------


@blp.route("/accounts/<int:account_id>/billing-settings", methods=["GET"])
@blp.response(200, BillingSettingsOut)
@api_login_required
def get_settings(account_id):
    _, account = _account(account_id, "billing.view")
    return payments.settings_of(account)


@blp.route("/accounts/<int:account_id>/billing-settings", methods=["PUT"])
@blp.arguments(payments.BillingSettingsInput)
@blp.response(200, BillingSettingsOut)
@api_login_required
def put_settings(_data, account_id):
    """Billing contact, invoice delivery e-mail, payment terms (net days). The contact
    fields are the account's own (``billing.edit``); ``payment_terms_days`` is a billing
    term, set only from an account above with ``accounts.billing_terms`` (403 on your own
    account). Left out, the payment terms stay as they are; ``null`` or ``""`` is the
    default."""
    user, account = _account(account_id, "billing.view")
    return payments.update_settings(user, account, request.get_json(silent=True) or {})


@blp.route("/accounts/<int:account_id>/payment-methods", methods=["GET"])
@blp.response(200, MethodOut(many=True))
@api_login_required
def list_methods(account_id):
    _, account = _account(account_id, "billing.view")
    return payments.methods_of(account)


@blp.route("/accounts/<int:account_id>/payment-methods", methods=["POST"])
@blp.arguments(payments.MethodInput)
@blp.response(201, MethodOut)
@api_login_required
def post_method(_data, account_id):
    """A payment method DESCRIPTION; anything that looks like a card number is refused."""
    user, account = _account(account_id, "billing.view")
    return payments.add_method(user, account, request.get_json(silent=True) or {})


@blp.route("/accounts/<int:account_id>/payment-methods/<int:method_id>", methods=["DELETE"])
@blp.response(204)
@api_login_required
def delete_method(account_id, method_id):
    user, account = _account(account_id, "billing.view")
    payments.remove_method(user, account, method_id)


# -- statements and reports ------------------------------------------------------------------


FILE = {"type": "string", "format": "binary"}


def _file(data, mimetype: str, name: str) -> Response:
    return Response(data, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


def _statement(args, account_id):
    _, account = _account(account_id, "billing.view")
    start, end = _statement_period(args)
    currency = args["currency"] or None
    return account, statements.build(account, start, end, currency)


@blp.route("/accounts/<int:account_id>/statement", methods=["GET"])
@blp.arguments(StatementQuery, location="query")
@blp.response(200, StatementOut)
@api_login_required
def get_statement(args, account_id):
    """Opening balance, every transaction, closing balance per currency for ``from``..``to``
    (both days included; default: this month so far). The closing balance of a period is the
    opening balance of the period starting the next day."""
    return _json(200, _statement(args, account_id)[1])


@blp.route("/accounts/<int:account_id>/statement.csv", methods=["GET"])
@blp.arguments(StatementQuery, location="query")
@blp.response(200, FILE, content_type="text/csv")
@api_login_required
def get_statement_csv(args, account_id):
    """The statement as CSV (an opening and a closing balance row per currency)."""
    account, statement = _statement(args, account_id)
    return _file(statements.to_csv(statement), "text/csv",
                 statements.filename(account, statement, "csv"))  # fmt: skip


@blp.route("/accounts/<int:account_id>/statement.pdf", methods=["GET"])
@blp.arguments(StatementQuery, location="query")
@blp.response(200, FILE, content_type="application/pdf")
@api_login_required
def get_statement_pdf(args, account_id):
    """The statement as PDF, rendered by the enabled PDF invoice format (the invoice_pdf
    plugin); 404 while there is none."""
    statements.pdf_format_or_404()
    account, statement = _statement(args, account_id)
    return _file(statements.to_pdf(statement), "application/pdf",
                 statements.filename(account, statement, "pdf"))  # fmt: skip


def _activity(args, account_id):
    _, account = _account(account_id, "billing.view")
    start, end = reports.default_range()
    if args["from_"]:
        start = reports.parse_month(args["from_"], "from")
    if args["to"]:
        end = reports.parse_month(args["to"], "to")
    return account, reports.activity(account, start, end)


@blp.route("/accounts/<int:account_id>/activity", methods=["GET"])
@blp.arguments(ReportQuery, location="query")
@blp.response(200, ActivityOut)
@api_login_required
def get_activity(args, account_id):
    """Usage and charges by product and month (``from``/``to`` as YYYY-MM, both included;
    default: the last 12 months) and, for providers and resellers, per child account."""
    return _json(200, _activity(args, account_id)[1])


@blp.route("/accounts/<int:account_id>/activity.csv", methods=["GET"])
@blp.arguments(ReportQuery, location="query")
@blp.response(200, FILE, content_type="text/csv")
@api_login_required
def get_activity_csv(args, account_id):
    """The activity report as CSV: one row per account, month and product."""
    account, report = _activity(args, account_id)
    return _file(reports.to_csv(report), "text/csv",
                 f"activity-A{account.id}-{report['from']}-{report['to']}.csv")  # fmt: skip
