"""The REST API under /api/v1: flask-smorest blueprints, OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

from flask_smorest import Api

from core.api.schemas import ErrorOut


class BillhiveApi(Api):
    """Documents the error body every API error has (``hostapp.app._error_response``)."""

    ERROR_SCHEMA = ErrorOut


def create_api(app, csrf) -> Api:
    app.config.setdefault("API_SPEC_OPTIONS", {})
    app.config["API_SPEC_OPTIONS"].update(
        {
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        }
    )
    api = BillhiveApi(app)
    from core.api import resources
    from core.billing import api as billing_api
    from core.billing import ledger_api

    for bp in resources.blueprints() + billing_api.blueprints() + ledger_api.blueprints():
        csrf.exempt(bp)
        api.register_blueprint(bp)
    return api
