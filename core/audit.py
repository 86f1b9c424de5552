"""The audit log: who changed what, when, before and after — written in the caller's
transaction, so a rolled-back change leaves no record and a committed one always has one."""

from __future__ import annotations

from typing import Any

from core._fastpath import insert_row
from core.models import AuditEntry


def actor_label(actor) -> str:
    """The actor's e-mail; ``<impersonator> as <user>`` while one acts as the other (core.
    impersonation: "Log in as"); ``cli`` for the operator's shell."""
    if actor is None:
        return "cli"
    acting = getattr(actor, "impersonation", None)
    if acting is not None:
        return f"{acting.impersonator_email} as {actor.email}"[:254]
    return actor.email


def record(
    actor,
    action: str,
    obj: Any = None,
    *,
    object_type: str | None = None,
    object_id: Any = "",
    account=None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEntry:
    if obj is not None:
        object_type = object_type or type(obj).__name__.lower()
        object_id = getattr(obj, "id", None) or getattr(obj, "name", "") or object_id
    values = {
        "actor": actor,
        "actor_label": actor_label(actor),
        "account": account,
        "action": action,
        "object_type": object_type or "",
        "object_id": "" if object_id is None else str(object_id),  # no "None" in the log
        "before": before,
        "after": after,
    }
    return insert_row(AuditEntry, values)  # on the hot path of every bill-run invoice
