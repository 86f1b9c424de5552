"""The Billing page of an account (panel): My account, Statements, Payment settings, Prepaid
invoices, Payment methods, Transactions, Activity reports. Plugins add sub-tabs with
``MenuItem(..., where="billing")`` (the endpoint receives ``account_id``), e.g. Billing units
and Call recording.

The core's sub-tabs need "Edit Billing" (``billing.edit``) on an account in the caller's
subtree (404 outside it, 403 without the privilege); recording money also needs
``payments.record``, issuing a top-up ``invoices.issue``. A plugin's sub-tab is shown to the
holders of its own privileges, as the contact-center document says of Billing units ("one or
both of the View Billing unit and Edit Billing unit privileges"): the account's Billing tab
(:func:`index`) is shown to whoever sees at least one sub-tab and opens the first of them, so
a user holding View Billing unit alone reaches the Billing units sub-tab and sees no other.
Forms carry the CSRF token and show field errors.
"""

from __future__ import annotations

from datetime import date

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from core import rbac
from core.accounts import can_edit_billing_terms
from core.billing.invoicing.parties import DEFAULT_TERMS_DAYS
from core.billing.ledger import entries as ledger
from core.billing.ledger import payments, reports, statements
from core.billing.models import LEDGER_KINDS, LedgerEntry
from core.billing.money import format_money
from core.billing.periods import PeriodError, parse_date
from core.billing.web.ledger_api import prepaid_rows
from core.current import host
from core.errors import BillhiveError, NotFound, ValidationFailed
from core.models import Account
from core.panel.forms import form_errors

blueprint = Blueprint("billing_account", __name__, template_folder="templates")
TAB = "billing_account.index"  # the account's Billing tab (core/builtin.py)
PAGE = 100

SUBTABS = [
    ("my_account", "My account", "billing_account.my_account", 10),
    ("statements", "Statements", "billing_account.statements_page", 20),
    ("settings", "Payment settings", "billing_account.settings_page", 30),
    ("prepaid", "Prepaid invoices", "billing_account.prepaid_page", 50),
    ("methods", "Payment methods", "billing_account.methods_page", 60),
    ("transactions", "Transactions", "billing_account.transactions_page", 70),
    ("dunning", "Dunning", "billing_dunning.dunning_page", 75),  # core.billing.web.dunning_views
    ("activity", "Activity reports", "billing_account.activity_page", 80),
]


#: What the Billing page's forms call their fields (their labels), for their messages.
LABELS = {
    "from": "From",
    "to": "To",
    "currency": "Currency",
    "contact_name": "Name",
    "contact_email": "E-mail",
    "contact_phone": "Phone",
    "invoice_email": "Invoice delivery e-mail",
    "payment_terms_days": "Payment terms",
    "amount": "Amount",
    "type": "Type",
    "description": "Description",
    "date": "Received on",
    "reference": "Reference",
    "method": "Method",
    "payee_id": "Paid to",
    "invoice_ids": "Invoices",
}
REFUND_LABELS = LABELS | {"payee_id": "Paid by"}


def _errors(exc: BillhiveError, labels: dict = LABELS) -> dict:
    return form_errors(exc, labels)


def subtabs(account: Account) -> list[tuple[str, str, str]]:
    """``[(key, label, href)]`` the current user sees: the core's tabs (with Edit Billing) and
    those plugins add (``where="billing"``, each shown to the holders of its privileges)."""
    items = []
    if rbac.has(current_user, "billing.edit") and account.is_within(current_user.account):
        items = [(order, key, label, url_for(endpoint, account_id=account.id))
                 for key, label, endpoint, order in SUBTABS]  # fmt: skip
    for item in host().menu_items("billing"):
        if not item.visible_with(lambda code: rbac.has(current_user, code)):
            continue
        if rbac.level_of(account) not in item.levels:
            continue
        items.append((item.order, item.endpoint, item.label,
                      url_for(item.endpoint, account_id=account.id)))  # fmt: skip
    return [(key, label, href) for _, key, label, href in sorted(items, key=lambda i: i[0])]


def page_visible(account: Account) -> bool:
    """Whether the current user sees the account's Billing tab: any of its sub-tabs."""
    return account.is_within(current_user.account) and bool(subtabs(account))


@blueprint.route("/accounts/<int:account_id>/billing")
@login_required
def index(account_id):
    """The account's Billing tab: the first sub-tab the user sees (My account with Edit
    Billing, Billing units with a unit privilege alone); 403 when none."""
    account = rbac.get_account(current_user, account_id)
    tabs = subtabs(account)
    if not tabs:
        rbac.require(current_user, "billing.edit", account)  # says which privilege is missing
    return redirect(tabs[0][2])


