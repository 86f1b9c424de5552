"""'Log in as': an operator or a reseller admin acts as a user of their subtree, to see and do
what that user sees and does (as WHMCS and CloudBlue offer), and returns to their own session.

The rules, all checked by :func:`check`:

* the privilege ``users.impersonate`` (*Log in as users*, provider and reseller level);
* the target is a user of an account **strictly below** the caller's (never up, never
  sideways into the caller's own account, never the provider's operators), active, and not in
  a suspended or closed account;
* no escalation: the caller holds every privilege the target's roles grant (what removing
  those roles would need, ``rbac.check_removable``), so acting as them gives nothing new;
* no nesting: while acting as someone, nobody starts another one.

Mechanics: a new panel session (``LoginSession``) of the target, tied to an
:class:`core.models.Impersonation` row that keeps the caller's own session token; the caller's
session stays valid (its idle and age limits still apply) and is put back by :func:`end`.
While it lasts every page shows a banner naming both and a "Return to my account" button,
audit entries are written as ``<caller> as <target>``, and no API token can be issued. The
start and the end are audited (``user.impersonate.start`` / ``.end``).
"""

from __future__ import annotations

from core import audit, lifecycle, rbac
from core.db import database, utcnow
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.models import Impersonation, LoginSession, User

PRIVILEGE = "users.impersonate"


def check(actor: User, target: User) -> None:
    """Refuse (404 outside the subtree, 403 otherwise, naming why) unless ``actor`` may act
    as ``target`` now."""
    if getattr(actor, "impersonation", None) is not None:
        raise Conflict(
            "you are already acting as another user: return to your account first",
            {"user": ["already acting as another user"]},
        )
    account = target.account
    if not account.is_within(actor.account):
        raise NotFound(f"user {target.id} not found")
    if account.id == actor.account_id:
        raise Forbidden(
            f"you cannot log in as {target.email}: only users of accounts below yours",
            {"user": ["a user of your own account"]},
        )
    rbac.require(actor, PRIVILEGE, account)
    if not target.is_active:
        raise Conflict(f"{target.email} is deactivated", {"user": ["deactivated"]})
    refusal = lifecycle.blocking_account(account)
    if refusal is not None:
        raise Conflict(
            f"you cannot log in as {target.email}: account '{refusal.name}' is {refusal.status}",
            {"user": [f"account '{refusal.name}' is {refusal.status}"]},
        )
    try:
        rbac.check_removable(actor, target, rbac.roles_of(target), "log in as")
    except ValidationFailed as exc:
        raise Forbidden(exc.message, exc.errors) from None


def start(actor: User, target: User, own_token: str) -> User:
    """Open a session of ``target`` for ``actor`` (whose session is ``own_token``). Returns the
    target with its new ``session_token``, for flask-login."""
    import secrets

    check(actor, target)
    token = secrets.token_urlsafe(32)
    with database.atomic():
        session = LoginSession.create(token=token, user=target, last_seen_at=utcnow())
        Impersonation.create(
            session=session,
            impersonator=actor,
            impersonator_email=actor.email,
            original_token=own_token,
        )
        audit.record(
            actor,
            "user.impersonate.start",
            target,
            account=target.account_id,
            after={"user": target.email, "account": target.account.name},
        )
    target.session_token = token
    return target


def end(user: User) -> str | None:
    """End the impersonated session of ``user`` (the session's user, acting for someone):
    the session is revoked, the end audited. Returns the impersonator's own session token to
    restore (None when ``user`` is not being impersonated)."""
    imp = getattr(user, "impersonation", None)
    if imp is None:
        return None
    now = utcnow()
    with database.atomic():
        ended = (
            Impersonation.update(ended_at=now)
            .where((Impersonation.id == imp.id) & Impersonation.ended_at.is_null())
            .execute()
        )
        LoginSession.update(revoked_at=now).where(
            (LoginSession.id == imp.session_id) & LoginSession.revoked_at.is_null()
        ).execute()
        if ended:
            audit.record(
                User(id=imp.impersonator_id, email=imp.impersonator_email),
                "user.impersonate.end",
                user,
                account=user.account_id,
                after={"user": user.email},
            )
    return imp.original_token
