"""Subject and body of each e-mail, per issuer: Jinja templates that an issuer's admins edit.

Admins of resellers write these, so they are rendered in a
:class:`jinja2.sandbox.SandboxedEnvironment` (no attribute tricks reach Python internals)
from plain values only (dicts of text: :func:`core.mail.messages.invoice_context`), never
from model objects. ``StrictUndefined``: a misspelt name is an error when the template is
saved (:func:`check` renders it with a sample invoice), not a blank in a customer's mail.
Mail is plain text, so nothing is HTML-escaped; a subject is one line (line breaks a value
brings are folded into spaces, so no header can be injected).

The defaults below ship with Billhive; an issuer without its own template uses them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from core.mail.models import MailTemplate

MAX_SUBJECT = 500
MAX_BODY = 20_000

_SIGNATURE = (
    "\n\nKind regards,\n{{ issuer.name }}\n{% if issuer.email %}{{ issuer.email }}\n{% endif %}"
)

DEFAULTS: dict[str, tuple[str, str]] = {
    "invoice": (
        "Invoice {{ invoice.number }} from {{ issuer.name }}",
        "Dear {{ account.name }},\n\n"
        "please find attached invoice {{ invoice.number }} of {{ invoice.issued_on }} for "
        "{{ invoice.total }}{% if invoice.period %} (service period {{ invoice.period }}){% endif %}."
        "\n\nPlease pay {{ invoice.amount_due }} by {{ invoice.due_date }}." + _SIGNATURE,
    ),
    "credit_note": (
        "Credit note {{ invoice.number }} from {{ issuer.name }}",
        "Dear {{ account.name }},\n\n"
        "please find attached credit note {{ invoice.number }} of {{ invoice.issued_on }} "
        "for {{ invoice.total }}{% if invoice.credit_for %}, crediting invoice "
        "{{ invoice.credit_for }}{% endif %}." + _SIGNATURE,
    ),
    "receipt": (
        "Payment received: {{ payment.amount }}",
        "Dear {{ account.name }},\n\n"
        "thank you: we received your payment of {{ payment.amount }} on "
        "{{ payment.received_on }}{% if payment.reference %} (reference "
        "{{ payment.reference }}){% endif %}.{% if payment.invoices %}\n\nIt settles: "
        "{{ payment.invoices | join(', ') }}.{% endif %}" + _SIGNATURE,
    ),
    "reminder_1": (
        "Reminder: invoice {{ invoice.number }} is overdue",
        "Dear {{ account.name }},\n\n"
        "our invoice {{ invoice.number }} of {{ invoice.issued_on }} was due on "
        "{{ invoice.due_date }} and {{ invoice.amount_due }} is still open. If you have "
        "already paid, please ignore this reminder; otherwise please pay at your earliest "
        "convenience." + _SIGNATURE,
    ),
    "reminder_2": (
        "Second reminder: invoice {{ invoice.number }} is overdue",
        "Dear {{ account.name }},\n\n"
        "invoice {{ invoice.number }} was due on {{ invoice.due_date }} and "
        "{{ invoice.amount_due }} is still open. Please pay it now." + _SIGNATURE,
    ),
    "final_notice": (
        "Final notice: invoice {{ invoice.number }}",
        "Dear {{ account.name }},\n\n"
        "despite our reminders, {{ invoice.amount_due }} of invoice {{ invoice.number }} "
        "(due {{ invoice.due_date }}) is still open. Please pay it within 7 days."
        "{% if late_fee %} A late fee of {{ late_fee }} is invoiced separately.{% endif %}"
        + _SIGNATURE,
    ),
}

FIELD_LABELS = {"subject": "Subject", "body": "Body"}


class TemplateProblem(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(f"{FIELD_LABELS.get(field, field)}: {message}")
        self.field = field
        self.message = message


_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=512)
def _compiled(source: str):
    return _env.from_string(source)


def one_line(text: str) -> str:
    """A header value: every run of whitespace (line breaks included) one space."""
    return re.sub(r"\s+", " ", text).strip()


def render_text(field: str, source: str, context: dict) -> str:
    try:
        return _compiled(source).render(context)
    except TemplateError as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise TemplateProblem(field, f"{exc.message or exc}{where}") from None
    except Exception as exc:  # noqa: BLE001 - a sandbox refusal, a filter given bad values
        raise TemplateProblem(field, f"{type(exc).__name__}: {exc}") from None


def source_for(issuer_id: int, event: str) -> tuple[str, str, bool]:
    """(subject, body, is_default) of ``issuer_id``'s template for ``event``."""
    own = MailTemplate.get_or_none(issuer=issuer_id, event=event)
    if own is not None:
        return own.subject, own.body, False
    subject, body = DEFAULTS[event]
    return subject, body, True


def render(issuer_id: int, event: str, context: dict) -> tuple[str, str]:
    """The (subject, body) of ``event`` for ``issuer_id``; TemplateProblem names the field."""
    subject, body, _ = source_for(issuer_id, event)
    return render_pair(subject, body, context)


def render_pair(subject: str, body: str, context: dict) -> tuple[str, str]:
    rendered_subject = one_line(render_text("subject", subject, context))
    if not rendered_subject:
        raise TemplateProblem("subject", "renders as an empty subject")
    return rendered_subject[:MAX_SUBJECT], render_text("body", body, context)


def check(subject: str, body: str, context: dict) -> dict[str, list[str]]:
    """Field errors of a template pair (empty when it is good): length, syntax, and a render
    with ``context`` (a sample invoice) so an unknown name is found now."""
    errors: dict[str, list[str]] = {}
    for field, text, limit in (("subject", subject, MAX_SUBJECT), ("body", body, MAX_BODY)):
        if not text.strip():
            errors[field] = ["is required"]
        elif len(text) > limit:
            errors[field] = [f"is longer than {limit} characters"]
        elif "\x00" in text:
            errors[field] = ["holds a NUL character"]
    if errors:
        return errors
    for field, text in (("subject", subject), ("body", body)):
        try:
            rendered = render_text(field, text, context)
            if field == "subject" and not one_line(rendered):
                raise TemplateProblem(field, "renders as an empty subject")
        except TemplateProblem as problem:
            errors[field] = [problem.message]
    return errors