def _account(account_id) -> Account:
    account = rbac.get_account(current_user, account_id)
    rbac.require(current_user, "billing.edit", account)
    return account


def _render(template: str, account: Account, sub: str, status: int = 200, **extra):
    return render_template(
        f"billing/account/{template}",
        account=account,
        tab=TAB,
        sub=sub,
        subtabs=subtabs(account),
        money=format_money,
        today=date.today(),
        **extra,
    ), status


def _can(code: str, account: Account | None = None) -> bool:
    return rbac.has(current_user, code) and (account is None or
                                             account.is_within(current_user.account))  # fmt: skip


def sellers_for(account: Account) -> list[Account]:
    """Accounts above ``account`` whose money the current user records (payee choices)."""
    ids = [int(part) for part in account.path.strip("/").split("/") if part]
    above = [i for i in ids if i != account.id]
    if not above:
        return []
    rows = Account.select().where(Account.id.in_(above)).order_by(Account.path.desc())
    return [a for a in rows if a.is_within(current_user.account)]


# -- My account ------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/my-account")
@login_required
def my_account(account_id):
    account = _account(account_id)
    opened = ledger.open_invoices(account)
    recent = list(LedgerEntry.select().where(LedgerEntry.account == account.id)
                  .order_by(LedgerEntry.occurred_on.desc(), LedgerEntry.id.desc()).limit(10))  # fmt: skip
    labels = statements.describe(recent)
    return _render("my_account.html", account, "my_account", summary=ledger.summary(account),
                   opened=opened, recent=recent, labels=labels,
                   settings=payments.settings_of(account))  # fmt: skip


# -- Statements ------------------------------------------------------------------------------


def _statement_args(account: Account):
    today = date.today()
    values = {
        "from": request.args.get("from") or today.replace(day=1).isoformat(),
        "to": request.args.get("to") or today.isoformat(),
        "currency": (request.args.get("currency") or "").upper(),
    }
    start = parse_date(values["from"], "from")
    end = parse_date(values["to"], "to")
    return values, start, end


@blueprint.route("/accounts/<int:account_id>/billing/statements")
@login_required
def statements_page(account_id):
    account = _account(account_id)
    errors, statement = {}, None
    values = {"from": request.args.get("from", ""), "to": request.args.get("to", ""),
              "currency": request.args.get("currency", "")}  # fmt: skip
    try:
        values, start, end = _statement_args(account)
        statement = statements.build(account, start, end, values["currency"] or None)
    except PeriodError as exc:
        errors = {exc.field or "from": exc.message}
    except BillhiveError as exc:
        errors = _errors(exc)
    return _render("statements.html", account, "statements", 422 if errors else 200,
                   statement=statement, values=values, errors=errors,
                   pdf=statements.pdf_format() is not None)  # fmt: skip


def _statement_file(account_id, extension: str):
    account = _account(account_id)
    try:
        values, start, end = _statement_args(account)
    except PeriodError as exc:
        raise ValidationFailed.field(exc.field or "from", exc.message) from None
    statement = statements.build(account, start, end, values["currency"] or None)
    if extension == "pdf":
        data, mimetype = statements.to_pdf(statement), "application/pdf"
    else:
        data, mimetype = statements.to_csv(statement), "text/csv"
    name = statements.filename(account, statement, extension)
    return Response(data, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@blueprint.route("/accounts/<int:account_id>/billing/statements.csv")
@login_required
def statement_csv(account_id):
    return _statement_file(account_id, "csv")


@blueprint.route("/accounts/<int:account_id>/billing/statements.pdf")
@login_required
def statement_pdf(account_id):
    """404 while no PDF format is enabled (the invoice_pdf plugin)."""
    return _statement_file(account_id, "pdf")


# -- Payment settings ------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/payment-settings", methods=["GET", "POST"])
@login_required
def settings_page(account_id):
    account = _account(account_id)
    settings = payments.settings_of(account)
    values = {
        "contact_name": settings.contact_name,
        "contact_email": settings.contact_email,
        "contact_phone": settings.contact_phone,
        "invoice_email": settings.invoice_email,
        "payment_terms_days": "" if settings.payment_terms_days is None
        else settings.payment_terms_days,
    }  # fmt: skip
    # payment terms are a billing term: read-only unless set from an account above
    terms_editable = can_edit_billing_terms(current_user, account)
    errors = {}
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in values if k in request.form
                  or k != "payment_terms_days"}  # fmt: skip
        try:
            payments.update_settings(current_user, account, values)
        except BillhiveError as exc:
            errors = _errors(exc)
        else:
            flash("Payment settings saved.")
            return redirect(url_for("billing_account.settings_page", account_id=account.id))
    return _render("settings.html", account, "settings", 422 if errors else 200, values=values,
                   errors=errors, default_terms=DEFAULT_TERMS_DAYS, settings=settings,
                   terms_editable=terms_editable)  # fmt: skip


