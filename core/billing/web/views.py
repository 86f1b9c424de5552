"""Billing pages of the panel: catalog, subscriptions, invoices, bill runs. Every handler asks
the same services as the API, scoped through core.rbac."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from core import clock, rbac
from core.billing import catalog
from core.billing.invoicing import documents, lifecycle, storage
from core.billing.ledger import entries as ledger
from core.billing.models import (
    BillRun,
    Invoice,
    InvoiceLine,
    PricePlan,
    Product,
)
from core.billing.periods import PeriodError, check_run_date
from core.billing.runs import queue as billing_queue
from core.billing.web.api import resume_bill_run, scoped_run, send_invoice_file, start_bill_run
from core.errors import BillhiveError, Forbidden
from core.find import lists
from core.find.listing import panel_list
from core.find.views import account_names
from core.mail.messages import reminder_status
from core.models import Account
from core.panel.forms import form_errors

blueprint = Blueprint("billing", __name__, url_prefix="/billing", template_folder="templates")

PICK_MAX = 500  # accounts offered in a form's list; past that, the form asks for the id


#: What each form calls its fields (the labels of its template), for its messages.
PRODUCT_LABELS = {"code": "Code", "name": "Name", "unit": "Unit", "kind": "Kind"}
PLAN_LABELS = {
    "product_id": "Product",
    "name": "Plan name",
    "currency": "Currency",
    "recurring_price": "Recurring price per period",
    "usage_rate": "Usage rate per unit",
    "tiers": "Volume tiers",
}
SUBSCRIPTION_LABELS = {
    "account_id": "Account",
    "plan_id": "Price plan",
    "quantity": "Quantity",
    "start": "Start",
    "end": "End",
}


# -- catalog ---------------------------------------------------------------------------------


@blueprint.route("/catalog", methods=["GET", "POST"])
@login_required
def catalog_page():
    rbac.require(current_user, "catalog.view")
    errors, values, status = {}, {}, 200
    if request.method == "POST":
        values = request.form.to_dict()
        try:
            if values.get("form") == "product":
                catalog.create_product(current_user, {k: values.get(k, "") for k in
                                                      ("code", "name", "unit", "kind")})  # fmt: skip
                flash(f"Product {values.get('code')} created.")
            else:
                tiers = None
                if values.get("tiers", "").strip():
                    tiers = []
                    for part in values["tiers"].split(";"):
                        up_to, _, price = part.partition(":")
                        up = up_to.strip()
                        tiers.append([None if up in ("", "*") else up, price.strip()])
                catalog.create_plan(current_user, {
                    "product_id": values.get("product_id") or 0, "name": values.get("name", ""),
                    "currency": values.get("currency", ""),
                    "recurring_price": values.get("recurring_price") or "0",
                    "usage_rate": values.get("usage_rate") or "0", "tiers": tiers})  # fmt: skip
                flash(f"Price plan {values.get('name')} created.")
            return redirect(url_for("billing.catalog_page"))
        except BillhiveError as exc:
            labels = PRODUCT_LABELS if values.get("form") == "product" else PLAN_LABELS
            errors, status = form_errors(exc, labels), exc.status
    products = rbac.scoped(Product.select(), Product.account, current_user).order_by(Product.id)
    plans = rbac.scoped(PricePlan.select(), PricePlan.account, current_user).order_by(PricePlan.id)
    return render_template("billing/catalog.html", products=list(products), plans=list(plans),
                           errors=errors, values=values), status  # fmt: skip


@blueprint.route("/subscriptions", methods=["GET", "POST"])
@login_required
def subscriptions_page():
    rbac.require(current_user, "billing.view")
    errors, values, status = {}, {}, 200
    if request.method == "POST":
        values = request.form.to_dict()
        try:
            catalog.create_subscription(current_user, {
                "account_id": values.get("account_id") or 0, "plan_id": values.get("plan_id") or 0,
                "quantity": values.get("quantity") or "1", "start": values.get("start", ""),
                "end": values.get("end") or None})  # fmt: skip
            flash("Subscription created.")
            return redirect(url_for("billing.subscriptions_page"))
        except BillhiveError as exc:
            errors, status = form_errors(exc, SUBSCRIPTION_LABELS), exc.status
    page, sent, error = panel_list(lists.SUBSCRIPTIONS, lists.subscriptions_query(current_user),
                                   current_user, request.args)  # fmt: skip
    if error and status == 200:
        status = 422
    plans = rbac.scoped(PricePlan.select(), PricePlan.account, current_user)
    # the new subscription's account: a list to pick from, or its id past PICK_MAX accounts
    accounts = rbac.visible_accounts(current_user).where(Account.id != current_user.account_id)
    accounts = list(accounts.order_by(Account.path).limit(PICK_MAX + 1))
    return render_template("billing/subscriptions.html", page=page, sent=sent, error=error,
                           names=account_names({s.account_id for s in page.items}),
                           page_plans=_plans_of(page.items),
                           plans=list(plans), accounts=accounts, pick_max=PICK_MAX,
                           errors=errors, values=values), status  # fmt: skip


def _plans_of(subscriptions) -> dict:
    """The price plans (with their products) of one page of subscriptions, in one query."""
    ids = {s.plan_id for s in subscriptions}
    if not ids:
        return {}
    query = PricePlan.select(PricePlan, Product).join(Product).where(PricePlan.id.in_(ids))
    return {p.id: p for p in query}


# -- invoices --------------------------------------------------------------------------------


@blueprint.route("/invoices")
@login_required
def invoices_page():
    """Invoices of the caller's subtree: search by number, filters, sort, pages (core.find)."""
    rbac.require(current_user, "billing.view")
    page, sent, error = panel_list(lists.INVOICES, lists.invoices_query(current_user),
                                   current_user, request.args)  # fmt: skip
    account = None
    if sent.get("account_id") and not error:
        account = rbac.get_account(current_user, sent["account_id"])
    ids = {i.account_id for i in page.items} | {i.issuer_id for i in page.items}
    return render_template("billing/invoices.html", page=page, sent=sent, error=error,
                           account=account, names=account_names(ids),
                           statuses=lists.INVOICE_STATUSES, kinds=lists.INVOICE_KINDS), (
        422 if error else 200)  # fmt: skip


