"""Billing REST API: catalog, subscriptions, usage, invoices, bill runs. All scoped through
core.rbac: objects outside the caller's subtree answer 404."""

from __future__ import annotations

import threading
from datetime import date

from flask import Response, current_app, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, pre_dump, validate, validates_schema

from core import rbac, tasks
from core.api.schemas import UtcDateTime
from core.auth import api_login_required, api_user
from core.billing import catalog
from core.billing.invoicing import lifecycle, status, storage
from core.billing.ledger import entries as ledger
from core.billing.models import (
    BillRun,
    ImmutableInvoice,
    Invoice,
    InvoiceLine,
    PricePlan,
    Product,
    Subscription,
)
from core.billing.money import canonical_decimal_text, format_money
from core.billing.periods import PeriodError, check_run_date, parse_date
from core.billing.runs import engine
from core.billing.runs import queue as billing_queue
from core.billing.runs import records as runs
from core.db import write_transaction
from core.errors import Forbidden, NotFound, ValidationFailed
from core.fields import (
    MAX_AMOUNT,
    MAX_PLACES,
    MAX_QUANTITY,
    Id,
    Price,
    Quantity,
    Text,
    check_lines_total,
)
from core.find import lists
from core.find.listing import API_HEADERS, api_answer

catalog_bp = Blueprint("billing_catalog", __name__, url_prefix="/api/v1",
                       description="Products, price plans, subscriptions, usage")  # fmt: skip
invoices_bp = Blueprint("billing_invoices", __name__, url_prefix="/api/v1",
                        description="Invoices, credit notes, bill runs")  # fmt: skip


def blueprints():
    return [catalog_bp, invoices_bp]


# -- schemas ---------------------------------------------------------------------------------


class DecimalText(fields.Field):
    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else canonical_decimal_text(value)


class ProductOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    code = fields.String()
    name = fields.String()
    unit = fields.String()
    kind = fields.String()


class PlanOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    product_id = fields.Integer()
    name = fields.String()
    currency = fields.String()
    recurring_price = DecimalText()
    usage_rate = DecimalText()
    tiers = fields.Raw(allow_none=True)


class SubscriptionOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    plan_id = fields.Integer()
    quantity = DecimalText()
    start = fields.Date()
    end = fields.Date(allow_none=True)
    external_id = fields.String(allow_none=True)
    billed_through = fields.Date(
        allow_none=True,
        metadata={
            "description": "The first day not billed yet: every day from start up to (not "
            "including) this date is invoiced, exactly once. null: never billed."
        },
    )


class LineOut(Schema):
    position = fields.Integer()
    description = fields.String()
    quantity = DecimalText()
    unit = fields.String()
    unit_price = DecimalText()
    amount_minor = fields.Integer(attribute="amount")
    product_code = fields.String()
    group = fields.String(allow_none=True)
    service_start = fields.Date(
        allow_none=True, metadata={"description": "first day this line bills"}
    )
    service_end = fields.Date(
        allow_none=True, metadata={"description": "first day after what this line bills"}
    )


class InvoiceOut(Schema):
    id = fields.Integer()
    number = fields.String(allow_none=True)
    kind = fields.String()
    status = fields.String()
    account_id = fields.Integer()
    issuer_id = fields.Integer()
    credit_for_id = fields.Integer(allow_none=True)
    period_start = fields.Date(allow_none=True)
    period_end = fields.Date(allow_none=True)
    currency = fields.String()
    subtotal_minor = fields.Integer(attribute="subtotal")
    tax_minor = fields.Integer(attribute="tax")
    total_minor = fields.Integer(attribute="total")
    total = fields.Method("_total")
    tax_rate = fields.String()
    issued_at = UtcDateTime(allow_none=True)
    due_date = fields.Date(allow_none=True)
    files = fields.Method("_files")

    def _total(self, inv):
        return format_money(inv.total, inv.currency)

    def _files(self, inv):
        if inv.status == "draft":
            return []
        return [f"/api/v1/invoices/{inv.id}/files/{code}" for code in storage.wanted_formats(inv)]


def _owed(key: str, description: str):
    return fields.Method(
        f"_{key}",
        metadata={"type": "integer", "nullable": True,
                  "description": f"{description}, in minor units (core.billing.ledger.entries."
                                 "settlement); null for drafts and credit notes, 0 when void"},
    )  # fmt: skip


