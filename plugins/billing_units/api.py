"""REST resources of billing_units under /api/v1 (flask-smorest, in the OpenAPI document)."""

from __future__ import annotations

from flask import Response, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from core.kit import Text, UtcDateTime, api_login_required, api_user
from plugins.billing_units.models import BillingUnit, PhoneNumber, Team
from plugins.billing_units.service import recording, report
from plugins.billing_units.service import units as svc

blueprint = Blueprint(
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
    """A unit's invoiced charges of the period, net of tax, minor units."""

    unit_id = fields.Integer(allow_none=True, metadata={"description": "null: Unassigned, or "
                                                        "a unit renamed or deleted since"})  # fmt: skip
    unit = fields.String(metadata={"description": "the unit's name as invoiced"})
    billed_as = fields.Boolean(metadata={"description": "true: no unit has this name now"})
    numbers = fields.Integer(metadata={"description": "numbers invoiced (rental quantity)"})
    users = fields.Integer(metadata={"description": "seats invoiced"})
    usage = fields.Integer(metadata={"description": "calls"})
    rental = fields.Integer(metadata={"description": "number rental"})
    seats = fields.Integer()
    recording = fields.Integer(metadata={"description": "recording storage (its share)"})
    recurring = fields.Integer(metadata={"description": "rental + seats"})
    credited = fields.Integer(metadata={"description": "credit notes, included in the columns"})
    total = fields.Integer(metadata={"description": "usage + rental + seats + recording"})


class ReportTotals(ReportRow):
    class Meta:
        exclude = ("unit_id", "unit", "billed_as")


class ReportInvoice(Schema):
    id = fields.Integer()
    number = fields.String(allow_none=True)
    kind = fields.String()
    status = fields.String()


class PendingRow(Schema):
    unit = fields.String()
    total = fields.Integer()


class NotInvoiced(Schema):
    start = fields.Date()
    end = fields.Date()
    units = fields.List(fields.Nested(PendingRow))
    total = fields.Integer(metadata={"description": "estimate at today's assignments and prices"})


class ReportOut(Schema):
    account_id = fields.Integer()
    currency = fields.String()
    start = fields.Date()
    end = fields.Date()
    number_rental_price = fields.String(metadata={"description": "the seller's price today"})
    seat_price = fields.String(metadata={"description": "the seller's price today"})
    billed_through = fields.Date(allow_none=True)
    units = fields.List(fields.Nested(ReportRow))
    totals = fields.Nested(ReportTotals)
    invoices = fields.List(fields.Nested(ReportInvoice),
                           metadata={"description": "the invoices and credit notes read"})  # fmt: skip
    not_invoiced = fields.Nested(NotInvoiced, allow_none=True,
                                 metadata={"description": "days of the period not invoiced yet: "
                                           "an estimate, not part of the totals"})  # fmt: skip


class SettingsOut(Schema):
    number_rental_price = fields.String()
    seat_price = fields.String()


def _account(account_id):
    return svc.account_for(api_user(), account_id)


# -- units -------------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing-units", methods=["GET"])
@blueprint.response(200, UnitOut(many=True))
@api_login_required
def list_units(account_id):
    """Billing units of an account (needs Edit Billing and View or Edit Billing unit)."""
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return svc.units_of(account)


@blueprint.route("/accounts/<int:account_id>/billing-units", methods=["POST"])
@blueprint.arguments(svc.UnitInput)
@blueprint.response(201, UnitOut)
@api_login_required
def create_unit(data, account_id):
    """Create a unit with its users, teams and numbers; a number held by another unit is
    refused with 409 naming that unit."""
    return svc.create_unit(api_user(), _account(account_id), data)


def _unit(unit_id) -> BillingUnit:
    return svc.get_object(BillingUnit, api_user(), unit_id)


@blueprint.route("/billing-units/<int:unit_id>", methods=["GET"])
@blueprint.response(200, UnitOut)
@api_login_required
def get_unit(unit_id):
    unit = _unit(unit_id)
    svc.require_view(api_user(), unit.account)
    return unit


@blueprint.route("/billing-units/<int:unit_id>", methods=["PATCH"])
@blueprint.arguments(svc.UnitPatch(partial=True))
@blueprint.response(200, UnitOut)
@api_login_required
def update_unit(data, unit_id):
    """Change name and/or replace the lists of users, teams or numbers."""
    return svc.update_unit(api_user(), _unit(unit_id), request.get_json(silent=True) or {})


@blueprint.route("/billing-units/<int:unit_id>", methods=["DELETE"])
@blueprint.response(204)
@api_login_required
def delete_unit(unit_id):
    """Delete a unit; its numbers become available again."""
    svc.delete_unit(api_user(), _unit(unit_id))


# -- numbers -----------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/phone-numbers", methods=["GET"])
@blueprint.response(200, NumberOut(many=True))
@api_login_required
def list_numbers(account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return svc.numbers_of(account)


@blueprint.route("/accounts/<int:account_id>/phone-numbers", methods=["POST"])
@blueprint.arguments(svc.NumberInput)
@blueprint.response(201, NumberOut)
@api_login_required
def create_number(data, account_id):
    """Add an E.164 phone number to the account."""
    return svc.create_number(api_user(), _account(account_id), data)


@blueprint.route("/phone-numbers/<int:number_id>", methods=["DELETE"])
@blueprint.response(204)
@api_login_required
def delete_number(number_id):
    svc.delete_number(api_user(), svc.get_object(PhoneNumber, api_user(), number_id))


# -- teams -------------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/teams", methods=["GET"])
@blueprint.response(200, TeamOut(many=True))
@api_login_required
def list_teams(account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return svc.teams_of(account)


@blueprint.route("/accounts/<int:account_id>/teams", methods=["POST"])
@blueprint.arguments(svc.TeamInput)
@blueprint.response(201, TeamOut)
@api_login_required
def create_team(data, account_id):
    return svc.create_team(api_user(), _account(account_id), data)


@blueprint.route("/teams/<int:team_id>", methods=["PATCH"])
@blueprint.arguments(svc.TeamPatch(partial=True))
@blueprint.response(200, TeamOut)
@api_login_required
def update_team(data, team_id):
    """Rename or replace the members; units the team is assigned to follow (live)."""
    team = svc.get_object(Team, api_user(), team_id)
    return svc.update_team(api_user(), team, request.get_json(silent=True) or {})


@blueprint.route("/teams/<int:team_id>", methods=["DELETE"])
@blueprint.response(204)
@api_login_required
def delete_team(team_id):
    svc.delete_team(api_user(), svc.get_object(Team, api_user(), team_id))


# -- call records, settings, report ------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/call-records", methods=["POST"])
@blueprint.arguments(CallsIn)
@blueprint.response(200, CallsResult)
@api_login_required
def add_calls(data, account_id):
    """Store many rated call records at once, all or nothing; idempotent by external_id."""
    return svc.add_calls(api_user(), _account(account_id), data["records"])


@blueprint.route("/accounts/<int:account_id>/call-records", methods=["GET"])
@blueprint.arguments(PeriodArgs, location="query")
@blueprint.response(200, CallOut(many=True))
@api_login_required
def list_calls(args, account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    start, end = svc.parse_period(args) if args else (None, None)
    return list(svc.calls_of(account, start, end, limit=1000))


@blueprint.route("/accounts/<int:account_id>/billing-units/settings", methods=["GET"])
@blueprint.response(200, SettingsOut)
@api_login_required
def get_settings(account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return svc.settings_for(account)


@blueprint.route("/accounts/<int:account_id>/billing-units/settings", methods=["PUT"])
@blueprint.arguments(svc.SettingsInput)
@blueprint.response(200, SettingsOut)
@blueprint.alt_response(403, response="DEFAULT_ERROR", description="Not from an account above this "
                  "one with accounts.billing_terms and billing_units.edit")  # fmt: skip
@blueprint.alt_response(404, response="DEFAULT_ERROR", description="Not in your subtree")
@api_login_required
def put_settings(data, account_id):
    """The prices the seller invoices per period: number_rental_price and seat_price
    (decimal text). Billing terms: set from an account above, never by the customer."""
    return svc.update_settings(api_user(), _account(account_id), data)


@blueprint.route("/accounts/<int:account_id>/billing-units/report", methods=["GET"])
@blueprint.arguments(PeriodArgs, location="query")
@blueprint.response(200, ReportOut)
@api_login_required
def get_report(args, account_id):
    """The period's invoiced charges per unit (calls, number rental, seats, recording
    storage, credit notes deducted; net of tax, minor units), with an Unassigned bucket; the
    total equals what the account was invoiced for them. Days not invoiced yet come apart,
    as an estimate."""
    account = _account(account_id)
    return report.for_period(api_user(), account, svc.parse_period(args))


@blueprint.route("/accounts/<int:account_id>/billing-units/report.csv", methods=["GET"])
@blueprint.arguments(PeriodArgs, location="query")
@blueprint.response(200, {"type": "string"}, content_type="text/csv")
@api_login_required
def get_report_csv(args, account_id):
    """The same report as CSV (amounts in major units)."""
    account = _account(account_id)
    data = report.for_period(api_user(), account, svc.parse_period(args))
    return Response(
        report.as_csv(data),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename=billing-units-{data['start']}.csv"},
    )


# -- call recording --------------------------------------------------------------------------


class RecordingRow(Schema):
    unit = fields.String()
    gigabytes = fields.String(metadata={"description": "storage used in the period (GB)"})
    charges = fields.Integer(metadata={"description": "invoiced, minor units (its share)"})


class RecordingPlan(Schema):
    subscription_id = fields.Integer()
    plan = fields.String()
    usage_rate = fields.String()
    unit = fields.String()
    billed_through = fields.Date(allow_none=True)


class RecordingOut(Schema):
    account_id = fields.Integer()
    currency = fields.String()
    start = fields.Date()
    end = fields.Date()
    units = fields.List(fields.Nested(RecordingRow))
    total_gigabytes = fields.String()
    total_charges = fields.Integer()
    retention_days = fields.Integer()
    retention_since = fields.Date(allow_none=True)
    plans = fields.List(fields.Nested(RecordingPlan))


class RetentionOut(Schema):
    days = fields.Integer()
    effective_from = fields.Date(allow_none=True, metadata={
        "description": "the first day not invoiced yet when it was set"})  # fmt: skip


@blueprint.route("/accounts/<int:account_id>/recording", methods=["GET"])
@blueprint.arguments(PeriodArgs, location="query")
@blueprint.response(200, RecordingOut)
@blueprint.alt_response(403, response="DEFAULT_ERROR", description="Neither unit privilege")
@blueprint.alt_response(404, response="DEFAULT_ERROR", description="Not in your subtree")
@api_login_required
def get_recording(args, account_id):
    """Call recording storage used per billing unit in a period, its invoiced charges and the
    retention in force."""
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return report.recording_page(account, svc.parse_period(args))


@blueprint.route("/accounts/<int:account_id>/recording/storage", methods=["POST"])
@blueprint.arguments(recording.StorageBatch)
@blueprint.response(200, CallsResult)
@blueprint.alt_response(403, response="DEFAULT_ERROR", description="No Edit Billing unit, or the "
                  "licence lacks BH-UNITS")  # fmt: skip
@blueprint.alt_response(404, response="DEFAULT_ERROR", description="Not in your subtree")
@api_login_required
def add_storage(data, account_id):
    """Storage used by call recordings: records ``{external_id, number, date, gigabytes}``,
    all or nothing, idempotent by external_id; each becomes a usage record of the account's
    recording-storage subscription (product code BU-REC), rated by the seller's plan. A day
    already invoiced is refused (422 naming the record and field)."""
    return recording.add_storage(api_user(), _account(account_id), data["records"])


@blueprint.route("/accounts/<int:account_id>/recording/retention", methods=["GET"])
@blueprint.response(200, RetentionOut)
@api_login_required
def get_retention(account_id):
    account = _account(account_id)
    svc.require_view(api_user(), account)
    return recording.retention(account)


@blueprint.route("/accounts/<int:account_id>/recording/retention", methods=["PUT"])
@blueprint.arguments(recording.RetentionInput)
@blueprint.response(200, RetentionOut)
@blueprint.alt_response(403, response="DEFAULT_ERROR", description="No Edit Billing unit")
@blueprint.alt_response(404, response="DEFAULT_ERROR", description="Not in your subtree")
@api_login_required
def put_retention(data, account_id):
    """Days a recording is kept (1 to 3650); it applies from the first day not invoiced yet
    on and never changes a billed period."""
    return recording.set_retention(api_user(), _account(account_id), data)
