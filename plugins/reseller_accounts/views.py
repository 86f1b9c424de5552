"""Panel pages: Resellers list (with the provider's sub-reseller setting), reseller detail
with its profile, customers and catalog, and the profile edit form."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from core import rbac
from core.errors import BillhiveError, Forbidden
from core.panel.jinja import schema_fields
from plugins.reseller_accounts import service
from plugins.reseller_accounts.profile import ResellerProfile


def _form_errors(exc: BillhiveError) -> dict:
    errors = {
        k: "; ".join(map(str, v)) if isinstance(v, list) else str(v)
        for k, v in (exc.errors or {}).items()
    }
    return errors or {"_": exc.message}


def _catalog_url() -> str | None:
    """The billing panel's catalog page (scoped to the viewer's subtree), when present."""
    if "billing.catalog_page" in current_app.view_functions:
        return url_for("billing.catalog_page")
    return None


def _catalog_of(reseller) -> list[dict]:
    """The reseller's own price plans, each with the wholesale plan it is sold on."""
    from core.billing.models import PricePlan
    from plugins.reseller_accounts.models import WholesaleLink

    links = {
        link.retail_plan_id: link.wholesale_plan
        for link in WholesaleLink.select().where(WholesaleLink.reseller == reseller.id)
    }
    plans = PricePlan.select().where(PricePlan.account == reseller.id).order_by(PricePlan.id)
    return [{"plan": p, "wholesale": links.get(p.id)} for p in plans]


def make_panel_blueprint() -> Blueprint:
    bp = Blueprint(
        "reseller_accounts", __name__, template_folder="templates", url_prefix="/resellers"
    )

    @bp.route("", methods=["GET"])
    @login_required
    def resellers():
        rbac.require(current_user, "resellers.view")
        me = current_user.account
        return render_template(
            "reseller_accounts/list.html",
            resellers=service.resellers_below(current_user),
            is_provider=me.parent_id is None,
            allow_sub=service.allow_sub_resellers(me),
            can_manage=rbac.has(current_user, "resellers.manage"),
            can_create=rbac.has(current_user, "accounts.manage"),
        )

    @bp.route("/settings", methods=["POST"])
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

    @bp.route("/<int:account_id>", methods=["GET"])
    @login_required
    def detail(account_id):
        reseller = service.get_reseller(current_user, account_id)
        return render_template(
            "reseller_accounts/detail.html",
            account=reseller,
            profile_fields=schema_fields(ResellerProfile),
            customers=service.customers_of(reseller),
            catalog_url=_catalog_url(),
            catalog=_catalog_of(reseller),
            can_edit=rbac.has(current_user, "resellers.profile")
            and reseller.id != current_user.account_id,
            tab="reseller_accounts.detail",
        )

    @bp.route("/<int:account_id>/profile", methods=["GET", "POST"])
    @login_required
    def edit_profile(account_id):
        reseller = service.get_reseller(current_user, account_id, "resellers.profile")
        if reseller.id == current_user.account_id:
            raise Forbidden(
                "a reseller's profile is edited by the account above it, not by the reseller"
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
                errors = _form_errors(exc)
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

    return bp