class InvoiceDetail(InvoiceOut):
    lines = fields.Method("_lines")
    amount_paid_minor = _owed("amount_paid", "payments allocated to the invoice")
    credit_applied_minor = _owed(
        "credit_applied", "prepaid credit and credit notes applied to the invoice"
    )
    amount_due_minor = _owed("amount_due", "what is still owed: total - paid - credit applied")

    def _lines(self, inv):
        return LineOut(many=True).dump(inv.lines.order_by(InvoiceLine.position))

    @pre_dump
    def _settle(self, inv, **kwargs):
        inv.owed = ledger.settlement(inv) if ledger.owes(inv) else None  # read once
        return inv

    def _amount_paid(self, inv):
        return None if inv.owed is None else inv.owed["paid"]

    def _credit_applied(self, inv):
        return None if inv.owed is None else inv.owed["credit"]

    def _amount_due(self, inv):
        return None if inv.owed is None else inv.owed["due"]


class LineIn(Schema):
    description = Text(500, required=True, multiline=True)
    quantity = Quantity(signed=True, load_default="1")
    unit = Text(40, load_default="")
    unit_price = Price(signed=True, required=True)
    product_code = Text(60, load_default="", card_numbers=False)
    group = Text(200, load_default=None, allow_none=True)


_LINES = {"description": "at most 1000 lines; quantity x unit_price summed over them at most "
                         f"{MAX_AMOUNT} (before tax)"}  # fmt: skip


class DraftPatch(Schema):
    lines = fields.List(fields.Nested(LineIn), required=True,
                        validate=validate.Length(max=1000), metadata=_LINES)  # fmt: skip

    @validates_schema
    def _total_fits(self, data, **kwargs):
        check_lines_total(data.get("lines") or [])


class DraftIn(DraftPatch):
    account_id = Id(required=True)


class CreditIn(Schema):
    positions = fields.List(Id(), load_default=None)


class BillRunIn(Schema):
    date = fields.Raw(
        required=True,
        metadata={
            "description": "YYYY-MM-DD, no later than today in the instance's time zone "
            "(TIMEZONE): a later date answers 422 naming date"
        },
    )


class BillRunOut(Schema):
    id = fields.Integer()
    as_of = fields.Date()
    status = fields.String(
        metadata={
            "description": "queued, running, done, failed, or interrupted: its process died "
            "(no heartbeat for QUEUE_STALE_SECONDS); POST /bill-runs/<id>/resume continues it"
        }
    )
    total = fields.Integer()
    done = fields.Integer()
    created = fields.Integer()
    skipped = fields.Integer()
    failures = fields.Raw()
    summary = fields.Raw(allow_none=True)
    created_at = UtcDateTime()
    finished_at = UtcDateTime(allow_none=True)
    queued = fields.Boolean(allow_none=True, metadata={"description": "billed by workers"})
    pending = fields.Integer(allow_none=True, metadata={"description": "queued: items waiting"})
    running = fields.Integer(allow_none=True, metadata={"description": "queued: items billing"})
    failed = fields.Integer(allow_none=True, metadata={"description": "queued: items failed"})
    files_pending = fields.Integer(
        allow_none=True, metadata={"description": "queued: invoice files not rendered yet"}
    )
    heartbeat_at = UtcDateTime(allow_none=True, metadata={"description": "last sign of life"})


class UsageResult(Schema):
    inserted = fields.Integer()
    duplicates = fields.Integer()


# -- catalog ---------------------------------------------------------------------------------


@catalog_bp.route("/products", methods=["GET"])
@catalog_bp.response(200, ProductOut(many=True))
@api_login_required
def list_products():
    user = api_user()
    rbac.require(user, "catalog.view")
    return rbac.scoped(Product.select(), Product.account, user).order_by(Product.id)


@catalog_bp.route("/products", methods=["POST"])
@catalog_bp.arguments(catalog.ProductInput)
@catalog_bp.response(201, ProductOut)
@api_login_required
def create_product(data):
    return catalog.create_product(api_user(), data)


