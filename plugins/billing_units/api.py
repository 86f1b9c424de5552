"""REST resources of billing_units under /api/v1 (flask-smorest, in the OpenAPI document)."""

from __future__ import annotations

from flask import Response, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from core.api.schemas import UtcDateTime
from core.auth import api_login_required, api_user
from core.fields import Text
from plugins.billing_units import services as svc
from plugins.billing_units.models import BillingUnit, PhoneNumber, Team

blp = Blueprint(
    "billing_units_api",
    __name__,
    url_prefix="/api/v1",
    description="Billing units: units, teams, phone numbers, call records, cost report",
)


class NumberOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    e164 = fields.String()
    label = fields.String()
    unit = fields.Method("_unit", allow_none=True)

    def _unit(self, obj):
        link = obj.unit_link.first()
        return link.unit.name if link is not None else None


class TeamOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    name = fields.String()
    user_ids = fields.Method("_users")

    def _users(self, obj):
        return [u.id for u in svc.team_members(obj)]


class UnitOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    name = fields.String()
    user_ids = fields.Method("_users")
    team_ids = fields.Method("_teams")
    number_ids = fields.Method("_numbers")
    numbers = fields.Method("_e164")
    effective_user_ids = fields.Method("_effective")

    def _users(self, obj):
        return [u.id for u in svc.unit_users(obj)]

    def _teams(self, obj):
        return [t.id for t in svc.unit_teams(obj)]

    def _numbers(self, obj):
        return [n.id for n in svc.unit_numbers(obj)]

    def _e164(self, obj):
        return [n.e164 for n in svc.unit_numbers(obj)]

    def _effective(self, obj):
        return [u.id for u in svc.effective_users(obj)]


class CallsIn(Schema):
    records = fields.List(
        fields.Dict(), required=True, metadata={"description": "CallInput objects"}
    )


class CallsResult(Schema):
    received = fields.Integer()
    created = fields.Integer()
    duplicates = fields.Integer()


class CallOut(Schema):
    id = fields.Integer()
    external_id = fields.String()
    number = fields.Function(lambda c: c.number.e164)
    user_id = fields.Integer(allow_none=True)
    started_at = UtcDateTime()
    duration_seconds = fields.Integer()
    cost = fields.Function(lambda c: str(svc.to_decimal(c.cost, c.currency)))
    currency = fields.String()


class PeriodArgs(Schema):
    start = Text(40, card_numbers=False,
                 metadata={"description": "YYYY-MM-DD (default: first of this month)"})  # fmt: skip
    end = Text(40, card_numbers=False,
               metadata={"description": "YYYY-MM-DD, exclusive (default: a month later)"})  # fmt: skip


class ReportRow(Schema):
    unit_id = fields.Integer(allow_none=True)
    unit = fields.String()
    numbers = fields.Integer()
    users = fields.Integer()
    calls = fields.Integer()
    duration_seconds = fields.Integer()
    usage = fields.Integer(metadata={"description": "minor units"})
    rental = fields.Integer()
    seats = fields.Integer()
    recurring = fields.Integer()
    total = fields.Integer()


class ReportTotals(ReportRow):
    class Meta:
        exclude = ("unit_id", "unit")


class ReportOut(Schema):
    account_id = fields.Integer()
    currency = fields.String()
    start = fields.Date()
    end = fields.Date()
    number_rental_price = fields.String()
    seat_price = fields.String()
    units = fields.List(fields.Nested(ReportRow))
    totals = fields.Nested(ReportTotals)


class SettingsOut(Schema):
    number_rental_price = fields.String()
    seat_price = fields.String()


def _account(account_id):
    return svc.account_for(api_user(), account_id)


# -- units -------------------------------------------------------------------------------------


@blp.route("/accounts/<int:account_id>/billing-units", methods=["GET"])
@blp.response(200, UnitOut(many=True))
@api_login_required
def list_units(account_id):
    """Billing units of an account (needs Edit Billing and View or Edit Billing unit)."""
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return svc.units_of(account)


@blp.route("/accounts/<int:account_id>/billing-units", methods=["POST"])
@blp.arguments(svc.UnitInput)
@blp.response(201, UnitOut)
@api_login_required
def create_unit(data, account_id):
    """Create a unit with its users, teams and numbers; a number held by another unit is
    refused with 409 naming that unit."""
    return svc.create_unit(api_user(), _account(account_id), data)


def _unit(unit_id) -> BillingUnit:
    return svc.get_object(BillingUnit, api_user(), unit_id)


@blp.route("/billing-units/<int:unit_id>", methods=["GET"])
@blp.response(200, UnitOut)
@api_login_required
def get_unit(unit_id):
    unit = _unit(unit_id)
    svc.require_view(api_user(), unit.account)
    return unit


