"""E-mail in the panel: an invoice's send history and "Send again" (on the invoice page), a
message (headers, text, its .eml), the operator's Outbox, and each issuer's templates (a
sub-tab of the Billing page) with a preview.

Who sees what: a message with ``billing.view`` on its account (the buyer's side sees what
was sent to it; the issuer is above it); the Outbox list with ``audit.view`` (operators);
templates with ``billing.edit`` on the issuer account (its admins, or admins above it).
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from core import audit, rbac
from core.billing.models import Invoice
from core.billing.web.account_views import TAB as BILLING_TAB
from core.billing.web.account_views import _account as billing_account
from core.billing.web.account_views import subtabs
from core.db import database, utcnow
from core.errors import BillhiveError, Forbidden, NotFound
from core.mail import messages, templates, transport
from core.mail.models import STATUSES, MailMessage, MailTemplate

blueprint = Blueprint("mail", __name__, template_folder="templates")
PAGE = 50


def init_app(app) -> None:
    app.register_blueprint(blueprint)
    app.jinja_env.globals.update(
        mail_history=mail_history, mail_key=lambda: uuid.uuid4().hex, mail_events=messages.EVENTS
    )


def mail_history(invoice) -> list[MailMessage]:
    """For the invoice page (``billing/invoice.html`` includes ``mail/_invoice_messages.html``)."""
    return messages.history(invoice)


# -- an invoice: send again ------------------------------------------------------------------


@blueprint.route("/billing/invoices/<int:invoice_id>/send-again", methods=["POST"])
@login_required
def send_again(invoice_id):
    rbac.require(current_user, "billing.view")
    invoice = rbac.get_scoped(Invoice, current_user, invoice_id)
    try:
        rbac.require(current_user, "invoices.issue")
        if not invoice.issuer.is_within(current_user.account):
            raise Forbidden("only the issuer's side sends an invoice again")
        event = request.form.get("event") or None
        message = messages.send_again(invoice, current_user, key=request.form.get("key", ""),
                                      event=event)  # fmt: skip
        status = MailMessage.get_by_id(message.id).status
        to = ", ".join(message.recipients) or "nobody"
        flash(f"{messages.EVENTS[message.event]} {invoice.number}: {status} to {to}.",
              "error" if status == "failed" else "info")  # fmt: skip
    except BillhiveError as exc:
        flash(exc.message, "error")
    return redirect(url_for("billing.invoice_page", invoice_id=invoice.id) + "#email")


# -- messages and the outbox -----------------------------------------------------------------


def _message(message_id) -> MailMessage:
    rbac.require(current_user, "billing.view")
    return rbac.get_scoped(MailMessage, current_user, message_id, MailMessage.account)


@blueprint.route("/mail/messages/<int:message_id>")
@login_required
def message_page(message_id):
    message = _message(message_id)
    return render_template("mail/message.html", message=message, events=messages.EVENTS,
                           in_outbox=_outbox_file(message) is not None)  # fmt: skip


def _outbox_file(message):
    if not message.outbox_path:
        return None
    path = transport.outbox_dir() / message.outbox_path
    return path if path.is_file() else None


@blueprint.route("/mail/messages/<int:message_id>.eml")
@login_required
def message_eml(message_id):
    message = _message(message_id)
    path = _outbox_file(message)
    if path is None:
        raise NotFound(f"message {message_id} is not in the outbox (status {message.status}, "
                       f"sent by {message.transport or 'nobody yet'})")  # fmt: skip
    return Response(path.read_bytes(), mimetype="message/rfc822", headers={
        "Content-Disposition": f'attachment; filename="message-{message.id}.eml"'})  # fmt: skip


@blueprint.route("/mail/outbox")
@login_required
def outbox_page():
    rbac.require(current_user, "audit.view")
    status = request.args.get("status", "")
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    query = rbac.scoped(MailMessage.select(), MailMessage.account, current_user)
    if status in STATUSES:
        query = query.where(MailMessage.status == status)
    else:
        status = ""
    rows = list(query.order_by(MailMessage.id.desc()).paginate(page, PAGE))
    return render_template("mail/outbox.html", rows=rows, status=status, statuses=STATUSES,
                           page=page, per_page=PAGE, events=messages.EVENTS,
                           transport=transport.name(), outbox=str(transport.outbox_dir()))  # fmt: skip


# -- templates of an issuer (a sub-tab of the Billing page) ----------------------------------


@blueprint.route("/accounts/<int:account_id>/billing/email-templates", methods=["GET", "POST"])
@login_required
def templates_page(account_id):
    account = billing_account(account_id)
    event = request.values.get("event") or "invoice"
    if event not in messages.EVENTS:
        event = "invoice"
    subject, body, is_default = templates.source_for(account.id, event)
    errors, preview, status = {}, None, 200
    sample = messages.sample_context(account)
    if request.method == "POST":
        action = request.form.get("action", "save")
        if action == "reset":
            _reset(account, event)
            flash(f"The {messages.EVENTS[event].lower()} template is the default again.")
            return redirect(url_for("mail.templates_page", account_id=account.id, event=event))
        subject = request.form.get("subject", "")
        body = request.form.get("body", "").replace("\r\n", "\n")
        errors = {k: "; ".join(v) for k, v in templates.check(subject, body, sample).items()}
        if errors:
            status = 422
        elif action == "preview":
            preview = templates.render_pair(subject, body, sample)
        else:
            _save(account, event, subject, body)
            flash(f"The {messages.EVENTS[event].lower()} template of {account.name} is saved.")
            return redirect(url_for("mail.templates_page", account_id=account.id, event=event))
    elif request.args.get("preview"):
        preview = templates.render_pair(subject, body, sample)
    page = render_template("mail/templates.html", account=account, tab=BILLING_TAB,
                           sub="mail.templates_page", subtabs=subtabs(account),
                           events=messages.EVENTS, event=event, subject=subject, body=body,
                           is_default=is_default, errors=errors, preview=preview,
                           sample=sample)  # fmt: skip
    return page, status


def _save(account, event: str, subject: str, body: str) -> None:
    with database.atomic():
        before = MailTemplate.get_or_none(issuer=account.id, event=event)
        values = {"subject": subject, "body": body, "updated_by": current_user.id,
                  "updated_at": utcnow()}  # fmt: skip
        MailTemplate.insert(issuer=account.id, event=event, **values).on_conflict(
            conflict_target=[MailTemplate.issuer, MailTemplate.event], update=values
        ).execute()
        audit.record(current_user, "mail.template.save", object_type="mail_template",
                     object_id=f"{account.id}:{event}", account=account.id,
                     before={"subject": before.subject, "body": before.body} if before else None,
                     after={"subject": subject, "body": body})  # fmt: skip


def _reset(account, event: str) -> None:
    with database.atomic():
        before = MailTemplate.get_or_none(issuer=account.id, event=event)
        if before is None:
            return
        before.delete_instance()
        audit.record(current_user, "mail.template.reset", object_type="mail_template",
                     object_id=f"{account.id}:{event}", account=account.id,
                     before={"subject": before.subject, "body": before.body})  # fmt: skip