@catalog_bp.route("/plans", methods=["GET"])
@catalog_bp.response(200, PlanOut(many=True))
@api_login_required
def list_plans():
    user = api_user()
    rbac.require(user, "catalog.view")
    return rbac.scoped(PricePlan.select(), PricePlan.account, user).order_by(PricePlan.id)


@catalog_bp.route("/plans", methods=["POST"])
@catalog_bp.arguments(catalog.PlanInput)
@catalog_bp.response(201, PlanOut)
@api_login_required
def create_plan(data):
    return catalog.create_plan(api_user(), data)


@catalog_bp.route("/subscriptions", methods=["GET"])
@catalog_bp.arguments(lists.SubscriptionListArgs, location="query")
@catalog_bp.response(200, SubscriptionOut(many=True), headers=API_HEADERS)
@catalog_bp.alt_response(403, response="DEFAULT_ERROR", description="without the list's privilege")
@catalog_bp.alt_response(
    404, response="DEFAULT_ERROR", description="an account_id or parent_id outside your subtree"
)
@api_login_required
def list_subscriptions(args):
    """Subscriptions of your subtree, oldest first unless ``sort`` says otherwise; paged
    (``per_page`` 100 by default: before paging, every subscription came in one answer).
    Paging in the ``X-Total-Count`` and ``Link`` headers."""
    user = api_user()
    rbac.require(user, "billing.view")
    return api_answer(lists.SUBSCRIPTIONS, lists.subscriptions_query(user), args, user)


@catalog_bp.route("/subscriptions/<int:subscription_id>", methods=["GET"])
@catalog_bp.response(200, SubscriptionOut)
@api_login_required
def get_subscription(subscription_id):
    """One subscription, with ``billed_through``: what is invoiced of it so far."""
    user = api_user()
    try:  # outside the subtree: 404 before any privilege is looked at
        sub = rbac.get_scoped(Subscription, user, subscription_id, Subscription.account)
    except NotFound:
        raise NotFound(f"subscription {subscription_id} not found") from None
    rbac.require(user, "billing.view")
    return sub


@catalog_bp.route("/subscriptions", methods=["POST"])
@catalog_bp.arguments(catalog.SubscriptionInput)
@catalog_bp.response(201, SubscriptionOut)
@api_login_required
def create_subscription(data):
    return catalog.create_subscription(api_user(), data)


_USAGE = {
    "type": "object",
    "required": ["subscription_id", "quantity", "date", "external_id"],
    "properties": {
        "subscription_id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "quantity": {"type": "string", "example": "12.5",
                     "description": f"0 to {MAX_QUANTITY}, at most {MAX_PLACES} decimals"},
        "date": {"type": "string", "format": "date"},
        "external_id": {"type": "string", "minLength": 1, "maxLength": 100},
    },
}  # fmt: skip


@catalog_bp.route("/usage", methods=["POST"])
@catalog_bp.response(201, UsageResult)
@catalog_bp.doc(
    requestBody={
        "content": {
            "application/json": {"schema": {"oneOf": [_USAGE, {"type": "array", "items": _USAGE}]}}
        }
    }
)
@api_login_required
def post_usage():
    """One usage record or a list; idempotent by external_id; all or nothing."""
    user = api_user()
    rbac.require(user, "billing.edit")
    payload = request.get_json(silent=True)
    rows = payload if isinstance(payload, list) else [payload]
    if not rows or any(not isinstance(r, dict) for r in rows):
        raise ValidationFailed.field("_schema", "send a usage object or a list of them")
    good, bad = catalog.check_usage(rows, actor=user)
    for row in good:  # only the seller posts usage: the plan owner must be within the caller
        sub = Subscription.get_by_id(row["subscription"])
        if not sub.plan.account.is_within(user.account):
            raise Forbidden("usage is recorded by the account that sells the subscription")
    if bad:
        if isinstance(payload, dict):
            errors = bad[0]
        else:
            errors = {str(i): e for i, e in bad.items()}
        text = "; ".join(
            (f"row {i}: " if isinstance(payload, list) else "")
            + ", ".join(f"{k}: {' '.join(map(str, v))}" for k, v in e.items())
            for i, e in bad.items()
        )
        raise ValidationFailed(f"invalid usage — {text}; nothing recorded", errors)
    inserted, duplicates = catalog.insert_usage(good, actor=user)
    return {"inserted": inserted, "duplicates": duplicates}


