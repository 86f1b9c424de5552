"""REST API of dunning (core.billing.ledger.dunning): an issuer's levels, an account's pause, the
steps taken for an invoice. Accounts and invoices outside the caller's subtree answer 404."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from core import rbac
from core.api.schemas import UtcDateTime
from core.auth import api_login_required, api_user
from core.billing.ledger import dunning
from core.billing.models import Invoice
from core.billing.money import format_money, to_decimal
from core.mail.messages import reminder_status
from core.models import Account

blp = Blueprint("billing_dunning_api", __name__, url_prefix="/api/v1",
                description="Dunning: levels per issuer, pauses per account, steps per "
                            "invoice")  # fmt: skip


def blueprints():
    return [blp]


class LevelOut(Schema):
    level = fields.String(attribute="code", metadata={"description": "reminder_1, reminder_2 "
                                                                     "or final_notice"})  # fmt: skip
    title = fields.String()
    days = fields.Integer(metadata={"description": "days after the due date"})
    enabled = fields.Boolean()
    fee = fields.Method("_fee", metadata={"description": "late fee in major units"})
    fee_minor = fields.Integer(attribute="fee")
    fee_currency = fields.String()
    suspend = fields.Boolean()

    def _fee(self, level):
        return str(to_decimal(level.fee, level.fee_currency)) if level.fee else "0"


class LevelsOut(Schema):
    issuer_id = fields.Integer()
    levels = fields.List(fields.Nested(LevelOut))


class PauseOut(Schema):
    account_id = fields.Integer()
    paused = fields.Boolean()
    reason = fields.String(allow_none=True)
    paused_at = UtcDateTime(allow_none=True)
    paused_by = fields.String(allow_none=True, metadata={"description": "e-mail of who paused"})


class StepOut(Schema):
    level = fields.String()
    run_date = fields.Date(metadata={"description": "the date the run dunned as of"})
    days_overdue = fields.Integer()
    status = fields.Method("_status", metadata={"description": "done, in progress, or "
                                                "sending failed (retried by the next run)"})  # fmt: skip
    fee_invoice_id = fields.Integer(allow_none=True)
    fee_invoice_number = fields.Method("_fee_number")
    fee = fields.Method("_fee")
    note = fields.String()
    mailed_at = UtcDateTime(allow_none=True, metadata={"description": "handed to the mailer"})
    mail_status = fields.Method("_mail_status", metadata={
        "description": "the reminder in the send history: sent, queued (retried), "
                       "failed: why; null before it was handed over"})  # fmt: skip
    mail_error = fields.String(allow_none=True)
    suspended = fields.Boolean(metadata={"description": "the final notice suspended the account"})
    created_at = UtcDateTime()

    def _status(self, step):
        return dunning.step_status(step)

    def _mail_status(self, step):
        return reminder_status(step)

    def _fee_invoice(self, step):
        return Invoice.get_by_id(step.fee_invoice_id) if step.fee_invoice_id else None

    def _fee_number(self, step):
        fee = self._fee_invoice(step)
        return fee.number if fee else None

    def _fee(self, step):
        fee = self._fee_invoice(step)
        return format_money(fee.total, fee.currency) if fee else None


class InvoiceDunningOut(Schema):
    invoice_id = fields.Integer()
    paused = fields.Boolean(metadata={"description": "the billed account's dunning is paused"})
    steps = fields.List(fields.Nested(StepOut))


def _issuer(account_id) -> Account:
    user = api_user()
    account = rbac.get_account(user, account_id)  # 404 outside the subtree
    rbac.require(user, "billing.view")
    return account


def _pause_out(account: Account) -> dict:
    row = dunning.pause_of(account)
    return {"account_id": account.id, "paused": row is not None,
            "reason": row.reason if row else None, "paused_at": row.paused_at if row else None,
            "paused_by": row.paused_by.email if row and row.paused_by_id else None}  # fmt: skip


@blp.route("/accounts/<int:account_id>/dunning/levels", methods=["GET"])
@blp.response(200, LevelsOut)
@blp.alt_response(403, description="without billing.view")
@blp.alt_response(404, description="the account is outside your subtree")
@api_login_required
def get_levels(account_id):
    """The dunning levels of an issuer (the provider or a reseller): its own, else the
    defaults (reminder at due + 3 days, second at + 14, final notice at + 30)."""
    account = _issuer(account_id)
    return {"issuer_id": account.id, "levels": dunning.levels_of(account)}


@blp.route("/accounts/<int:account_id>/dunning/levels", methods=["PUT"])
@blp.arguments(dunning.LevelsInput)
@blp.response(200, LevelsOut)
@blp.alt_response(403, description="without invoices.issue, or the account does not sell")
@blp.alt_response(404, description="the account is outside your subtree")
@blp.alt_response(422, description="days not ascending, a fee below 0 or above the money "
                  "limit, more decimals than its currency has, an unknown currency")  # fmt: skip
@api_login_required
def put_levels(data, account_id):
    """Replace the issuer's three levels: days ascending (1-3650), late fee 0 or more in an
    ISO 4217 currency (invoiced separately, only to invoices in that currency), suspension on
    the final notice only. Audited."""
    user = api_user()
    account = rbac.get_account(user, account_id)
    levels = dunning.update_levels(user, account, {"levels": data["levels"]})
    return {"issuer_id": account.id, "levels": levels}


@blp.route("/accounts/<int:account_id>/dunning", methods=["GET"])
@blp.response(200, PauseOut)
@blp.alt_response(403, description="without billing.view")
@blp.alt_response(404, description="the account is outside your subtree")
@api_login_required
def get_pause(account_id):
    """Whether the account's dunning is paused."""
    return _pause_out(_issuer(account_id))


