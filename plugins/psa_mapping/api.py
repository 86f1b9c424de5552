"""REST resources of psa_mapping under /api/v1/psa (in the OpenAPI document)."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from core.kit import AccountOut, Id, NotFound, SyncRun, Text, api_login_required, api_user, rbac
from plugins.psa_mapping.service import integration as svc

blueprint = Blueprint(
    "psa_mapping_api",
    __name__,
    url_prefix="/api/v1/psa",
    description="PSA mapping (ConnectWise Manage): connection, mappings, company links, syncs",
)


class TestResult(Schema):
    ok = fields.Boolean()
    message = fields.String()


class CatalogItemOut(Schema):
    identifier = fields.String()
    description = fields.String()
    price = fields.String()


class SuggestionOut(Schema):
    id = fields.Integer()
    name = fields.String()
    identifier = fields.String()
    score = fields.Float()


class SuggestionArgs(Schema):
    customer_id = Id(required=True)


class ProductCodeArgs(Schema):
    product_code = Text(60, load_default=None, card_numbers=False)


class SuggestionsOut(Schema):
    customer = fields.Nested(AccountOut)
    companies = fields.List(fields.Nested(SuggestionOut))


def _acc(account_id, privilege="psa.view"):
    return svc.integration_account(api_user(), account_id, privilege)


# -- connection ---------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/connection", methods=["GET"])
@blueprint.response(200, svc.ConnectionOut)
@api_login_required
def get_connection(account_id):
    """The ConnectWise connection settings (keys masked)."""
    account = _acc(account_id)
    conn = svc.get_connection(account)
    if conn is None:
        raise NotFound(f"{account.name} has no ConnectWise connection")
    return svc.masked(conn)


@blueprint.route("/accounts/<int:account_id>/connection", methods=["PUT"])
@blueprint.arguments(svc.ConnectionSettingsSchema)
@blueprint.response(200, svc.ConnectionOut)
@api_login_required
def put_connection(data, account_id):
    """Save the settings. Keys are write-only; omit one to keep the stored value. Invalid
    settings answer 422 with field messages and change nothing."""
    account = _acc(account_id, "psa.edit")
    return svc.masked(svc.save_connection(api_user(), account, data))


@blueprint.route("/accounts/<int:account_id>/connection/test", methods=["POST"])
@blueprint.response(200, TestResult)
@api_login_required
def test_connection(account_id):
    """Test the stored settings against ConnectWise (GET system/info)."""
    account = _acc(account_id, "psa.edit")
    ok, message = svc.test_connection(api_user(), account)
    return {"ok": ok, "message": message}


@blueprint.route("/accounts/<int:account_id>/catalog", methods=["GET"])
@blueprint.response(200, CatalogItemOut(many=True))
@api_login_required
def psa_catalog(account_id):
    """The ConnectWise procurement catalog (the Product/Services choices)."""
    return svc.psa_catalog(_acc(account_id, "psa.edit"))


# -- mappings -----------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/mappings", methods=["GET"])
@blueprint.arguments(ProductCodeArgs, location="query")
@blueprint.response(200, svc.MappingOut(many=True))
@api_login_required
def list_mappings(args, account_id):
    return svc.mappings_of(_acc(account_id), args.get("product_code"))


@blueprint.route("/accounts/<int:account_id>/mappings", methods=["POST"])
@blueprint.arguments(svc.MappingInput)
@blueprint.response(201, svc.MappingOut)
@api_login_required
def create_mapping(data, account_id):
    """Add a billing mapping (type, ConnectWise product, unique ID/plan, level ≥ 0)."""
    return svc.create_mapping(api_user(), _acc(account_id, "psa.edit"), data)


@blueprint.route("/mappings/<int:mapping_id>", methods=["GET"])
@blueprint.response(200, svc.MappingOut)
@api_login_required
def get_mapping(mapping_id):
    return svc.get_mapping(api_user(), mapping_id, "psa.view")


@blueprint.route("/mappings/<int:mapping_id>", methods=["DELETE"])
@blueprint.response(204)
@api_login_required
def delete_mapping(mapping_id):
    """Delete a mapping; those of another source are read-only (422)."""
    svc.delete_mapping(api_user(), svc.get_mapping(api_user(), mapping_id, "psa.edit"))


# -- company links ------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/company-links", methods=["GET"])
@blueprint.response(200, svc.LinkOut(many=True))
@api_login_required
def list_links(account_id):
    account = _acc(account_id)
    return list(svc.links_of(account).values())


@blueprint.route("/accounts/<int:account_id>/company-suggestions", methods=["GET"])
@blueprint.arguments(SuggestionArgs, location="query")
@blueprint.response(200, SuggestionsOut)
@api_login_required
def suggestions(args, account_id):
    """ConnectWise companies resembling a customer's name. Nothing is linked until a
    person confirms one (POST company-links)."""
    account = _acc(account_id, "psa.edit")
    customer = rbac.get_account(api_user(), args["customer_id"])
    if customer.id not in {c.id for c in svc.customers_of(account)}:
        raise NotFound(f"customer {customer.id} not found under {account.name}")
    return {"customer": customer, "companies": svc.suggest_companies(account, customer)}


@blueprint.route("/accounts/<int:account_id>/company-links", methods=["POST"])
@blueprint.arguments(svc.LinkInput)
@blueprint.response(201, svc.LinkOut)
@api_login_required
def confirm_link(data, account_id):
    """Confirm a customer ↔ ConnectWise company link with the agreement to push to."""
    return svc.confirm_link(api_user(), _acc(account_id, "psa.edit"), data)


@blueprint.route("/company-links/<int:link_id>", methods=["DELETE"])
@blueprint.response(204)
@api_login_required
def delete_link(link_id):
    svc.unlink(api_user(), svc.get_link(api_user(), link_id, "psa.edit"))


# -- syncs --------------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/sync-runs", methods=["GET"])
@blueprint.response(200, svc.SyncRunOut(many=True))
@api_login_required
def list_runs(account_id):
    account = _acc(account_id)
    return list(
        SyncRun.select()
        .where((SyncRun.account == account.id) & (SyncRun.connector == svc.CODE))
        .order_by(SyncRun.id.desc())
        .limit(100)
    )


@blueprint.route("/accounts/<int:account_id>/sync-runs", methods=["POST"])
@blueprint.response(201, svc.SyncRunDetail)
@api_login_required
def start_run(account_id):
    """Sync now: pending and failed items, and the latest invoice of each linked customer."""
    account = _acc(account_id, "psa.edit")
    svc.require_licensed()
    return svc.sync(account, "api")


@blueprint.route("/sync-runs/<int:run_id>", methods=["GET"])
@blueprint.response(200, svc.SyncRunDetail)
@api_login_required
def get_run(run_id):
    """One sync run with each item's outcome and message (the sync log)."""
    run = rbac.get_scoped(SyncRun, api_user(), run_id)
    if run.connector != svc.CODE:
        raise NotFound(f"sync run {run_id} not found")
    rbac.require(api_user(), "psa.view", run.account)
    return run