@blp.route("/billing-units/<int:unit_id>", methods=["PATCH"])
@blp.arguments(svc.UnitPatch(partial=True))
@blp.response(200, UnitOut)
@api_login_required
def update_unit(data, unit_id):
    """Change name and/or replace the lists of users, teams or numbers."""
    return svc.update_unit(api_user(), _unit(unit_id), request.get_json(silent=True) or {})


@blp.route("/billing-units/<int:unit_id>", methods=["DELETE"])
@blp.response(204)
@api_login_required
def delete_unit(unit_id):
    """Delete a unit; its numbers become available again."""
    svc.delete_unit(api_user(), _unit(unit_id))


# -- numbers -----------------------------------------------------------------------------------


@blp.route("/accounts/<int:account_id>/phone-numbers", methods=["GET"])
@blp.response(200, NumberOut(many=True))
@api_login_required
def list_numbers(account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return svc.numbers_of(account)


@blp.route("/accounts/<int:account_id>/phone-numbers", methods=["POST"])
@blp.arguments(svc.NumberInput)
@blp.response(201, NumberOut)
@api_login_required
def create_number(data, account_id):
    """Add an E.164 phone number to the account."""
    return svc.create_number(api_user(), _account(account_id), data)


@blp.route("/phone-numbers/<int:number_id>", methods=["DELETE"])
@blp.response(204)
@api_login_required
def delete_number(number_id):
    svc.delete_number(api_user(), svc.get_object(PhoneNumber, api_user(), number_id))


# -- teams -------------------------------------------------------------------------------------


@blp.route("/accounts/<int:account_id>/teams", methods=["GET"])
@blp.response(200, TeamOut(many=True))
@api_login_required
def list_teams(account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return svc.teams_of(account)


@blp.route("/accounts/<int:account_id>/teams", methods=["POST"])
@blp.arguments(svc.TeamInput)
@blp.response(201, TeamOut)
@api_login_required
def create_team(data, account_id):
    return svc.create_team(api_user(), _account(account_id), data)


@blp.route("/teams/<int:team_id>", methods=["PATCH"])
@blp.arguments(svc.TeamPatch(partial=True))
@blp.response(200, TeamOut)
@api_login_required
def update_team(data, team_id):
    """Rename or replace the members; units the team is assigned to follow (live)."""
    team = svc.get_object(Team, api_user(), team_id)
    return svc.update_team(api_user(), team, request.get_json(silent=True) or {})


@blp.route("/teams/<int:team_id>", methods=["DELETE"])
@blp.response(204)
@api_login_required
def delete_team(team_id):
    svc.delete_team(api_user(), svc.get_object(Team, api_user(), team_id))


# -- call records, settings, report ------------------------------------------------------------


@blp.route("/accounts/<int:account_id>/call-records", methods=["POST"])
@blp.arguments(CallsIn)
@blp.response(200, CallsResult)
@api_login_required
def add_calls(data, account_id):
    """Store many rated call records at once, all or nothing; idempotent by external_id."""
    return svc.add_calls(api_user(), _account(account_id), data["records"])


@blp.route("/accounts/<int:account_id>/call-records", methods=["GET"])
@blp.arguments(PeriodArgs, location="query")
@blp.response(200, CallOut(many=True))
@api_login_required
def list_calls(args, account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    start, end = svc.parse_period(args) if args else (None, None)
    return list(svc.calls_of(account, start, end, limit=1000))


@blp.route("/accounts/<int:account_id>/billing-units/settings", methods=["GET"])
@blp.response(200, SettingsOut)
@api_login_required
def get_settings(account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return svc.settings_for(account)


@blp.route("/accounts/<int:account_id>/billing-units/settings", methods=["PUT"])
@blp.arguments(svc.SettingsInput)
@blp.response(200, SettingsOut)
@api_login_required
def put_settings(data, account_id):
    """Recurring prices per period: number_rental_price and seat_price (decimal text)."""
    return svc.update_settings(api_user(), _account(account_id), data)


@blp.route("/accounts/<int:account_id>/billing-units/report", methods=["GET"])
@blp.arguments(PeriodArgs, location="query")
@blp.response(200, ReportOut)
@api_login_required
def get_report(args, account_id):
    """Usage and recurring costs per unit for a period, with an Unassigned bucket (amounts in
    minor units)."""
    account = _account(account_id)
    return svc.report(api_user(), account, svc.parse_period(args))


@blp.route("/accounts/<int:account_id>/billing-units/report.csv", methods=["GET"])
@blp.arguments(PeriodArgs, location="query")
@blp.response(200, {"type": "string"}, content_type="text/csv")
@api_login_required
def get_report_csv(args, account_id):
    """The same report as CSV (amounts in major units)."""
    account = _account(account_id)
    data = svc.report(api_user(), account, svc.parse_period(args))
    return Response(
        svc.report_csv(data),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename=billing-units-{data['start']}.csv"},
    )
