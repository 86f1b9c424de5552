"""The panel's one way of showing values: Jinja filters every template (core and plugins)
uses, so a boolean reads "Yes" on every page, a profile's choice shows its label ("Both (RAW &
PDF)", never "BOTH"), a moment has no microseconds and an amount has its currency.

    {{ flag|yesno }}                         Yes / No
    {{ value|shown(f) }}                     a value of a schema-described field (core.panel.jinja.
                                             schema_fields): its choice label, Yes/No, or "—"
    {{ moment|when }}  {{ day|day }}         2026-12-03 07:28 UTC  /  2026-12-03
    {{ minor|money(currency) }}              1,234.56 EUR
    {{ entry.before|changes(entry.after) }}  an audit entry's changes, readable
    {{ code|language }}                      an invoice language: "de" -> German (core.i18n)
"""

from __future__ import annotations

import json
from datetime import date, datetime

from core.billing.money import format_money
from core.i18n import language_name

EMPTY = "—"


def yesno(value) -> str:
    return "Yes" if value in (True, "on", "true", "True", 1) else "No"


def shown(value, field: dict | None = None) -> str:
    if value is None or value == "":
        return EMPTY
    kind = (field or {}).get("kind")
    if kind == "checkbox" or isinstance(value, bool):
        return yesno(value)
    if kind == "select":
        return dict((field or {}).get("choices", ())).get(value, str(value))
    return str(value)


def when(value) -> str:
    """A stored moment (naive UTC in the database) to the minute; ``when_seconds`` where
    seconds matter (the audit log, sync runs)."""
    return _when(value, False)


def when_seconds(value) -> str:
    return _when(value, True)


def _when(value, seconds: bool) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " UTC"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def day(value) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat() if isinstance(value, date) else str(value)


def money(minor, currency) -> str:
    return EMPTY if minor is None else format_money(minor, currency)


def _plain(value) -> str:
    """A recorded value as a person reads it: text as is, Yes/No, lists and mappings in
    compact JSON without escapes (no \u003c, no \")."""
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return yesno(value)
    if isinstance(value, str):
        return value or '""'
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def changes(before, after) -> list[tuple[str, str, str]]:
    """An audit entry's ``before``/``after`` as ``[(field, was, now)]``: only the fields
    that differ when both exist, every recorded field otherwise."""
    b = before if isinstance(before, dict) else ({} if before is None else {"value": before})
    a = after if isinstance(after, dict) else ({} if after is None else {"value": after})
    keys = list(dict.fromkeys([*b, *a]))
    if b and a:
        keys = [k for k in keys if b.get(k) != a.get(k)]
    return [(k, _plain(b[k]) if k in b else "", _plain(a[k]) if k in a else "") for k in keys]


FILTERS = {
    "yesno": yesno,
    "shown": shown,
    "when": when,
    "when_seconds": when_seconds,
    "day": day,
    "money": money,
    "changes": changes,
    "language": language_name,
}


def init_app(app) -> None:
    app.jinja_env.filters.update(FILTERS)
