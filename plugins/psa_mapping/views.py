"""Panel pages: the integration's Billing page, Billing Setup and the Add Billing Mapping
wizard, connection settings, company links and the sync log (tab "PSA billing")."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from core.kit import BillhiveError, NotFound, SyncItem, SyncRun, form_errors
from plugins.psa_mapping.service import integration as svc

blueprint = Blueprint(
    "psa_mapping",
    __name__,
    url_prefix="/accounts/<int:account_id>/psa",
    template_folder="templates",
)
TAB = "psa_mapping.billing"
#: What the forms call their fields (their <label>s), for their messages.
CONNECTION_LABELS = {
    "site_url": "Site URL",
    "company_id": "Company ID",
    "public_key": "Public key",
    "private_key": "Private key",
    "client_id": "Client ID",
    "timeout": "Timeout",
    "max_retries": "Max retries",
    "backoff": "Backoff",
}
MAPPING_LABELS = {
    "mapping_type": "Select Type",
    "psa_product": "Product/Services",
    "unique_id": "Unique ID/Plan",
    "level": "Level",
}


def _render(template: str, account, section: str, status: int = 200, **context):
    return render_template(template, account=account, tab=TAB, section=section, **context), status


def _acc(account_id: int, privilege: str = "psa.view"):
    return svc.integration_account(current_user, account_id, privilege)


# -- Billing page and Billing Setup -------------------------------------------------------------


@blueprint.route("")
@login_required
def billing(account_id):
    account = _acc(account_id)
    services = svc.services_of(account)
    counts: dict[str, int] = {}
    for m in svc.mappings_of(account):
        counts[m.product_code] = counts.get(m.product_code, 0) + 1
    foreign = [m for m in svc.mappings_of(account) if m.read_only]
    return _render(
        "psa_mapping/billing.html",
        account,
        "billing",
        services=services,
        counts=counts,
        foreign=foreign,
        connection=svc.masked(svc.get_connection(account)),
    )


@blueprint.route("/services/<code>")
@login_required
def setup(account_id, code):
    account = _acc(account_id)
    product = svc.service(account, code)
    mappings = svc.mappings_of(account, product.code)
    plans = dict(svc.plan_choices(product))
    return _render(
        "psa_mapping/setup.html",
        account,
        "billing",
        product=product,
        mappings=mappings,
        plans=plans,
        types=svc.MAPPING_TYPES,
    )


@blueprint.route("/services/<code>/add", methods=["GET", "POST"])
@login_required
def add_mapping(account_id, code):
    """Add Billing Mapping: Select Type → Product/Services → Unique ID/Plan and Level →
    Confirm. Each step is a GET carrying the earlier answers; Confirm is the only POST."""
    account = _acc(account_id, "psa.edit")
    svc.require_licensed()  # a new mapping is new work: refused (403) naming BH-PSA
    product = svc.service(account, code)
    values = (request.form if request.method == "POST" else request.args).to_dict()
    values.pop("csrf_token", None)
    errors: dict = {}
    if request.method == "POST":
        try:
            svc.create_mapping(current_user, account, {**values, "product_code": product.code})
        except BillhiveError as exc:
            errors = form_errors(exc, MAPPING_LABELS)
        else:
            flash(f"Billing mapping for {product.code} saved.")
            return redirect(url_for("psa_mapping.setup", account_id=account.id, code=product.code))
    step = 1
    catalog: list[dict] = []
    if values.get("mapping_type") in svc.MAPPING_TYPES:
        step = 2
        try:
            catalog = svc.psa_catalog(account)
        except BillhiveError as exc:
            errors = errors or form_errors(exc, MAPPING_LABELS)
        if values.get("psa_product") and any(
            i["identifier"] == values["psa_product"] for i in catalog
        ):
            step = 3
    elif values.get("mapping_type"):
        errors = errors or {"mapping_type": "choose a type from the list"}
    return _render(
        "psa_mapping/wizard.html",
        account,
        "billing",
        422 if errors and request.method == "POST" else 200,
        product=product,
        step=step,
        values=values,
        errors=errors,
        types=svc.MAPPING_TYPES,
        catalog=catalog,
        plans=svc.plan_choices(product),
    )


@blueprint.route("/mappings/<int:mapping_id>/delete", methods=["POST"])
@login_required
def delete_mapping(account_id, mapping_id):
    account = _acc(account_id, "psa.edit")
    mapping = svc.get_mapping(current_user, mapping_id, "psa.edit")
    if mapping.account_id != account.id:
        return svc_not_found(mapping_id)
    code = mapping.product_code
    try:
        svc.delete_mapping(current_user, mapping)
    except BillhiveError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Billing mapping deleted ({mapping.remote_product}, level {mapping.level}).")
    return redirect(url_for("psa_mapping.setup", account_id=account.id, code=code))


def svc_not_found(object_id):
    raise NotFound(f"{object_id} not found")


# -- connection ---------------------------------------------------------------------------------


@blueprint.route("/connection", methods=["GET", "POST"])
@login_required
def connection(account_id):
    account = _acc(account_id)
    conn = svc.get_connection(account)
    errors: dict = {}
    stored = svc.masked(conn) or {"timeout": 10.0, "max_retries": 3, "backoff": 0.5}
    # the stored keys are shown masked beside the fields, never as their values
    values = {k: v for k, v in stored.items() if k not in svc.SECRET_FIELDS}
    result = None
    if request.method == "POST":
        account = _acc(account_id, "psa.edit")
        form = request.form.to_dict()
        action = form.pop("action", "save")
        form.pop("csrf_token", None)
        try:
            if action == "test":
                ok, message = svc.test_connection(current_user, account, form)
                result = {"ok": ok, "message": message}
            else:
                conn = svc.save_connection(current_user, account, form)
                ok, message = svc.test_connection(current_user, account)
                flash("ConnectWise settings saved. " + message, "" if ok else "error")
                return redirect(url_for("psa_mapping.connection", account_id=account.id))
        except BillhiveError as exc:
            errors = form_errors(exc, CONNECTION_LABELS)
        # everything typed stays in the form, the keys too (this response goes to the person
        # who just typed them; they are never read back from storage)
        values = {**values, **form}
    return _render(
        "psa_mapping/connection.html",
        account,
        "connection",
        422 if errors else 200,
        conn=conn,
        masked=svc.masked(conn),
        values=values,
        errors=errors,
        result=result,
    )


@blueprint.route("/connection/test", methods=["POST"])
@login_required
def test_connection(account_id):
    account = _acc(account_id, "psa.edit")
    try:
        ok, message = svc.test_connection(current_user, account)
    except BillhiveError as exc:
        ok, message = False, exc.message
    flash(message, "" if ok else "error")
    return redirect(url_for("psa_mapping.connection", account_id=account.id))


# -- company links ------------------------------------------------------------------------------


@blueprint.route("/companies")
@login_required
def companies(account_id):
    account = _acc(account_id)
    customers = svc.customers_of(account)
    links = svc.links_of(account)
    chosen = request.args.get("customer_id", type=int)
    suggestions, agreements, error = [], [], None
    customer = next((c for c in customers if c.id == chosen), None)
    company_id = request.args.get("psa_company_id", type=int)
    if customer is not None:
        try:
            suggestions = svc.suggest_companies(account, customer)
            if company_id is None and suggestions:
                company_id = suggestions[0]["id"]
            if company_id is not None:
                agreements = svc.company_agreements(account, company_id)
        except BillhiveError as exc:
            error = exc.message
    return _render(
        "psa_mapping/companies.html",
        account,
        "companies",
        customers=customers,
        links=links,
        customer=customer,
        suggestions=suggestions,
        company_id=company_id,
        agreements=agreements,
        error=error,
    )


@blueprint.route("/companies/confirm", methods=["POST"])
@login_required
def confirm_company(account_id):
    account = _acc(account_id, "psa.edit")
    try:
        form = request.form.to_dict()
        form.pop("csrf_token", None)
        link = svc.confirm_link(current_user, account, form)
    except BillhiveError as exc:
        flash(f"Not linked: {exc.message}", "error")
        return redirect(
            url_for(
                "psa_mapping.companies",
                account_id=account.id,
                customer_id=request.form.get("customer_id"),
            )
        )
    flash(
        f"{link.customer.name} is linked to ConnectWise company {link.remote_name} "
        f"(agreement {link.target_name})."
    )
    return redirect(url_for("psa_mapping.companies", account_id=account.id))


@blueprint.route("/companies/<int:link_id>/delete", methods=["POST"])
@login_required
def delete_link(account_id, link_id):
    account = _acc(account_id, "psa.edit")
    link = svc.get_link(current_user, link_id, "psa.edit")
    if link.account_id != account.id:
        return svc_not_found(link_id)
    svc.unlink(current_user, link)
    flash(f"{link.customer.name} is no longer linked to {link.remote_name}.")
    return redirect(url_for("psa_mapping.companies", account_id=account.id))


# -- sync log -----------------------------------------------------------------------------------


@blueprint.route("/sync", methods=["GET", "POST"])
@login_required
def sync_log(account_id):
    account = _acc(account_id)
    if request.method == "POST":
        account = _acc(account_id, "psa.edit")
        try:
            svc.require_licensed()
        except BillhiveError as exc:
            flash(exc.message, "error")
        else:
            run = svc.sync(account, "panel")
            flash(f"Sync {run.status}: {run.message}", "" if run.status == "ok" else "error")
        return redirect(url_for("psa_mapping.sync_log", account_id=account.id))
    runs = list(
        SyncRun.select()
        .where((SyncRun.account == account.id) & (SyncRun.connector == svc.CODE))
        .order_by(SyncRun.id.desc())
        .limit(50)
    )
    items = list(
        SyncItem.select()
        .where((SyncItem.account == account.id) & (SyncItem.connector == svc.CODE))
        .order_by(SyncItem.updated_at.desc(), SyncItem.id.desc())
        .limit(200)
    )
    return _render("psa_mapping/sync.html", account, "sync", runs=runs, items=items)