# -- invoices --------------------------------------------------------------------------------


def _invoice(invoice_id) -> Invoice:
    user = api_user()
    rbac.require(user, "billing.view")
    return rbac.get_scoped(Invoice, user, invoice_id)


def _as_issuer(invoice: Invoice, code: str):
    user = api_user()
    rbac.require(user, code)
    if not invoice.issuer.is_within(user.account):
        raise Forbidden(f"only the issuer of {invoice.number or invoice.id} can do that")
    return user


@invoices_bp.route("/invoices", methods=["GET"])
@invoices_bp.arguments(lists.InvoiceListArgs, location="query")
@invoices_bp.response(200, InvoiceOut(many=True), headers=API_HEADERS)
@invoices_bp.alt_response(403, response="DEFAULT_ERROR", description="without the list's privilege")
@invoices_bp.alt_response(
    404, response="DEFAULT_ERROR", description="an account_id or parent_id outside your subtree"
)
@api_login_required
def list_invoices(args):
    """Invoices and credit notes of your subtree, newest first unless ``sort`` says
    otherwise. Paging in the ``X-Total-Count`` and ``Link`` headers."""
    user = api_user()
    rbac.require(user, "billing.view")
    return api_answer(lists.INVOICES, lists.invoices_query(user), args, user)


@invoices_bp.route("/invoices", methods=["POST"])
@invoices_bp.arguments(DraftIn)
@invoices_bp.response(201, InvoiceDetail)
@api_login_required
def create_draft(data):
    """A manual draft issued by your account to an account below it."""
    user = api_user()
    rbac.require(user, "invoices.issue")
    account = rbac.get_account(user, data["account_id"])
    if account.id == user.account_id:
        raise ValidationFailed.field("account_id", "an account does not invoice itself")
    return lifecycle.create_draft(user, account, user.account, data["lines"])


@invoices_bp.route("/invoices/<int:invoice_id>", methods=["GET"])
@invoices_bp.response(200, InvoiceDetail)
@api_login_required
def get_invoice(invoice_id):
    return _invoice(invoice_id)


class InvoiceDocumentOut(Schema):
    """The invoice as every format renders it (``core/billing/invoicing/documents.py`` lists each key):
    for an issued invoice the parties, payment instructions and tax decision kept at issue."""

    kind = fields.String()
    number = fields.String()
    status = fields.String()
    currency = fields.String()
    language = fields.String()
    issue_date = fields.String(allow_none=True)
    due_date = fields.String(allow_none=True)
    period_start = fields.String(allow_none=True)
    period_end = fields.String(allow_none=True, metadata={"description": "exclusive"})
    supply_period = fields.Dict(allow_none=True, metadata={"description": "{start, end} inclusive"})
    issuer = fields.Dict(metadata={"description": "legal name, address, country, VAT ID, ..."})
    recipient = fields.Dict()
    payment = fields.Dict(allow_none=True, metadata={"description": "null on credit notes"})
    lines = fields.List(fields.Dict())
    groups = fields.List(fields.Dict())
    subtotal = fields.String()
    tax = fields.String()
    total = fields.String()
    subtotal_minor = fields.Integer()
    tax_minor = fields.Integer()
    total_minor = fields.Integer()
    tax_rate = fields.String()
    tax_breakdown = fields.List(fields.Dict())
    reverse_charge = fields.Boolean()
    reverse_charge_statement = fields.String()
    amount_paid = fields.String()
    credit_applied = fields.String()
    amount_due = fields.String()
    amount_paid_minor = fields.Integer()
    credit_applied_minor = fields.Integer()
    amount_due_minor = fields.Integer()
    credit_note_for = fields.String(allow_none=True)
    notes = fields.String()


@invoices_bp.route("/invoices/<int:invoice_id>/document", methods=["GET"])
@invoices_bp.response(200, InvoiceDocumentOut)
@invoices_bp.alt_response(404, description="No such invoice in your subtree")
@api_login_required
def get_invoice_document(invoice_id):
    """What the invoice says (EU VAT Directive article 226 items, what is paid and due), as
    plain data: the same document the RAW, PDF and UBL files are rendered from."""
    from core.billing.invoicing import documents

    return documents.build(_invoice(invoice_id))


