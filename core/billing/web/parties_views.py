"""The panel's Billing details page of an account (``/accounts/<id>/billing-details``),
reached from the account's Overview: legal name, address, VAT ID, registration number,
billing e-mails, invoice language, and for the provider and resellers their payment
instructions. The same service and rules as the API (:mod:`core.billing.invoicing.parties`): whoever
may edit the account (``accounts.manage``) edits its details; payment instructions only on the
caller's own account (shown read-only otherwise). A refused form keeps every value typed."""

from __future__ import annotations

import pycountry
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from core import rbac
from core.billing.invoicing import parties
from core.errors import BillhiveError
from core.panel.forms import form_errors

blueprint = Blueprint("billing_details", __name__, template_folder="templates")

TEXT_FIELDS = ("legal_name", "street", "postcode", "city", "region", "country", "vat_id",
               "registration_number", "billing_emails", "invoice_language")  # fmt: skip


def countries() -> list[tuple[str, str]]:
    return sorted(
        ((c.alpha_2, getattr(c, "common_name", None) or c.name) for c in pycountry.countries),
        key=lambda pair: pair[1],
    )


def _values(details) -> dict:
    values = {name: getattr(details, name) for name in parties.LABELS}
    values["billing_emails"] = ", ".join(details.billing_emails or [])
    values["payment_terms_days"] = (
        "" if details.payment_terms_days is None else details.payment_terms_days
    )
    return values


@blueprint.route("/accounts/<int:account_id>/billing-details", methods=["GET", "POST"])
@login_required
def edit(account_id):
    account = rbac.get_account(current_user, account_id)
    rbac.require(current_user, "accounts.manage", account)
    details = parties.details_of(account)
    issuer = parties.is_issuer(account)
    own_payment = issuer and account.id == current_user.account_id
    values, errors = _values(details), {}
    if request.method == "POST":
        names = TEXT_FIELDS + (parties.PAYMENT_FIELDS if own_payment else ())
        payload = {name: request.form.get(name, "") for name in names}
        values |= payload
        try:
            parties.update(current_user, account, payload)
        except BillhiveError as exc:
            # billing_emails.1 and the like: the message belongs to the input they came from
            errors = form_errors(exc, parties.LABELS, field_of=lambda key: key.split(".")[0])
        else:
            flash("Billing details saved.")
            return redirect(url_for("panel.account", account_id=account.id))
    return render_template(
        "billing/billing_details.html",
        account=account,
        values=values,
        errors=errors,
        labels=parties.LABELS,
        issuer=issuer,
        own_payment=own_payment,
        payment=parties.payment_instructions(account, details) if issuer else None,
        countries=countries(),
        languages=parties.SUPPORTED_LOCALES,
        default_terms=parties.DEFAULT_TERMS_DAYS,
        tab="panel.account",
    ), (422 if errors else 200)
