"""Who is asking: panel sessions through flask-login, API calls through Bearer tokens."""

from __future__ import annotations

from functools import wraps

from flask import current_app, request
from flask_login import LoginManager, current_user

from core import users
from core.errors import BillhiveError


class Unauthorized(BillhiveError):
    status = 401
    code = "unauthorized"


def init_app(app) -> None:
    manager = LoginManager()
    manager.login_view = "panel.login"
    manager.login_message = "Please log in."
    manager.session_protection = "basic"
    manager.user_loader(users.load_session)
    manager.init_app(app)
    with app.app_context():  # unknown e-mails cost one hash check from the first request on
        users.dummy_hash()


def authenticate_api_call() -> None:
    """Run before the view (and before its request body is parsed): an API call to a view
    that needs a login is answered 401 for an unknown or revoked token, whatever it sends."""
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "requires_api_login", False):
        api_user()


_API_USER = "billhive.api_user"


def api_user():
    """The user of an API call (Bearer token only: cookies never authenticate the API, so the
    API cannot be driven cross-site)."""
    # cached on the request, not on ``g``: an app context (and its ``g``) may outlive one
    # request, and a revoked token must stop working on the very next one
    if _API_USER not in request.environ:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user = users.user_for_token(token.strip()) if scheme.lower() == "bearer" else None
        request.environ[_API_USER] = user
    if request.environ[_API_USER] is None:
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    return request.environ[_API_USER]


def api_login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        api_user()
        return view(*args, **kwargs)

    wrapper.requires_api_login = True  # carried up by the decorators' functools.wraps
    return wrapper


def panel_user():
    return current_user if current_user.is_authenticated else None
