"""A licensed add-on: needs the feature ``FT-TEST.001`` and refuses new work without it."""

from flask import Blueprint, current_app

from core import hookimpl
from core.registry import PluginMeta

PLUGIN = PluginMeta(
    name="gated", title="Gated add-on", version="0.1", license_feature="FT-TEST.001"
)

blueprint = Blueprint("gated", __name__, url_prefix="/gated")


@blueprint.route("/work", methods=["POST"])
def work():
    current_app.extensions["billhive"].host.require_licensed("gated")
    return "done"


@hookimpl
def register_blueprints():
    return [blueprint]