@blp.route("/accounts/<int:account_id>/dunning/pause", methods=["POST"])
@blp.arguments(dunning.PauseInput)
@blp.response(200, PauseOut)
@blp.alt_response(403, description="without invoices.issue, or your own account")
@blp.alt_response(404, description="the account is outside your subtree")
@blp.alt_response(409, description="already paused")
@blp.alt_response(422, description="a reason longer than 500 characters or with control "
                  "characters or a card number")  # fmt: skip
@api_login_required
def post_pause(data, account_id):
    """Pause the dunning of an account below yours (no reminders, fees or suspension while
    paused). Audited."""
    user = api_user()
    account = rbac.get_account(user, account_id)
    dunning.pause(user, account, data)
    return _pause_out(account)


@blp.route("/accounts/<int:account_id>/dunning/resume", methods=["POST"])
@blp.response(200, PauseOut)
@blp.alt_response(403, description="without invoices.issue, or your own account")
@blp.alt_response(404, description="the account is outside your subtree")
@blp.alt_response(409, description="not paused")
@api_login_required
def post_resume(account_id):
    """Dun the account again: the next run takes the level each invoice has reached. Audited."""
    user = api_user()
    account = rbac.get_account(user, account_id)
    dunning.resume(user, account)
    return _pause_out(account)


@blp.route("/invoices/<int:invoice_id>/dunning", methods=["GET"])
@blp.response(200, InvoiceDunningOut)
@blp.alt_response(403, description="without billing.view")
@blp.alt_response(404, description="the invoice is outside your subtree")
@api_login_required
def get_invoice_dunning(invoice_id):
    """The dunning steps taken for an invoice (each level at most once)."""
    user = api_user()
    invoice = rbac.get_scoped(Invoice, user, invoice_id)  # 404 outside first
    rbac.require(user, "billing.view")
    return {"invoice_id": invoice.id, "paused": dunning.pause_of(invoice.account_id) is not None,
            "steps": dunning.steps_of(invoice)}  # fmt: skip