def _invoice(invoice_id) -> Invoice:
    rbac.require(current_user, "billing.view")
    return rbac.get_scoped(Invoice, current_user, invoice_id)


@blueprint.route("/invoices/<int:invoice_id>")
@login_required
def invoice_page(invoice_id):
    invoice = _invoice(invoice_id)
    lines = list(invoice.lines.order_by(InvoiceLine.position))
    is_issuer = invoice.issuer.is_within(current_user.account)
    from core.billing.ledger import dunning

    return render_template("billing/invoice.html", invoice=invoice, lines=lines,
                           formats=storage.wanted_formats(invoice), is_issuer=is_issuer,
                           credit_notes=list(invoice.credit_notes),
                           dunning_steps=dunning.steps_of(invoice),
                           dunning_titles=dunning.TITLES,
                           dunning_status=dunning.step_status,
                           dunning_mail=reminder_status,
                           owed=ledger.settlement(invoice) if ledger.owes(invoice) else None,
                           # the parties, supply, tax and payment as the PDF reads them (kept at
                           # issue: core.billing.invoicing.parties), so page and PDF never disagree
                           doc=documents.build(invoice))  # fmt: skip


@blueprint.route("/invoices/<int:invoice_id>/files/<fmt>")
@login_required
def invoice_file(invoice_id, fmt):
    return send_invoice_file(_invoice(invoice_id), fmt)


@blueprint.route("/invoices/<int:invoice_id>/<action>", methods=["POST"])
@login_required
def invoice_action(invoice_id, action):
    invoice = _invoice(invoice_id)
    privilege = "payments.record" if action == "pay" else "invoices.issue"
    try:
        rbac.require(current_user, privilege)
        if not invoice.issuer.is_within(current_user.account):
            raise Forbidden("only the issuer can do that")
        if action == "issue":
            lifecycle.issue(invoice, current_user)
        elif action == "void":
            lifecycle.void(invoice, current_user)
        elif action == "pay":
            lifecycle.mark_paid(invoice, current_user)
        elif action == "credit":
            note = lifecycle.credit_note(invoice, current_user)
            flash(f"Credit note {note.number} issued.")
            return redirect(url_for("billing.invoice_page", invoice_id=note.id))
        else:
            return redirect(url_for("billing.invoice_page", invoice_id=invoice.id))
        flash(f"Invoice {invoice.number or invoice.id}: {action} done.")
    except BillhiveError as exc:
        flash(exc.message, "error")
    return redirect(url_for("billing.invoice_page", invoice_id=invoice.id))


# -- bill runs -------------------------------------------------------------------------------


def _run_json(run: BillRun) -> dict:
    run = billing_queue.live(run)  # a queued run counts its items
    return {"id": run.id, "as_of": run.as_of.isoformat() if run.as_of else None,
            "status": run.status, "total": run.total, "done": run.done, "created": run.created,
            "skipped": run.skipped, "failures": run.failures or [],
            "summary": run.summary, "queued": run.queued, "pending": run.pending,
            "running": run.running, "failed": run.failed,
            "files_pending": run.files_pending}  # fmt: skip


@blueprint.route("/runs", methods=["GET", "POST"])
@login_required
def runs_page():
    rbac.require(current_user, "billruns.run")
    error = None
    if request.method == "POST":
        try:
            as_of = check_run_date(request.form.get("date", ""), "date")  # not after today
            run = start_bill_run(current_user, as_of)
            return redirect(url_for("billing.runs_page", watch=run.id))
        except PeriodError as exc:
            error = str(exc)
    runs = rbac.scoped(BillRun.select(), BillRun.scope, current_user)
    runs = [billing_queue.live(r) for r in runs.order_by(BillRun.id.desc()).limit(50)]
    watch = request.args.get("watch")
    if watch:  # a run the caller may see, else 404 (never a page following nothing)
        watch = rbac.get_scoped(BillRun, current_user, watch, BillRun.scope).id
    return render_template("billing/runs.html", runs=runs, error=error, watch=watch,
                           today=clock.today().isoformat())  # fmt: skip


@blueprint.route("/runs/<int:run_id>.json")
@login_required
def run_status(run_id):
    run = rbac.get_scoped(BillRun, current_user, run_id, BillRun.scope)  # 404 outside first
    rbac.require(current_user, "billruns.run")
    return jsonify(_run_json(run))


@blueprint.route("/runs/<int:run_id>/resume", methods=["POST"])
@login_required
def run_resume(run_id):
    """The Resume button of an interrupted run: its remaining accounts are billed in this
    process (core.billing.runs.records); the page then follows it."""
    run = scoped_run(current_user, run_id)
    try:
        resume_bill_run(current_user, run)
        flash(f"Bill run {run.id} resumed: the accounts it had not billed are being billed.")
    except BillhiveError as exc:
        flash(exc.message, "error")
    return redirect(url_for("billing.runs_page", watch=run.id))
