"""Billing connectors in the REST API (``/api/v1``): an account's connectors and their
settings (secrets masked; write-only), test, the sync log and Retry.

Each connector is gated on its own privileges (``BillingConnector.view_privilege`` to read,
``edit_privilege`` to change settings, test and retry; ``billing.view``/``billing.edit``
unless it says otherwise) on a provider or reseller account in the caller's subtree (404
outside it); the list shows the connectors the caller may view. Bad settings answer 422
naming each field and change nothing.
"""

from __future__ import annotations

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from core import rbac
from core.api.schemas import UtcDateTime
from core.auth import api_login_required, api_user
from core.connectors import settings as connector_settings
from core.connectors import sync
from core.connectors.models import SyncItem, SyncRun
from core.errors import NotFound, ValidationFailed

blp = Blueprint("connectors_api", __name__, url_prefix="/api/v1",
                description="Billing connectors: settings, test, sync log, retry")  # fmt: skip


def blueprints():
    return [blp]


class ConnectorOut(Schema):
    code = fields.String()
    title = fields.String()
    settings = fields.Dict(
        allow_none=True, metadata={"description": "null until saved; secrets masked"}
    )


class ConnectorTestResult(Schema):
    ok = fields.Boolean()
    message = fields.String()


class ConnectorSyncItemOut(Schema):
    id = fields.Integer()
    run_id = fields.Integer(allow_none=True)
    customer_id = fields.Integer()
    invoice_id = fields.Integer()
    key = fields.String()
    external_key = fields.String()
    product_code = fields.String()
    quantity = fields.String()
    outcome = fields.String()
    message = fields.String()
    remote_id = fields.Integer(allow_none=True)
    attempts = fields.Integer()
    updated_at = UtcDateTime()


class ConnectorSyncRunOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    connector = fields.String()
    trigger = fields.String()
    invoice_id = fields.Integer(allow_none=True)
    started_at = UtcDateTime()
    finished_at = UtcDateTime(allow_none=True)
    status = fields.String()
    message = fields.String()
    counts = fields.Dict()


class ConnectorSyncRunDetail(ConnectorSyncRunOut):
    items = fields.Method("_items")

    def _items(self, run):
        return ConnectorSyncItemOut(many=True).dump(run.items.order_by(SyncItem.id))


def _account(account_id):
    return connector_settings.integration_account(api_user(), account_id, None)


def _checked(account_id, connector, edit=False):
    """The account and the connector, checked for the caller (404, then 403)."""
    account = _account(account_id)
    return account, connector_settings.checked(api_user(), account, connector, edit)


def _out(account, code, conn) -> dict:
    row = connector_settings.get(account, code)
    return {"code": code, "title": conn.title, "settings": connector_settings.masked(row, conn)}


@blp.route("/accounts/<int:account_id>/connectors", methods=["GET"])
@blp.response(200, ConnectorOut(many=True))
@api_login_required
def list_connectors(account_id):
    """The enabled connectors with the account's settings (secrets masked)."""
    account = _account(account_id)
    return [
        _out(account, code, c)
        for code, c in connector_settings.viewable(api_user(), account).items()
    ]


@blp.route("/accounts/<int:account_id>/connectors/<connector>", methods=["PUT"])
@blp.response(200, ConnectorOut)
@api_login_required
def put_settings(account_id, connector):
    """Save the connector's settings (a JSON object of its schema's fields). Secrets are
    write-only: omit one to keep the stored value."""
    account, conn = _checked(account_id, connector, edit=True)
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ValidationFailed.field("_schema", "send the settings as a JSON object")
    connector_settings.save(api_user(), account, connector, payload)
    return _out(account, connector, conn)


@blp.route("/accounts/<int:account_id>/connectors/<connector>/test", methods=["POST"])
@blp.response(200, ConnectorTestResult)
@api_login_required
def test_settings(account_id, connector):
    """Test the stored settings against the outside system."""
    account, _ = _checked(account_id, connector, edit=True)
    ok, message = connector_settings.test(api_user(), account, connector)
    return {"ok": ok, "message": message}


@blp.route("/accounts/<int:account_id>/connectors/<connector>/sync-runs", methods=["GET"])
@blp.response(200, ConnectorSyncRunOut(many=True))
@api_login_required
def list_runs(account_id, connector):
    account, _ = _checked(account_id, connector)
    return list(
        SyncRun.select()
        .where((SyncRun.account == account.id) & (SyncRun.connector == connector))
        .order_by(SyncRun.id.desc())
        .limit(100)
    )


@blp.route("/accounts/<int:account_id>/connectors/<connector>/sync-runs", methods=["POST"])
@blp.response(201, ConnectorSyncRunDetail)
@api_login_required
def retry(account_id, connector):
    """Retry: push every pending, failed or uncertain item of the connector now."""
    account, _ = _checked(account_id, connector, edit=True)
    return sync.retry(api_user(), account, connector, "api")


@blp.route("/connectors/sync-runs/<int:run_id>", methods=["GET"])
@blp.response(200, ConnectorSyncRunDetail)
@api_login_required
def get_run(run_id):
    """One sync run with each item's outcome and message."""
    run = rbac.get_scoped(SyncRun, api_user(), run_id)
    if run.connector not in connector_settings.connectors():
        raise NotFound(f"sync run {run_id} not found")
    connector_settings.checked(api_user(), run.account, run.connector)
    return run
