"""The panel shell: login, navigation from the menu hook, accounts, users, plugins & licence."""

from flask import Blueprint

blueprint = Blueprint(
    "panel",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/panel",
)

from core.panel import views  # noqa: E402,F401  (routes attach to the blueprint)
