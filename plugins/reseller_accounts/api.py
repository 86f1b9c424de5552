"""The JSON API of reseller accounts: /api/v1/resellers (list, profile, wholesale links,
the provider's settings), in the OpenAPI document.

Creating a reseller goes through the core: ``POST /api/v1/accounts`` with ``type`` reseller
and a ``profile``.
"""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from core.kit import Id, api_login_required, api_user, rbac
from plugins.reseller_accounts.models import WholesaleLink
from plugins.reseller_accounts.service import resellers as service
from plugins.reseller_accounts.service.billing import link_by_ids
from plugins.reseller_accounts.service.profile import ResellerProfile


class ResellerOut(Schema):
    id = fields.Integer()
    parent_id = fields.Integer(allow_none=True)
    name = fields.String()
    status = fields.String()
    email = fields.String()
    currency = fields.String()
    bill_cycle_day = fields.Integer(metadata={"description": "The reseller's own bill cycle day"})
    invoice_prefix = fields.String()
    profile = fields.Nested(ResellerProfile)
    customers = fields.Method("_customers", metadata={"description": "Number of direct children"})

    def _customers(self, account):
        return account.children.count()


class ProfilePatch(ResellerProfile):
    """Any subset of the Reseller Profile fields."""


class SettingsSchema(Schema):
    allow_sub_resellers = fields.Boolean(
        required=True,
        metadata={"description": "Whether resellers may own resellers (off by default)"},
    )


class WholesaleLinkIn(Schema):
    retail_plan_id = Id(required=True, metadata={"description": "The reseller's plan"})
    wholesale_plan_id = Id(
        required=True, metadata={"description": "A plan of the reseller's parent"}
    )


class WholesaleLinkOut(WholesaleLinkIn):
    id = fields.Integer()


def _link_out(link) -> dict:
    return {
        "id": link.id,
        "retail_plan_id": link.retail_plan_id,
        "wholesale_plan_id": link.wholesale_plan_id,
    }


blueprint = Blueprint(
    "reseller_accounts_api",
    __name__,
    url_prefix="/api/v1/resellers",
    description="Reseller accounts (FT-3001.007): list, Reseller Profile, settings. "
    "Create a reseller with POST /api/v1/accounts, type 'reseller' and a profile.",
)


@blueprint.route("", methods=["GET"])
@blueprint.response(200, ResellerOut(many=True))
@api_login_required
def list_resellers():
    """Resellers below you (your subtree, tree order)."""
    user = api_user()
    rbac.require(user, "resellers.view")
    return service.resellers_below(user)


@blueprint.route("/<int:account_id>", methods=["GET"])
@blueprint.response(200, ResellerOut)
@api_login_required
def get_reseller(account_id):
    """One reseller of your subtree (404 outside it)."""
    return service.get_reseller(api_user(), account_id)


@blueprint.route("/<int:account_id>/profile", methods=["GET"])
@blueprint.response(200, ResellerProfile)
@api_login_required
def get_profile(account_id):
    """The Reseller Profile."""
    return service.get_reseller(api_user(), account_id).profile


@blueprint.route("/<int:account_id>/profile", methods=["PATCH"])
@blueprint.arguments(ProfilePatch(partial=True))
@blueprint.response(200, ResellerProfile)
@api_login_required
def patch_profile(data, account_id):
    """Change Reseller Profile fields; the reseller's customers follow a new Billing
    Cycle day. The profile is a billing term: it needs ``resellers.profile`` and
    ``accounts.billing_terms``, from an account above the reseller; a reseller's own
    users are refused (403 naming ``profile``, audited)."""
    user = api_user()
    reseller = service.get_reseller(user, account_id)
    return service.update_profile(user, reseller, data).profile


@blueprint.route("/<int:account_id>/wholesale-links", methods=["GET"])
@blueprint.response(200, WholesaleLinkOut(many=True))
@api_login_required
def list_links(account_id):
    """The reseller's plans and the wholesale plans they are sold on."""
    reseller = service.get_reseller(api_user(), account_id)
    query = WholesaleLink.select().where(WholesaleLink.reseller == reseller.id)
    return [_link_out(link) for link in query.order_by(WholesaleLink.id)]


@blueprint.route("/<int:account_id>/wholesale-links", methods=["POST"])
@blueprint.arguments(WholesaleLinkIn)
@blueprint.response(201, WholesaleLinkOut)
@api_login_required
def create_link(data, account_id):
    """Sell a reseller plan on a wholesale plan of the reseller's parent: the parent then
    invoices the reseller, at that plan's prices, what its customers consume. Needs
    ``resellers.manage`` and ``catalog.manage`` on the parent."""
    user = api_user()
    reseller = service.get_reseller(user, account_id, "resellers.manage")
    link = link_by_ids(user, reseller, data["retail_plan_id"], data["wholesale_plan_id"])
    return _link_out(link)


@blueprint.route("/settings", methods=["GET"])
@blueprint.response(200, SettingsSchema)
@api_login_required
def get_settings():
    """The provider's reseller settings."""
    user = api_user()
    rbac.require(user, "resellers.view")
    return {"allow_sub_resellers": service.allow_sub_resellers(user.account)}


@blueprint.route("/settings", methods=["PUT"])
@blueprint.arguments(SettingsSchema)
@blueprint.response(200, SettingsSchema)
@api_login_required
def put_settings(data):
    """Allow or forbid sub-resellers (provider only, ``resellers.manage``)."""
    user = api_user()
    allowed = service.set_allow_sub_resellers(user, user.account, data["allow_sub_resellers"])
    return {"allow_sub_resellers": allowed}