# -- Prepaid invoices ------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/prepaid", methods=["GET", "POST"])
@login_required
def prepaid_page(account_id):
    account = _account(account_id)
    errors, values = {}, {"amount": "", "currency": account.currency}
    can_issue = _can("invoices.issue") and account.id != current_user.account_id
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in ("amount", "currency")}
        try:
            invoice = payments.create_topup(current_user, account, values)
        except BillhiveError as exc:
            errors = _errors(exc)
        else:
            flash(f"Top-up invoice {invoice.number} issued: "
                  f"{format_money(invoice.total, invoice.currency)}.")  # fmt: skip
            return redirect(url_for("billing_account.prepaid_page", account_id=account.id))
    topups = payments.topups(account)
    due = ledger.amounts_due(topups)
    sellers = {a.id: a for a in Account.select().where(
        Account.id.in_({t.issuer_id for t in topups} | {r["seller_id"] for r in
                                                         prepaid_rows(account)}))}  # fmt: skip
    return _render("prepaid.html", account, "prepaid", 422 if errors else 200,
                   credit=prepaid_rows(account), topups=topups, due=due, sellers=sellers,
                   values=values, errors=errors, can_issue=can_issue)  # fmt: skip


# -- Payment methods -------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/payment-methods", methods=["GET", "POST"])
@login_required
def methods_page(account_id):
    account = _account(account_id)
    errors, values = {}, {"type": "card", "description": "", "is_default": False}
    if request.method == "POST":
        values = {"type": request.form.get("type", ""),
                  "description": request.form.get("description", ""),
                  "is_default": bool(request.form.get("is_default"))}  # fmt: skip
        try:
            payments.add_method(current_user, account, values)
        except BillhiveError as exc:
            errors = _errors(exc)
            values["description"] = ""  # never echo what may be a card number
        else:
            flash("Payment method added.")
            return redirect(url_for("billing_account.methods_page", account_id=account.id))
    return _render("methods.html", account, "methods", 422 if errors else 200,
                   methods=payments.methods_of(account), values=values, errors=errors,
                   types=payments.METHOD_TYPES)  # fmt: skip


@blueprint.route("/accounts/<int:account_id>/billing/payment-methods/<int:method_id>/delete",
                 methods=["POST"])  # fmt: skip
@login_required
def delete_method(account_id, method_id):
    account = _account(account_id)
    try:
        payments.remove_method(current_user, account, method_id)
        flash("Payment method removed.")
    except NotFound:
        raise  # not the account's: 404, as if it did not exist
    except BillhiveError as exc:
        flash(exc.message, "error")
    return redirect(url_for("billing_account.methods_page", account_id=account.id))


def _filled(values: dict) -> dict:
    """Form values without the empty ones, so the service's defaults apply."""
    return {k: v for k, v in values.items() if v != ""}


# -- Transactions ----------------------------------------------------------------------------


def _transactions(account: Account, status: int = 200, errors=None, values=None,
                  refund_errors=None, refund_values=None):  # fmt: skip
    kind = request.args.get("kind") or ""
    currency = (request.args.get("currency") or "").upper()
    page = request.args.get("page", 1, type=int)  # 1 unless a number (not "²", not 5000 digits)
    page = page if 0 < page <= 1_000_000 else 1
    query = LedgerEntry.select().where(LedgerEntry.account == account.id)
    if kind in LEDGER_KINDS:
        query = query.where(LedgerEntry.kind == kind)
    if currency:
        query = query.where(LedgerEntry.currency == currency)
    entries = list(query.order_by(LedgerEntry.occurred_on.desc(), LedgerEntry.id.desc())
                   .paginate(page, PAGE))  # fmt: skip
    reversed_ids = {e.reverses_id for e in LedgerEntry.select(LedgerEntry.reverses).where(
        (LedgerEntry.account == account.id) & LedgerEntry.reverses.is_null(False))}  # fmt: skip
    sellers = sellers_for(account)
    can_record = _can("payments.record") and bool(sellers)
    return _render(
        "transactions.html", account, "transactions", status,
        entries=entries, labels=statements.describe(entries), reversed_ids=reversed_ids,
        kinds=LEDGER_KINDS, kind=kind, currency=currency, page=page,
        more=len(entries) == PAGE, opened=ledger.open_invoices(account), sellers=sellers,
        can_record=can_record, channels=payments.PAYMENT_CHANNELS,
        errors=errors or {}, values=values or {"currency": account.currency, "method":
                                                "bank_transfer", "date": date.today().isoformat()},
        refund_errors=refund_errors or {}, refund_values=refund_values or {
            "currency": account.currency, "method": "bank_transfer"},
        credit={s.id: ledger.unallocated_credit(account, s, account.currency) for s in sellers},
    )  # fmt: skip


