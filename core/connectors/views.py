"""The Connectors page of a provider or reseller account (tab "Connectors"): per enabled
connector its settings (secrets masked, blank keeps them), Test, the sync log (runs and
items) and Retry, and a link to the connector's own pages (e.g. ConnectWise mappings).

Each connector is gated on its own privileges (``BillingConnector.view_privilege`` to see
it, ``edit_privilege`` to change its settings, test and retry; ``billing.view``/
``billing.edit`` unless it says otherwise): the page shows the connectors the caller may
view (404 outside the caller's subtree, or on a customer account).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from core.connectors import secrets, sync
from core.connectors import settings as connector_settings
from core.connectors.models import SyncItem, SyncRun
from core.errors import BillhiveError
from core.panel.forms import form_errors
from core.panel.jinja import schema_fields

blueprint = Blueprint("connectors", __name__, template_folder="templates")
TAB = "connectors.index"


def _account(account_id: int):
    return connector_settings.integration_account(current_user, account_id, None)


def _checked(account_id: int, connector: str):
    """The account and the connector, checked for changing it (404, then 403)."""
    account = _account(account_id)
    return account, connector_settings.checked(current_user, account, connector, edit=True)


def _section(account, code, conn, errors=None, values=None, result=None) -> dict:
    row = connector_settings.get(account, code)
    hidden = connector_settings.secret_fields(conn)
    try:
        masked = connector_settings.masked(row, conn)
    except secrets.SecretsUnreadable as exc:
        masked, result = dict(row.values or {}), result or {"ok": False, "message": exc.message}
    shown = {k: v for k, v in (masked or {}).items() if k not in hidden}
    fields = schema_fields(connector_settings.settings_schema(conn))
    runs = SyncRun.select().where((SyncRun.account == account.id) & (SyncRun.connector == code))
    items = SyncItem.select().where((SyncItem.account == account.id) & (SyncItem.connector == code))
    return {
        "code": code,
        "connector": conn,
        "fields": fields,
        "secret": hidden,
        "masked": masked,
        "form_values": {**shown, **(values or {})},
        "errors": errors or {},
        "result": result,
        "runs": list(runs.order_by(SyncRun.id.desc()).limit(20)),
        "log_items": list(items.order_by(SyncItem.updated_at.desc(), SyncItem.id.desc()).limit(50)),
        "to_retry": items.where(SyncItem.outcome.in_(sync.PUSH_AGAIN)).count(),
    }


def _render(account, sections, status=200):
    return render_template(
        "connectors/index.html", account=account, tab=TAB, sections=sections
    ), status


@blueprint.route("/accounts/<int:account_id>/connectors")
@login_required
def index(account_id):
    account = _account(account_id)
    conns = connector_settings.viewable(current_user, account)
    return _render(account, [_section(account, c, conns[c]) for c in sorted(conns)])


@blueprint.route("/accounts/<int:account_id>/connectors/<connector>", methods=["POST"])
@login_required
def save(account_id, connector):
    """Save (or only test) the settings typed in the connector's form."""
    account, conn = _checked(account_id, connector)
    form = request.form.to_dict()
    action = form.pop("action", "save")
    form.pop("csrf_token", None)
    labels = {
        f["name"]: f["label"] for f in schema_fields(connector_settings.settings_schema(conn))
    }
    try:
        if action == "test":
            ok, message = connector_settings.test(current_user, account, connector, form)
            result = {"ok": ok, "message": message}
            errors = None
        else:
            connector_settings.save(current_user, account, connector, form)
            ok, message = connector_settings.test(current_user, account, connector)
            flash(f"{conn.title} settings saved. {message}", "" if ok else "error")
            return redirect(url_for("connectors.index", account_id=account.id) + f"#{connector}")
    except BillhiveError as exc:
        errors, result = form_errors(exc, labels), None
    conns = connector_settings.viewable(current_user, account)
    sections = [
        _section(account, c, conns[c], errors, form, result)
        if c == connector
        else _section(account, c, conns[c])
        for c in sorted(conns)
    ]
    return _render(account, sections, 422 if errors else 200)


@blueprint.route("/accounts/<int:account_id>/connectors/<connector>/retry", methods=["POST"])
@login_required
def retry(account_id, connector):
    """Push every pending, failed or uncertain item of the connector now."""
    account, conn = _checked(account_id, connector)
    try:
        run = sync.retry(current_user, account, connector)
    except BillhiveError as exc:
        flash(exc.message, "error")
    else:
        flash(
            f"{conn.title}: sync {run.status} — {run.message}",
            "" if run.status == "ok" else "error",
        )
    return redirect(url_for("connectors.index", account_id=account.id) + f"#{connector}")
