"""Panel pages: the Billing units sub-tab of an account's Billing page (table, Add/Edit
billing unit with the User and Number assignment panels), the cost report with CSV export and
a bar chart, and simple pages for the account's teams and phone numbers.

The pages sit under the core's Billing page (``core.billing.web.account_views``: its sub-tab row,
its "Billing" heading); this plugin's own pages are a second row inside its sub-tab. View
Billing unit alone opens every page read-only: no edit control is rendered and every POST
checks Edit Billing unit before reading the form (403), so a hand-made POST changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup, escape

from core.kit import (
    BillhiveError,
    PeriodError,
    ValidationFailed,
    billing_subtabs,
    form_errors,
    format_money,
    parse_date,
)
from plugins.billing_units.models import BillingUnit, PhoneNumber, Team
from plugins.billing_units.service import recording
from plugins.billing_units.service import report as unit_report
from plugins.billing_units.service import units as svc

blueprint = Blueprint("billing_units", __name__, template_folder="templates")
TAB = "billing_account.index"  # the account's Billing tab
SUBTAB = "billing_units.units"  # our sub-tab of the Billing page


#: What the forms call their fields (their labels and assignment panels), for messages.
LABELS = {
    "name": "Name",
    "user_ids": "Assigned users",
    "team_ids": "Assigned teams",
    "number_ids": "Assigned numbers",
    "e164": "Number",
    "label": "Label",
    "number_rental_price": "Number rental price",
    "seat_price": "Seat price per user",
    "days": "Retention (days)",
    "file": "Import storage records (CSV)",
}


def _ids(name: str) -> list[int]:
    out = []
    for value in request.form.getlist(name):
        try:
            out.append(int(value))
        except ValueError:
            continue
    return out


def _ctx(account, page: str, **extra) -> dict:
    return {
        "account": account,
        "tab": TAB,
        "sub": SUBTAB,
        "subtabs": billing_subtabs(account),
        "page": page,
        "can_edit": svc.can_edit(current_user, account),
        "money": format_money,
        **extra,
    }


def _account(account_id):
    return svc.account_for(current_user, account_id)


# -- billing units -----------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/units")
@login_required
def units(account_id):
    account = _account(account_id)
    svc.require_view(current_user, account)
    rows = [
        {
            "unit": u,
            "users": svc.unit_users(u),
            "teams": svc.unit_teams(u),
            "effective": svc.effective_users(u),
            "numbers": svc.unit_numbers(u),
        }
        for u in svc.units_of(account)
    ]
    return render_template("billing_units/units.html", rows=rows, **_ctx(account, "units"))


def _unit_form(account, unit: BillingUnit | None):
    if unit is None:
        values = {"name": "", "user_ids": [], "team_ids": [], "number_ids": []}
    else:
        values = {
            "name": unit.name,
            "user_ids": [u.id for u in svc.unit_users(unit)],
            "team_ids": [t.id for t in svc.unit_teams(unit)],
            "number_ids": [n.id for n in svc.unit_numbers(unit)],
        }
    errors = {}
    if request.method == "POST":
        values = {
            "name": request.form.get("name", ""),
            "user_ids": _ids("user_ids"),
            "team_ids": _ids("team_ids"),
            "number_ids": _ids("number_ids"),
        }
        try:
            if unit is None:
                saved = svc.create_unit(current_user, account, values)
                flash(f"Billing unit '{saved.name}' added.")
            else:
                saved = svc.update_unit(current_user, unit, values)
                flash(f"Billing unit '{saved.name}' saved.")
        except BillhiveError as exc:
            errors = form_errors(exc, LABELS)
        else:
            return redirect(url_for("billing_units.units", account_id=account.id))
    from core.kit import User

    people = list(User.select().where(User.account == account).order_by(User.email))
    return render_template(
        "billing_units/unit_form.html",
        unit=unit,
        values=values,
        errors=errors,
        people=people,
        teams=svc.teams_of(account),
        numbers=svc.available_numbers(account, unit),
        **_ctx(account, "units"),
    ), (422 if errors else 200)


@blueprint.route("/accounts/<int:account_id>/billing/units/new", methods=["GET", "POST"])
@login_required
def new_unit(account_id):
    account = _account(account_id)
    svc.require_edit(current_user, account)
    return _unit_form(account, None)


def _unit(account_id, unit_id) -> BillingUnit:
    unit = svc.get_object(BillingUnit, current_user, unit_id)
    if unit.account_id != account_id:
        from core.kit import NotFound

        raise NotFound(f"billing unit {unit_id} not found")
    return unit


@blueprint.route("/accounts/<int:account_id>/billing/units/<int:unit_id>", methods=["GET", "POST"])
@login_required
def edit_unit(account_id, unit_id):
    unit = _unit(account_id, unit_id)
    svc.require_edit(current_user, unit.account)
    return _unit_form(unit.account, unit)


@blueprint.route("/accounts/<int:account_id>/billing/units/<int:unit_id>/delete", methods=["POST"])
@login_required
def delete_unit(account_id, unit_id):
    unit = _unit(account_id, unit_id)
    svc.require_edit(current_user, unit.account)
    name = unit.name
    svc.delete_unit(current_user, unit)
    flash(f"Billing unit '{name}' deleted; its numbers are available again.")
    return redirect(url_for("billing_units.units", account_id=account_id))


# -- teams -------------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/teams", methods=["GET", "POST"])
@login_required
def teams(account_id):
    account = _account(account_id)
    svc.require_view(current_user, account)
    errors, values = {}, {}
    if request.method == "POST":
        svc.require_edit(current_user, account)  # View Billing unit alone: 403
        values = {"name": request.form.get("name", ""), "user_ids": _ids("user_ids")}
        team_id = request.form.get("team_id")
        try:
            if team_id:
                team = svc.get_object(Team, current_user, team_id)
                if request.form.get("action") == "delete":
                    svc.delete_team(current_user, team)
                    flash(f"Team '{team.name}' deleted.")
                else:
                    svc.update_team(current_user, team, {"user_ids": values["user_ids"]})
                    flash(f"Team '{team.name}' saved.")
            else:
                team = svc.create_team(current_user, account, values)
                flash(f"Team '{team.name}' added.")
        except BillhiveError as exc:
            errors = form_errors(exc, LABELS)
        else:
            return redirect(url_for("billing_units.teams", account_id=account.id))
    from core.kit import User

    people = list(User.select().where(User.account == account).order_by(User.email))
    rows = [(t, {u.id for u in svc.team_members(t)}) for t in svc.teams_of(account)]
    return render_template(
        "billing_units/teams.html",
        rows=rows,
        people=people,
        errors=errors,
        values=values,
        **_ctx(account, "teams"),
    ), (422 if errors else 200)


# -- phone numbers -----------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/numbers", methods=["GET", "POST"])
@login_required
def numbers(account_id):
    account = _account(account_id)
    svc.require_view(current_user, account)
    errors, values = {}, {}
    if request.method == "POST":
        svc.require_edit(current_user, account)  # View Billing unit alone: 403
        values = request.form.to_dict()
        try:
            if request.form.get("number_id"):
                number = svc.get_object(PhoneNumber, current_user, request.form["number_id"])
                svc.delete_number(current_user, number)
                flash(f"Number {number.e164} deleted.")
            else:
                number = svc.create_number(
                    current_user,
                    account,
                    {"e164": values.get("e164", ""), "label": values.get("label", "")},
                )
                flash(f"Number {number.e164} added.")
        except BillhiveError as exc:
            errors = form_errors(exc, LABELS)
        else:
            return redirect(url_for("billing_units.numbers", account_id=account.id))
    held = svc.number_units(account)
    rows = [(n, held.get(n.id)) for n in svc.numbers_of(account)]
    return render_template(
        "billing_units/numbers.html",
        rows=rows,
        errors=errors,
        values=values,
        **_ctx(account, "numbers"),
    ), (422 if errors else 200)


# -- report ------------------------------------------------------------------------------------


def bar_chart(data: dict) -> Markup:
    """Cost per unit as an inline SVG bar chart (server-rendered, no script, no CDN)."""
    rows = data["units"]
    cur = data["currency"]
    biggest = max([r["total"] for r in rows] + [1])
    bar_h, gap, label_w, chart_w = 22, 8, 160, 420
    height = len(rows) * (bar_h + gap) + gap
    parts = [
        f'<svg class="bu-chart" role="img" aria-label="Cost per billing unit" xmlns="http://www.w3.org/2000/svg" '
        f'width="{label_w + chart_w + 170}" height="{height}" viewBox="0 0 {label_w + chart_w + 170} {height}">'
    ]
    for i, r in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = 0 if r["total"] <= 0 else max(1, round(chart_w * r["total"] / biggest))
        usage_w = 0 if r["total"] <= 0 else round(w * max(r["usage"], 0) / r["total"])
        name = escape(r["unit"])
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h * 0.7}" text-anchor="end" font-size="13">{name}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" fill="#7aa6d8"><title>{name}: '
            f"{escape(format_money(r['total'], cur))}</title></rect>"
            f'<rect x="{label_w}" y="{y}" width="{usage_w}" height="{bar_h}" fill="#2f6db5"/>'
            f'<text x="{label_w + w + 6}" y="{y + bar_h * 0.7}" font-size="12">'
            f"{escape(format_money(r['total'], cur))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


@blueprint.route("/accounts/<int:account_id>/billing/report", methods=["GET", "POST"])
@login_required
def report(account_id):
    """The period's invoiced charges per unit; the seller sets the prices here (a POST needs
    Edit Billing unit, then the billing-terms rule: from an account above only)."""
    account = _account(account_id)
    svc.require_view(current_user, account)
    errors, status = {}, 200
    if request.method == "POST":
        svc.require_edit(current_user, account)  # View Billing unit alone: 403
        try:
            svc.update_settings(
                current_user,
                account,
                {
                    "number_rental_price": request.form.get("number_rental_price", ""),
                    "seat_price": request.form.get("seat_price", ""),
                },
            )
        except BillhiveError as exc:
            errors = form_errors(exc, LABELS)
            status = exc.status if exc.status in (403, 404, 409) else 422
        else:
            flash("Prices saved.")
            return redirect(url_for("billing_units.report", account_id=account.id, **request.args))
    period = svc.parse_period(_period_args())
    data = unit_report.for_period(current_user, account, period)
    return render_template(
        "billing_units/report.html",
        data=data,
        last_day=period[1] - timedelta(days=1),
        chart=bar_chart(data),
        settings=svc.settings_for(account),
        can_set_prices=svc.can_set_prices(current_user, account),
        errors=errors,
        **_ctx(account, "report"),
    ), status


def _period_args() -> dict:
    """The report's form reads "From … To (included)" like the statements and the activity
    page (one meaning for a range people ask for): ``to`` is the last day shown. The
    service's ``end`` (the day after, as the API takes it) is still understood."""
    args = request.args.to_dict()
    if args.get("to") and not args.get("end"):
        try:
            args["end"] = (parse_date(args["to"], "to") + timedelta(days=1)).isoformat()
        except PeriodError as exc:
            raise ValidationFailed.field("to", str(exc)) from None
    return args