@blueprint.route("/accounts/<int:account_id>/billing/transactions", methods=["GET"])
@login_required
def transactions_page(account_id):
    return _transactions(_account(account_id))


@blueprint.route("/accounts/<int:account_id>/billing/transactions/payment", methods=["POST"])
@login_required
def record_payment(account_id):
    account = _account(account_id)
    form = request.form
    values = {k: form.get(k, "") for k in ("amount", "currency", "date", "method", "reference",
                                            "payee_id")}  # fmt: skip
    payload = {**_filled(values), "payee_id": int(values["payee_id"]) if values["payee_id"].isdigit()
               else None,
               "invoice_ids": [int(i) for i in form.getlist("invoice_ids") if i.isdigit()]
               or None}  # fmt: skip
    try:
        payment = payments.record_payment(current_user, account, payload)
    except BillhiveError as exc:
        return _transactions(account, exc.status if exc.status != 400 else 422, _errors(exc),
                             values)  # fmt: skip
    paid = [a["number"] for a in payments.allocations_of(payment) if a.get("number")]
    left = payments.unallocated_of(payment)
    message = f"Payment of {format_money(payment.amount, payment.currency)} recorded"
    if paid:
        message += f", allocated to {', '.join(paid)}"
    if left:
        message += f"; {format_money(left, payment.currency)} is credit"
    flash(message + ".")
    return redirect(url_for("billing_account.transactions_page", account_id=account.id))


@blueprint.route("/accounts/<int:account_id>/billing/transactions/refund", methods=["POST"])
@login_required
def record_refund(account_id):
    account = _account(account_id)
    values = {k: request.form.get(k, "") for k in ("amount", "currency", "date", "method",
                                                    "reference", "payee_id")}  # fmt: skip
    payload = {**_filled(values), "payee_id": int(values["payee_id"]) if values["payee_id"].isdigit()
               else None}  # fmt: skip
    try:
        refund = payments.record_refund(current_user, account, payload)
    except BillhiveError as exc:
        return _transactions(account, exc.status if exc.status != 400 else 422,
                             refund_errors=_errors(exc, REFUND_LABELS), refund_values=values)  # fmt: skip
    flash(f"Refund of {format_money(refund.amount, refund.currency)} recorded.")
    return redirect(url_for("billing_account.transactions_page", account_id=account.id))


@blueprint.route("/accounts/<int:account_id>/billing/transactions/<int:entry_id>/reverse",
                 methods=["POST"])  # fmt: skip
@login_required
def reverse(account_id, entry_id):
    account = _account(account_id)
    try:
        payments.reverse_entry(current_user, account, entry_id, request.form.get("memo", ""))
        flash("Reversal posted.")
    except NotFound:
        raise  # not the account's: 404, as if it did not exist
    except BillhiveError as exc:
        flash(exc.message, "error")
    return redirect(url_for("billing_account.transactions_page", account_id=account.id))


# -- Activity reports ------------------------------------------------------------------------


def _report_args():
    start, end = reports.default_range()
    values = {"from": request.args.get("from") or reports.month_key(start),
              "to": request.args.get("to") or reports.month_key(end)}  # fmt: skip
    return (
        values,
        reports.parse_month(values["from"], "from"),
        reports.parse_month(values["to"], "to"),
    )


@blueprint.route("/accounts/<int:account_id>/billing/activity")
@login_required
def activity_page(account_id):
    account = _account(account_id)
    errors, report, charts = {}, None, []
    values = {"from": request.args.get("from", ""), "to": request.args.get("to", "")}
    try:
        values, start, end = _report_args()
        report = reports.activity(account, start, end)
        charts = [
            (f"Charges per month ({currency})", reports.bar_chart(points, currency))
            for currency, points in report["by_month"].items()
        ] + [
            (f"Charges to child accounts per month ({currency})",
             reports.bar_chart(points, currency))
            for currency, points in report["children_by_month"].items()
        ]  # fmt: skip
    except BillhiveError as exc:
        errors = _errors(exc)
    return _render("activity.html", account, "activity", 422 if errors else 200,
                   report=report, charts=charts, values=values, errors=errors)  # fmt: skip


@blueprint.route("/accounts/<int:account_id>/billing/activity.csv")
@login_required
def activity_csv(account_id):
    account = _account(account_id)
    values, start, end = _report_args()
    report = reports.activity(account, start, end)
    name = f"activity-A{account.id}-{report['from']}-{report['to']}.csv"
    return Response(reports.to_csv(report), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
