"""The Dunning sub-tab of an account's Billing page (panel): the account's dunning pause (set
by its seller) and, for accounts that sell (provider, resellers), their dunning levels.
The rules are :mod:`core.billing.ledger.dunning`'s; this only turns forms into its calls.

Access is the Billing page's ("Edit Billing" on an account in the caller's subtree, 404
outside it); saving levels and pausing also need ``invoices.issue`` (checked by the rules).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user, login_required

from core.billing.ledger import dunning
from core.billing.models import DUNNING_LEVELS
from core.billing.money import to_decimal
from core.billing.web.account_views import _account, _errors, _render
from core.errors import BillhiveError
from core.panel.forms import form_errors

blueprint = Blueprint("billing_dunning", __name__, template_folder="templates")

FIELD_LABELS = {"days": "days after due", "fee": "late fee", "fee_currency": "fee currency",
                "suspend": "suspend", "enabled": "on", "levels": "levels"}  # fmt: skip


def _form_values(levels) -> dict:
    values = {}
    for lv in levels:
        values[f"{lv.code}_days"] = lv.days
        values[f"{lv.code}_enabled"] = lv.enabled
        values[f"{lv.code}_fee"] = str(to_decimal(lv.fee, lv.fee_currency)) if lv.fee else ""
        values[f"{lv.code}_fee_currency"] = lv.fee_currency
        values[f"{lv.code}_suspend"] = lv.suspend
    return values


def _payload(form) -> dict:
    rows = []
    for code in DUNNING_LEVELS:
        days = form.get(f"{code}_days", "").strip()
        rows.append({
            "level": code,
            "days": int(days) if days.lstrip("-").isdigit() and len(days) < 10 else days,
            "enabled": form.get(f"{code}_enabled") == "1",
            "fee": form.get(f"{code}_fee", "").strip() or "0",
            "fee_currency": form.get(f"{code}_fee_currency", "").strip(),
            "suspend": form.get(f"{code}_suspend") == "1",
        })  # fmt: skip
    return {"levels": rows}


def _level_field(key: str) -> str:
    """``levels.<n>.<field>`` (the rules' name) -> ``<code>_<field>`` (the form's input)."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "levels" and parts[1].isdigit():
        if int(parts[1]) < len(DUNNING_LEVELS):
            return f"{DUNNING_LEVELS[int(parts[1])]}_{parts[2]}"
    return key


def _level_errors(exc: BillhiveError) -> tuple[dict, dict]:
    """The levels form's errors (core.panel.forms): per input, and the same for the summary,
    which names each as people read it ("Reminder, days after due")."""
    labels = {f"{code}_{name}": f"{dunning.TITLES[code]}, {label}"
              for code in DUNNING_LEVELS for name, label in FIELD_LABELS.items()}  # fmt: skip
    errors = form_errors(exc, labels | {"levels": "Levels"}, field_of=_level_field)
    return errors, errors


@blueprint.route("/accounts/<int:account_id>/billing/dunning", methods=["GET", "POST"])
@login_required
def dunning_page(account_id):
    account = _account(account_id)
    sells = dunning.is_issuer(account)
    levels = dunning.levels_of(account) if sells else []
    values, errors, summary, pause_errors = _form_values(levels), {}, {}, {}
    if request.method == "POST":
        form = request.form.get("form", "")
        try:
            if form == "levels":
                values = {k: request.form.get(k, "") for k in values}
                for code in DUNNING_LEVELS:  # checkboxes: absent when unticked
                    values[f"{code}_enabled"] = request.form.get(f"{code}_enabled") == "1"
                    values[f"{code}_suspend"] = request.form.get(f"{code}_suspend") == "1"
                dunning.update_levels(current_user, account, _payload(request.form))
                flash("Dunning levels saved.")
            elif form == "pause":
                dunning.pause(current_user, account, {"reason": request.form.get("reason", "")})
                flash(f"Dunning of {account.name} paused.")
            elif form == "resume":
                dunning.resume(current_user, account)
                flash(f"Dunning of {account.name} resumed.")
            else:
                return redirect(url_for("billing_dunning.dunning_page", account_id=account.id))
            return redirect(url_for("billing_dunning.dunning_page", account_id=account.id))
        except BillhiveError as exc:
            if form == "levels":
                errors, summary = _level_errors(exc)
            else:
                pause_errors = _errors(exc)
    can_edit = sells and dunning.can_manage_levels(current_user, account)
    can_pause = account.id != current_user.account_id and dunning.can_manage_levels(
        current_user, account
    )
    return _render("dunning.html", account, "dunning", 422 if (errors or summary or pause_errors)
                   else 200, sells=sells, levels=levels, values=values, errors=errors,
                   summary=summary, pause=dunning.pause_of(account), pause_errors=pause_errors,
                   can_edit=can_edit, can_pause=can_pause, titles=dunning.TITLES,
                   codes=DUNNING_LEVELS)  # fmt: skip