@invoices_bp.route("/invoices/<int:invoice_id>", methods=["PATCH", "PUT"])
@invoices_bp.arguments(DraftPatch)
@invoices_bp.response(200, InvoiceDetail)
@api_login_required
def update_invoice(data, invoice_id):
    """Replace a draft's lines; an issued invoice answers 409 (issue a credit note)."""
    invoice = _invoice(invoice_id)
    user = _as_issuer(invoice, "invoices.issue")
    if invoice.status != "draft":
        raise ImmutableInvoice(
            f"invoice {invoice.number} is {invoice.status} and immutable; issue a credit note"
        )
    with write_transaction():
        for line in list(invoice.lines):
            line.delete_instance()
        for line in data["lines"]:
            lifecycle.add_line(invoice, line)
        lifecycle.recompute_totals(invoice)
        invoice.save()
        lifecycle.audit.record(user, "invoice.update", invoice, account=invoice.account_id,
                               after=status.snapshot(invoice))  # fmt: skip
    return invoice


@invoices_bp.route("/invoices/<int:invoice_id>", methods=["DELETE"])
@invoices_bp.response(204)
@api_login_required
def delete_invoice(invoice_id):
    """Delete a draft (an issued invoice answers 409: void it or issue a credit note)."""
    invoice = _invoice(invoice_id)
    user = _as_issuer(invoice, "invoices.issue")
    with write_transaction():
        before = status.snapshot(invoice)
        # not recursive: that would also try to update the (append-only) ledger rows that
        # could point at it; a draft's lines and files go with it (ON DELETE CASCADE)
        invoice.delete_instance()
        lifecycle.audit.record(user, "invoice.delete", object_type="invoice",
                               object_id=invoice_id, account=invoice.account_id,
                               before=before)  # fmt: skip


@invoices_bp.route("/invoices/<int:invoice_id>/issue", methods=["POST"])
@invoices_bp.response(200, InvoiceDetail)
@api_login_required
def issue_invoice(invoice_id):
    invoice = _invoice(invoice_id)
    return lifecycle.issue(invoice, _as_issuer(invoice, "invoices.issue"))


@invoices_bp.route("/invoices/<int:invoice_id>/void", methods=["POST"])
@invoices_bp.response(200, InvoiceDetail)
@api_login_required
def void_invoice(invoice_id):
    invoice = _invoice(invoice_id)
    return lifecycle.void(invoice, _as_issuer(invoice, "invoices.issue"))


@invoices_bp.route("/invoices/<int:invoice_id>/pay", methods=["POST"])
@invoices_bp.response(200, InvoiceDetail)
@api_login_required
def pay_invoice(invoice_id):
    invoice = _invoice(invoice_id)
    return lifecycle.mark_paid(invoice, _as_issuer(invoice, "payments.record"))


@invoices_bp.route("/invoices/<int:invoice_id>/credit-note", methods=["POST"])
@invoices_bp.arguments(CreditIn)
@invoices_bp.response(201, InvoiceDetail)
@api_login_required
def credit_invoice(data, invoice_id):
    """A credit note for the whole invoice or the lines at ``positions``."""
    invoice = _invoice(invoice_id)
    user = _as_issuer(invoice, "invoices.issue")
    return lifecycle.credit_note(invoice, user, data["positions"])


@invoices_bp.route("/invoices/<int:invoice_id>/files/<fmt>", methods=["GET"])
@invoices_bp.response(200, content_type="application/octet-stream")
@api_login_required
def download(invoice_id, fmt):
    """The stored file of one format (RAW, PDF, ...)."""
    return send_invoice_file(_invoice(invoice_id), fmt)