@blueprint.route("/accounts/<int:account_id>/billing/report.csv")
@login_required
def report_csv(account_id):
    account = _account(account_id)
    data = unit_report.for_period(current_user, account, svc.parse_period(_period_args()))
    return Response(
        unit_report.as_csv(data),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename=billing-units-{data['start']}.csv"},
    )


# -- call recording ----------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/recording", methods=["GET", "POST"])
@login_required
def recording_page(account_id):
    """The Call recording sub-tab: storage per unit in a period, its invoiced charges, the
    retention setting (a POST needs Edit Billing unit) and a CSV import of storage records."""
    account = _account(account_id)
    svc.require_view(current_user, account)
    errors, values, status = {}, {}, 200
    if request.method == "POST":
        svc.require_edit(current_user, account)  # View Billing unit alone: 403
        try:
            if request.form.get("action") == "import":
                upload = request.files.get("file")
                if upload is None or not upload.filename:
                    raise ValidationFailed.field("file", "choose a CSV file")
                try:
                    text = upload.read(5_000_001).decode("utf-8-sig")
                except UnicodeDecodeError:
                    raise ValidationFailed.field("file", "must be a UTF-8 CSV file") from None
                if len(text) > 5_000_000:
                    raise ValidationFailed.field("file", "must be at most 5 MB")
                result = recording.import_storage_csv(current_user, account, text)
                flash(f"{result['created']} storage record(s) imported, "
                      f"{result['duplicates']} already present.")  # fmt: skip
            else:
                values = {"days": request.form.get("days", "")}
                days = values["days"].strip()
                row = recording.set_retention(
                    current_user, account, {"days": int(days) if days.isdigit() else days}
                )
                flash(f"Recordings are kept {row.days} days from {row.effective_from} on.")
        except BillhiveError as exc:
            errors = form_errors(exc, LABELS)
            status = exc.status if exc.status in (403, 404, 409) else 422
        else:
            return redirect(url_for("billing_units.recording_page", account_id=account.id,
                                    **request.args))  # fmt: skip
    period = svc.parse_period(_period_args())
    data = unit_report.recording_page(account, period)
    return render_template(
        "billing_units/recording.html",
        data=data,
        last_day=period[1] - timedelta(days=1),
        history=recording.retention_history(account),
        values=values or {"days": data["retention_days"]},
        errors=errors,
        product_code=recording.PRODUCT_CODE,
        **{**_ctx(account, "recording"), "sub": "billing_units.recording_page"},
    ), status
