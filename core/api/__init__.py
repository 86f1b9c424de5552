"""The REST API under /api/v1: flask-smorest blueprints, OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

from flask import current_app, request
from flask_smorest import Api

from core.api.schemas import ErrorOut
from core.errors import NotFound, UnsupportedMediaType, ValidationFailed

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in (
        request.headers.get("Transfer-Encoding", "").lower()
    )


def check_request() -> None:
    """Runs before every view of every API blueprint, the core's and the plugins' alike:

    * a write (POST, PUT, PATCH, DELETE) with a body that is not JSON answers 415, whatever
      the operation (a form or text body would otherwise be read as "no fields given");
    * a NUL character in the path names no object (404): it never reaches the database.
    """
    if "\x00" in request.path:
        raise NotFound("not found: the path holds a NUL character")
    if request.method in WRITE_METHODS and _has_body() and not request.is_json:
        sent = request.mimetype or "none"
        raise UnsupportedMediaType(
            f"the request body must be JSON (Content-Type: application/json), not {sent}",
            {"Content-Type": [f"must be application/json, not {sent}"]},
        )


def _money_error(exc):
    """A MoneyError that reaches a request (a sum past what an amount can hold, say) is bad
    input: a 422 naming its field, never a 500."""
    error = ValidationFailed.field(exc.field or "_schema", exc.message)
    return current_app.handle_user_exception(error)


class BillhiveApi(Api):
    """Documents the error body every API error has (``hostapp.app._error_response``), and
    gives every API blueprint registered on it (plugins' included) :func:`check_request`."""

    ERROR_SCHEMA = ErrorOut

    def register_blueprint(self, blp, *, parameters=None, **options):
        super().register_blueprint(blp, parameters=parameters, **options)
        name = options.get("name", blp.name)
        funcs = self._app.before_request_funcs.setdefault(name, [])
        if check_request not in funcs:
            funcs.append(check_request)
        self._document_415()

    def _document_415(self) -> None:
        """Every write operation of the document says it answers 415 to a body that is not
        JSON (what :func:`check_request` does for it)."""
        if "UNSUPPORTED_MEDIA_TYPE" not in self.spec.components.responses:
            self.spec.components.response(
                "UNSUPPORTED_MEDIA_TYPE",
                {
                    "description": "The request body is not JSON (send Content-Type: "
                    "application/json)",
                    "content": {"application/json": {"schema": self.ERROR_SCHEMA}},
                },
            )
        ref = {"$ref": "#/components/responses/UNSUPPORTED_MEDIA_TYPE"}
        for operations in self.spec._paths.values():
            for method, operation in operations.items():
                if method.upper() in WRITE_METHODS and isinstance(operation, dict):
                    operation.setdefault("responses", {}).setdefault("415", ref)


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
    from core.billing.money import MoneyError
    from core.billing.web import api as billing_api
    from core.billing.web import dunning_api, ledger_api, parties_api
    from core.connectors import api as connectors_api
    from core.mail import api as mail_api

    app.register_error_handler(MoneyError, _money_error)
    blueprints = resources.blueprints() + billing_api.blueprints() + ledger_api.blueprints()
    blueprints += mail_api.blueprints()  # an invoice's e-mail (core.mail)
    blueprints += connectors_api.blueprints()  # billing connectors (core.connectors)
    for bp in blueprints + parties_api.blueprints() + dunning_api.blueprints():
        csrf.exempt(bp)
        api.register_blueprint(bp)
    return api
