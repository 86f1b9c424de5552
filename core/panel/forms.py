"""How every panel form reports bad input: each message beside its field, in the words of the
form's own labels, each problem once.

The services raise :class:`core.errors.BillhiveError` with ``errors`` keyed by the names the
API uses (``bill_cycle_day``, ``profile.customer_billing_cycle_day``, ``number_ids``) and a
message that often starts with that name (``"e164: number +44... already exists"``). An API
client wants exactly that; a person filling in a form wants "Bill cycle day (1-28): must be
a whole number from 1 to 28" beside the field it is about. A form therefore declares what it
calls each field (``labels``: name -> label, the same words as its ``<label>``s) and passes
the error through :func:`form_errors`; templates show the result with the macros of
``core/_field.html`` (``field`` attaches a field's message, ``form_errors`` is the summary).

Plugins use it the same way (``from core.panel.forms import form_errors``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from core.errors import BillhiveError

#: The summary's key for what belongs to no field of the form.
GENERAL = "_"


class FormErrors(dict):
    """``{field: message}`` plus the form's ``labels``, so the summary can name each field as
    the form does. Empty (falsy) when nothing is wrong."""

    def __init__(self, *args, labels: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = dict(labels or {})

    def label(self, name: str) -> str:
        return self.labels.get(name) or humanize(name)

    def summary(self) -> list[tuple[str, str]]:
        """``[(label or "", message)]``: what the box above the form lists."""
        return [("" if k == GENERAL else self.label(k), v) for k, v in self.items()]


def humanize(name: str) -> str:
    """``profile.customer_billing_cycle_day`` -> ``Customer billing cycle day``,
    ``role_ids`` -> ``Roles``, ``company_id`` -> ``Company ID`` (for a field no label was
    declared for: still never the internal name)."""
    last = name.rsplit(".", 1)[-1]
    if last.isdigit():  # lines.0 -> Lines 1
        return humanize(name.rsplit(".", 1)[0]) + f" {int(last) + 1}"
    if last.endswith("_ids"):
        last = last.removesuffix("_ids") + "s"
    elif last.endswith("_id"):
        last = last.removesuffix("_id") + " ID"
    words = last.replace("_", " ").strip()
    return (words[:1].upper() + words[1:]) if words else name


def _reword(text: str, names: dict[str, str]) -> str:
    """Internal field names inside a message become the labels users see."""
    for name, label in sorted(names.items(), key=lambda kv: -len(kv[0])):
        if "_" in name or "." in name:  # internal-looking names only: "name" stays a word
            text = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w])", label, text)
    return text


def _strip_name(text: str, name: str, label: str) -> str:
    """A message beside its field needs no name in front, internal or not ("e164: already
    exists", "tax_rate must be ...", "Bill cycle day must be ..." -> "already exists",
    "must be ...")."""
    for prefix in sorted({name, name.rsplit(".", 1)[-1], label}, key=len, reverse=True):
        for sep in (": ", " "):
            if text.startswith(prefix + sep) and len(text) > len(prefix) + len(sep):
                return text[len(prefix) + len(sep) :]
    return text


def form_errors(
    exc: BillhiveError,
    labels: dict[str, str] | None = None,
    field_of: Callable[[str], str] | None = None,
) -> FormErrors:
    """The form's view of ``exc``: ``{field: message}`` with each message once, worded with
    ``labels``; an error that names no field is the summary's (``"_"``). ``field_of`` maps
    a service's field name to the form's input when they differ (``levels.0.days`` ->
    ``reminder_days``; ``billing_emails.1`` -> ``billing_emails``)."""
    labels = dict(labels or {})
    field_of = field_of or (lambda key: key)
    names = {k: labels.get(field_of(k)) or humanize(k) for k in (exc.errors or {})} | labels
    out = FormErrors(labels=labels)
    head, _, rest = exc.message.partition(": ")
    for key, value in (exc.errors or {}).items():
        items = value if isinstance(value, list) else [value]
        messages: list[str] = []
        for item in items:
            text = _reword(_strip_name(str(item), key, names[key]), names)
            # "e164: number +44... already exists" says more than "already exists" or "taken"
            if head == key and rest and (text in rest or len(text.split()) <= 2):
                text = _reword(rest, names)
            if text not in messages:
                messages.append(text)
        field = field_of(key)
        if field in out:  # several service fields behind one input
            messages = [m for m in [*out[field].split("; "), *messages] if m]
            messages = list(dict.fromkeys(messages))
        out[field] = "; ".join(messages)
    if not out:
        out[GENERAL] = _reword(exc.message, names)
    return out


def keep(form, *, lists: tuple[str, ...] = (), drop: tuple[str, ...] = ("csrf_token",)) -> dict:
    """What was typed, to show again after an error: every field (``lists``: the names that
    carry several values, e.g. ticked roles) except ``drop``."""
    values = {k: v for k, v in form.to_dict().items() if k not in drop}
    for name in lists:
        values[name] = form.getlist(name)
    return values
