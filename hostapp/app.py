"""create_app(): the deployable application, wired from the core and the plugins."""

from __future__ import annotations

from dataclasses import dataclass

import peewee as pw
from flask import Flask, abort, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import NotFound as NotFoundPage
from werkzeug.routing import IntegerConverter

# the modules that register the worker queue's tasks (core.tasks): every application has them
import core.billing.runs.queue  # noqa: F401
import core.mail.messages  # noqa: F401 - registers mail's listeners on core.events
import core.mail.tasks  # noqa: F401
from core import auth, builtin, db, migrations
from core.api import create_api
from core.errors import BillhiveError, describe, field_messages
from core.mail import transport as mail_transport
from core.models import StateVersion, create_core_tables
from core.plugins import PluginHost, discover
from hostapp import config as config_module
from hostapp import security


@dataclass
class Billhive:
    """Per-application state, kept in ``app.extensions['billhive']``."""

    host: PluginHost
    database: object
    api: object


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _error_response(status: int, code: str, message: str, errors: dict | None = None):
    if _wants_json():
        body = {"code": code, "message": message, "errors": errors or {}}
        return jsonify(body), status
    if status == 404 and code == "not_found" and message == NotFoundPage.description:
        message = f"There is no page at {request.path}."
    return render_template("core/error.html", status=status, message=message), status


class IdConverter(IntegerConverter):
    """``<int:...>`` in every route: an object id, at most what a 64-bit id column holds. A
    larger number names no object (404) instead of overflowing the database driver (500)."""

    def __init__(self, map, fixed_digits=0, min=None, max=2**63 - 1, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def _out_of_range(exc: Exception) -> bool:
    """A value from a request that does not fit its column: SQLite cannot bind an int beyond
    64 bits; PostgreSQL refuses a number out of range or a string too long for its column."""
    if isinstance(exc, OverflowError):
        return "SQLite INTEGER" in str(exc)
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, pw.DataError) and getattr(cause, "pgcode", None) in (
        "22003",  # numeric_value_out_of_range
        "22001",  # string_data_right_truncation
    )


def _guard(host: PluginHost, plugin: str):
    def guard():
        if not host.is_enabled(plugin):
            abort(404)

    return guard


def start_database(database, host: PluginHost) -> None:
    """What start-up does to the database: the core's tables and migrations, the plugins'
    state read, the tables of enabled plugins (pending plugin migrations are logged)."""
    with database.connection_context():
        create_core_tables()
        StateVersion.get_or_create(key="plugins", defaults={"value": 0})
        host.refresh(force=True)
        migrations.start(host)


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask("billhive", template_folder="../core/panel/templates")
    app.url_map.converters["int"] = IdConverter
    app.config.update(config_module.load(test_config))

    database = db.open_database(app.config["DATABASE_URL"])
    db.bind(database)
    host = PluginHost(
        discover(app.config["PLUGINS"], app.config["PLUGIN_MODULES"]),
        app.config["LICENSE_KEY_PATHS"],
        core=builtin,
    )
    with app.app_context():  # core migrations may read the configuration (core.connectors)
        start_database(database, host)

    security.init_app(app)  # proxy hops, Secure cookies, security headers: one place
    mail_transport.init_app(app)  # e-mail: the outbox folder or SMTP (core.mail)
    csrf = CSRFProtect(app)
    auth.init_app(app)
    api = create_api(app, csrf)
    app.extensions["billhive"] = Billhive(host=host, database=database, api=api)

    from core.find import views as find_views
    from core.panel import jinja
    from core.panel.views import blueprint as panel_bp

    app.register_blueprint(panel_bp)
    from core.billing.web.account_views import blueprint as billing_account_bp
    from core.billing.web.dunning_views import blueprint as billing_dunning_bp
    from core.billing.web.parties_views import blueprint as billing_parties_bp
    from core.billing.web.views import blueprint as billing_bp

    app.register_blueprint(billing_bp)
    app.register_blueprint(billing_account_bp)
    app.register_blueprint(billing_dunning_bp)
    app.register_blueprint(billing_parties_bp)
    from core.connectors.views import blueprint as connectors_bp
    from core.mail import views as mail_views

    app.register_blueprint(connectors_bp)

    mail_views.init_app(app)
    jinja.init_app(app)
    find_views.init_app(app)  # the search box, the users list, list-page helpers

    for plugin, bp in host.blueprints():
        if hasattr(bp, "register_views_in_doc"):  # flask-smorest blueprint: an API resource
            csrf.exempt(bp)
            api.register_blueprint(bp)
        else:
            app.register_blueprint(bp)
        # the guard belongs to this app, not to the (module-level, shared) blueprint object,
        # so a second app in the same process neither fails nor consults this app's host
        app.before_request_funcs.setdefault(bp.name, []).insert(0, _guard(host, plugin))

    @app.before_request
    def _refuse_nul_in_query():
        # panel pages read query values as they come; PostgreSQL cannot hold a NUL in any
        # string (500), so a query string carrying one is refused here, before any view. API
        # operations declare their query fields (core.fields.Text refuses it with a 422).
        if not request.path.startswith("/api/") and any(
            "\x00" in key or "\x00" in value for key, value in request.args.items(multi=True)
        ):
            abort(400, "the query string holds a NUL character")

    @app.before_request
    def _open_db():
        # close at teardown only what this request opened (a CLI or test may hold one open)
        g.billhive_opened_db = database.connect(reuse_if_open=True)
        # per-request caches live on g; a test or CLI may keep one app context (and its g)
        # across several requests, so start each request without them
        for key in ("_billhive_privs", "_login_user"):
            g.pop(key, None)
        host.refresh()
        auth.authenticate_api_call()

    @app.teardown_request
    def _close_db(exc):
        if g.pop("billhive_opened_db", False) and not database.is_closed():
            database.close()

    @app.errorhandler(BillhiveError)
    def _billhive_error(exc: BillhiveError):
        return _error_response(exc.status, exc.code, exc.message, exc.errors)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc):
        return _error_response(400, "csrf", f"form refused: {exc.description}")

    api.handle_http_exception = lambda exc: _http_error(exc)

    def _http_error(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        messages = data.get("messages") or data.get("errors") or {}
        if (
            isinstance(messages, dict)
            and len(messages) == 1
            and messages.keys() & {"json", "query"}
        ):
            # webargs nests by location; callers want the field or query parameter's name
            messages = next(iter(messages.values()))
        # nested fields by their dotted path ("lines.0.unit_price"); ["Invalid JSON body."]
        # and other messages that name no field under "_schema"
        messages = field_messages(messages) if messages else {}
        message = exc.description or exc.name
        if messages:
            message = describe(messages)
        code = exc.name.lower().replace(" ", "_")
        return _error_response(exc.code or 500, code, message, messages)

    app.register_error_handler(HTTPException, _http_error)

    @app.errorhandler(Exception)
    def _unexpected(exc):
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        if _out_of_range(exc):
            return _error_response(
                422,
                "validation_error",
                "invalid input — a value is out of range (a number too large or a text too long)",
                {"_schema": ["a value is out of range"]},
            )
        current_app.logger.exception("unexpected error")
        return _error_response(500, "internal_error", "internal error: the change was not saved")

    return app
