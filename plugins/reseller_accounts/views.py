"""Panel pages: Resellers list (with the provider's sub-reseller setting), reseller detail
with its profile, customers and catalog (with the wholesale link form: one of the reseller's
plans sold on one of its parent's), and the profile edit form."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from core.kit import BillhiveError, PricePlan, Product, form_errors, rbac, schema_fields
from core.kit import accounts as account_service
from plugins.reseller_accounts.models import WholesaleLink
from plugins.reseller_accounts.service import resellers as service
from plugins.reseller_accounts.service.billing import link_by_ids
from plugins.reseller_accounts.service.profile import ResellerProfile

#: What the wholesale link form calls its fields.
LINK_LABELS = {"retail_plan_id": "Plan of the reseller", "wholesale_plan_id": "Wholesale plan"}


def _profile_labels() -> dict:
    return {f"profile.{f['name']}": f["label"] for f in schema_fields(ResellerProfile)} | {
        f["name"]: f["label"] for f in schema_fields(ResellerProfile)
    }


def _catalog_url() -> str | None:
    """The billing panel's catalog page (scoped to the viewer's subtree), when present."""
    if "billing.catalog_page" in current_app.view_functions:
        return url_for("billing.catalog_page")
    return None


def _catalog_of(reseller) -> list[dict]:
    """The reseller's own price plans, each with the wholesale plan it is sold on."""
    links = {
        link.retail_plan_id: link.wholesale_plan
        for link in WholesaleLink.select().where(WholesaleLink.reseller == reseller.id)
    }
    plans = PricePlan.select().where(PricePlan.account == reseller.id).order_by(PricePlan.id)
    return [{"plan": p, "wholesale": links.get(p.id)} for p in plans]


def _can_link(reseller) -> bool:
    """Whether the viewer may sell the reseller's plans on its parent's: the parent is in the
    viewer's subtree (a reseller's own users do not link their plans to their seller's)."""
    parent = reseller.parent
    return (
        parent is not None
        and parent.is_within(current_user.account)
        and rbac.has(current_user, "resellers.manage")
        and rbac.has(current_user, "catalog.manage")
    )


def _wholesale_choices(reseller) -> list:
    """The parent's price plans, to sell the reseller's plans on."""
    return list(
        PricePlan.select(PricePlan, Product)
        .join(Product)
        .where(PricePlan.account == reseller.parent_id)
        .order_by(Product.name, PricePlan.name, PricePlan.id)
    )


blueprint = Blueprint(
    "reseller_accounts", __name__, template_folder="templates", url_prefix="/resellers"
)


@blueprint.route("", methods=["GET"])
@login_required
def resellers():
    rbac.require(current_user, "resellers.view")
    me = current_user.account
    # "Add reseller" only where a reseller can be added; otherwise the reason
    can_create, why_not = False, None
    if rbac.has(current_user, "accounts.manage"):
        offered, refused = account_service.type_choices(me)
        can_create = any(t.code == service.RESELLER for t in offered)
        why_not = next((why for title, why in refused if title == "Reseller"), None)
    return render_template(
        "reseller_accounts/list.html",
        resellers=service.resellers_below(current_user),
        profile_fields=schema_fields(ResellerProfile),
        is_provider=me.parent_id is None,
        allow_sub=service.allow_sub_resellers(me),
        can_manage=rbac.has(current_user, "resellers.manage"),
        can_create=can_create,
        why_not=why_not,
    )


@blueprint.route("/settings", methods=["POST"])
@login_required
def settings():
    try:
        service.set_allow_sub_resellers(
            current_user, current_user.account, "allow_sub_resellers" in request.form
        )
    except BillhiveError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
    else:
        flash("Reseller settings saved.")
    return redirect(url_for("reseller_accounts.resellers"))


def render_detail(reseller, link_errors=None, link_values=None):
    can_link = _can_link(reseller)
    return render_template(
        "reseller_accounts/detail.html",
        account=reseller,
        profile_fields=schema_fields(ResellerProfile),
        customers=service.customers_of(reseller),
        catalog_url=_catalog_url(),
        catalog=_catalog_of(reseller),
        can_edit=rbac.has(current_user, "resellers.profile")
        and account_service.can_edit_billing_terms(current_user, reseller),
        can_link=can_link,
        wholesale_choices=_wholesale_choices(reseller) if can_link else [],
        link_errors=link_errors or {},
        link_values=link_values or {},
        tab="reseller_accounts.detail",
    ), (422 if link_errors else 200)


@blueprint.route("/<int:account_id>", methods=["GET"])
@login_required
def detail(account_id):
    return render_detail(service.get_reseller(current_user, account_id))


@blueprint.route("/<int:account_id>/wholesale-links", methods=["POST"])
@login_required
def link(account_id):
    """The wholesale link form of the reseller page: one of the reseller's plans sold on
    one of its parent's plans (``resellers.manage``, ``catalog.manage`` on the parent)."""
    reseller = service.get_reseller(current_user, account_id, "resellers.manage")
    values = {k: request.form.get(k, "") for k in ("retail_plan_id", "wholesale_plan_id")}
    try:
        link_by_ids(current_user, reseller, values["retail_plan_id"], values["wholesale_plan_id"])
    except BillhiveError as exc:
        if exc.status == 404:
            raise
        return render_detail(reseller, form_errors(exc, LINK_LABELS), values)
    flash("Wholesale link saved: the parent invoices this plan's consumption at its plan.")
    return redirect(url_for("reseller_accounts.detail", account_id=reseller.id))


@blueprint.route("/<int:account_id>/profile", methods=["GET", "POST"])
@login_required
def edit_profile(account_id):
    reseller = service.get_reseller(current_user, account_id, "resellers.profile")
    if not account_service.can_edit_billing_terms(current_user, reseller):
        # the form is not offered: its save would be refused by the same rule
        attempt = {k: v for k, v in request.form.items() if k != "csrf_token"}
        account_service.require_billing_terms(
            current_user, reseller, ["profile"], attempt, record=request.method == "POST"
        )
    errors = {}
    values = {f"profile.{k}": v for k, v in (reseller.profile or {}).items()}
    fields_ = schema_fields(ResellerProfile)
    if request.method == "POST":
        values = request.form.to_dict()
        changes = {}
        for f in fields_:
            key = f"profile.{f['name']}"
            if f["kind"] == "checkbox":
                changes[f["name"]] = key in request.form
            else:
                changes[f["name"]] = request.form.get(key, "")
        try:
            service.update_profile(current_user, reseller, changes)
        except BillhiveError as exc:
            if exc.status == 404:
                raise
            errors = form_errors(exc, _profile_labels())
        else:
            flash("Reseller profile saved; its customers follow the Billing Cycle.")
            return redirect(url_for("reseller_accounts.detail", account_id=reseller.id))
    return render_template(
        "reseller_accounts/profile_form.html",
        account=reseller,
        profile_fields=fields_,
        errors=errors,
        values=values,
    ), (422 if errors else 200)