def send_invoice_file(invoice: Invoice, fmt: str) -> Response:
    data, format_, _ = storage.file_for(invoice, fmt)
    name = f"{invoice.number or invoice.id}.{format_.extension}"
    return Response(
        data,
        mimetype=format_.media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# -- bill runs -------------------------------------------------------------------------------


def start_bill_run(user, as_of: date) -> BillRun:
    """Start a bill run (scope: the user's subtree): queued for the workers when
    BILLHIVE_QUEUE is sqlite or redis, else in a background thread of this process."""
    rbac.require(user, "billruns.run")
    try:  # every holder of billruns.run, resellers too: never for a day not ended yet
        as_of = check_run_date(as_of, "date")
    except PeriodError as exc:
        raise ValidationFailed.field("date", str(exc)) from None
    run = BillRun.create(as_of=as_of, status="queued", scope=user.account_id, started_by=user)
    if tasks.queued_by_default(current_app.config):
        billing_queue.submit(run)
        return billing_queue.live(run)
    scope_id, user_id = user.account_id, user.id

    def work():
        from core.models import Account, User

        with runs.beating(run.id):  # a process killed mid-run leaves it "interrupted"
            engine.run(as_of, actor=User.get_by_id(user_id),
                       scope=Account.get_by_id(scope_id), bill_run=run)  # fmt: skip

    _in_background(run.id, work)
    return run


def _in_background(run_id: int, work) -> None:
    """Bill in a thread of this process (``inline`` mode), with its own connection."""
    app = current_app._get_current_object()

    def target():
        database = app.extensions["billhive"].database
        with app.app_context(), database.connection_context():
            app.extensions["billhive"].host.refresh()
            try:
                work()
            except Exception:  # noqa: BLE001 - recorded on the BillRun row by the run
                current_app.logger.exception("bill run %s failed", run_id)

    threading.Thread(target=target, name=f"bill-run-{run_id}", daemon=True).start()


def scoped_run(user, run_id) -> BillRun:
    """The bill run ``run_id`` within the user's subtree (404 outside it, before any
    privilege is looked at), for a holder of ``billruns.run``."""
    try:
        run = rbac.get_scoped(BillRun, user, run_id, BillRun.scope)
    except NotFound:
        raise NotFound(f"bill run {run_id} not found") from None
    rbac.require(user, "billruns.run")
    return run


def resume_bill_run(user, run: BillRun) -> BillRun:
    """Resume an interrupted run in a thread of this process (see core.billing.runs.records): the
    accounts it had not billed are billed, nothing twice. 409 unless it is interrupted."""
    rbac.require(user, "billruns.run")
    run = runs.claim(run)
    user_id = user.id

    def work():
        from core.models import User

        runs.continue_run(BillRun.get_by_id(run.id), actor=User.get_by_id(user_id))

    _in_background(run.id, work)
    return billing_queue.live(run)


@invoices_bp.route("/bill-runs", methods=["POST"])
@invoices_bp.arguments(BillRunIn)
@invoices_bp.response(202, BillRunOut)
@api_login_required
def post_bill_run(data):
    """Start a bill run for a date; poll GET /bill-runs/<id> for progress."""
    try:
        as_of = parse_date(data["date"], "date")
    except PeriodError as exc:
        raise ValidationFailed.field("date", str(exc)) from None
    return start_bill_run(api_user(), as_of)


@invoices_bp.route("/bill-runs", methods=["GET"])
@invoices_bp.response(200, BillRunOut(many=True))
@api_login_required
def list_bill_runs():
    user = api_user()
    rbac.require(user, "billruns.run")
    runs = rbac.scoped(BillRun.select(), BillRun.scope, user).order_by(BillRun.id.desc()).limit(50)
    return [billing_queue.live(run) for run in runs]


@invoices_bp.route("/bill-runs/<int:run_id>", methods=["GET"])
@invoices_bp.response(200, BillRunOut)
@api_login_required
def get_bill_run(run_id):
    """A bill run and its progress. ``status`` is ``interrupted`` for a run whose process
    died (no heartbeat for QUEUE_STALE_SECONDS): resume it with POST .../resume."""
    return billing_queue.live(scoped_run(api_user(), run_id))


@invoices_bp.route("/bill-runs/<int:run_id>/resume", methods=["POST"])
@invoices_bp.response(202, BillRunOut)
@api_login_required
def resume_bill_run_api(run_id):
    """Resume an interrupted bill run: the accounts it had not billed are billed in this
    process, nothing twice (409 when the run is not interrupted); poll GET /bill-runs/<id>."""
    user = api_user()
    return resume_bill_run(user, scoped_run(user, run_id))
