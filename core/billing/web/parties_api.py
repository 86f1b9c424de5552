"""REST API of an account's billing details and an issuer's payment instructions
(:mod:`core.billing.invoicing.parties`): ``GET`` / ``PATCH /api/v1/accounts/<id>/billing-details``.

Reading needs ``accounts.view``, editing ``accounts.manage`` on the account (404 outside the
caller's subtree); payment instructions only by the issuer's own admins (403 otherwise)."""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from core import rbac
from core.api.schemas import UtcDateTime
from core.auth import api_login_required, api_user
from core.billing.invoicing import parties

blp = Blueprint("billing_parties", __name__, url_prefix="/api/v1",
                description="Billing details of accounts (legal name, address, VAT ID, "
                            "billing e-mails, invoice language) and issuers' payment "
                            "instructions (IBAN/BIC or text, terms, payment reference)")  # fmt: skip


def blueprints():
    return [blp]


class BillingDetailsOut(Schema):
    account_id = fields.Integer()
    legal_name = fields.String()
    street = fields.String(metadata={"description": "street lines, separated by line feeds"})
    postcode = fields.String()
    city = fields.String()
    region = fields.String()
    country = fields.String(metadata={"description": "ISO 3166-1 alpha-2, empty when not set"})
    vat_id = fields.String(metadata={"description": "compact, with its country prefix"})
    registration_number = fields.String()
    billing_emails = fields.List(fields.String())
    invoice_language = fields.String()
    is_issuer = fields.Boolean(metadata={"description": "has payment instructions"})
    iban = fields.String()
    bic = fields.String()
    payment_text = fields.String()
    payment_terms_days = fields.Integer(allow_none=True,
                                        metadata={"description": "null: the default (14)"})  # fmt: skip
    payment_reference = fields.String()
    updated_at = UtcDateTime(allow_none=True)


class BillingDetailsPatch(parties.BillingDetailsInput):
    """The body as documented; checked by :func:`core.billing.invoicing.parties.update` in one pass
    (so a bad country and a bad IBAN are named together), not field by field here."""

    def load(self, data, **kwargs):
        if not isinstance(data, dict):
            return super().load(data, **kwargs)  # the usual "Invalid input type." 422
        return data


def _out(account, details) -> dict:
    data = {name: getattr(details, name) for name in parties.LABELS}
    data["billing_emails"] = list(details.billing_emails or [])
    data |= {
        "account_id": account.id,
        "is_issuer": parties.is_issuer(account),
        "updated_at": details.updated_at if details.id else None,
    }
    return data


@blp.route("/accounts/<int:account_id>/billing-details", methods=["GET"])
@blp.response(200, BillingDetailsOut)
@blp.alt_response(404, description="No such account in your subtree")
@api_login_required
def get_details(account_id):
    user = api_user()
    account = rbac.get_account(user, account_id)
    rbac.require(user, "accounts.view", account)
    return _out(account, parties.details_of(account))


@blp.route("/accounts/<int:account_id>/billing-details", methods=["PATCH"])
@blp.arguments(BillingDetailsPatch(partial=True))
@blp.response(200, BillingDetailsOut)
@blp.alt_response(403, description="Missing accounts.manage, or payment instructions of an "
                                    "account that is not your own")  # fmt: skip
@blp.alt_response(404, description="No such account in your subtree")
@api_login_required
def patch_details(_data, account_id):
    """Change the fields sent; the others stay. Every bad field is named in one 422 (an
    invalid VAT ID, IBAN, BIC, country or e-mail, an unknown language or placeholder)."""
    user = api_user()
    account = rbac.get_account(user, account_id)
    details = parties.update(user, account, request.get_json(silent=True) or {})
    return _out(account, details)
