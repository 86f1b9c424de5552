"""The account lifecycle: active, suspended, closed (``Account.status``).

What each status means, decided once here and relied on everywhere else:

* **suspended** (reversible): no bill run invoices the account or anything below it (a
  provider suspending a reseller stops the reseller's business on the platform, its customers
  included); nobody of the account or below it logs in: their panel sessions end at once,
  their API tokens answer 401 while the suspension lasts and work again after reactivation
  (an integration needs no new token). Data stays untouched, and the days of the suspension
  are not lost: subscriptions keep running, so the first bill run after reactivation invoices
  them (suspend *and* end the subscriptions to stop charging).
* **closed** (final, never reactivated): its users cannot log in; its open subscriptions end
  on the closing day; bill runs invoice what is left up to that day (the final invoice) and
  nothing after. Its invoices, ledger and statements stay, visible to the accounts above, who
  can still record payments and credit notes against them so the last debt can be settled.
  No account, user or subscription can be added to it. An account with child accounts that
  are not closed cannot be closed (close or move them first: a final step never cascades).

Who: ``accounts.lifecycle`` on an account strictly below one's own (never one's own account,
never an ancestor: those answer 404 like everything outside the subtree); ``actor=None`` is
the operator's shell or the system (dunning). The provider's own account is never suspended
or closed. Every change is audited (``account.suspend`` / ``.reactivate`` / ``.close``) and kept
in :class:`core.models.AccountStatusChange` with its reason.

Races: the change takes the account's row lock; a bill-run invoice being written holds the
account's row lock and a share lock on its ancestors (:func:`guard_billable`), so a suspension
and an invoice of the account are serialised: the invoice committed first, or it sees the
suspension and is not written.
"""

from __future__ import annotations

from datetime import date

from core import audit, clock, rbac
from core._fastpath import Prepared
from core.db import database, is_postgres, lock_row, utcnow
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.fields import Text
from core.models import Account, AccountStatusChange, LoginSession

ACTIVE, SUSPENDED, CLOSED = "active", "suspended", "closed"
STATUSES = (ACTIVE, SUSPENDED, CLOSED)
LABELS = {ACTIVE: "Active", SUSPENDED: "Suspended", CLOSED: "Closed"}
PRIVILEGE = "accounts.lifecycle"
#: the audit action of each change, by the status it leads to
ACTIONS = {ACTIVE: "account.reactivate", SUSPENDED: "account.suspend", CLOSED: "account.close"}
VERBS = {ACTIVE: "reactivate", SUSPENDED: "suspend", CLOSED: "close"}
REASON = Text(500, multiline=True)


def path_ids(account: Account) -> list[int]:
    """The ids of ``account`` and its ancestors, root first (from the materialized path)."""
    return [int(part) for part in account.path.strip("/").split("/") if part]


_DEPTH = 8  # ids of a path looked up with one prepared statement (deeper trees: built each time)
_blocking = Prepared(
    lambda *ids: (
        Account.select(Account.id, Account.name, Account.status, Account.path)
        .where(Account.id.in_(list(ids)) & (Account.status != ACTIVE))
        .order_by(Account.path)
        .limit(1)
    )
)
_blocking.arity = _DEPTH  # a lambda of *ids: tell Prepared how many it binds


def blocking_account(account_or_path) -> Account | None:
    """The account (itself or an ancestor) whose status keeps ``account`` from logging in and
    being billed, or None when it and every ancestor are active. A primary-key lookup of a
    handful of rows, its SQL built once: called on every panel request and API call."""
    path = account_or_path if isinstance(account_or_path, str) else account_or_path.path
    ids = [int(part) for part in path.strip("/").split("/") if part]
    if not ids:
        return None
    if len(ids) <= _DEPTH:
        row = _blocking.execute(*(ids + [0] * (_DEPTH - len(ids)))).fetchone()  # no id 0
    else:
        row = (
            Account.select(Account.id, Account.name, Account.status, Account.path)
            .where(Account.id.in_(ids) & (Account.status != ACTIVE))
            .order_by(Account.path)
            .limit(1)
            .tuples()
            .first()
        )
    if row is None:
        return None
    return Account(id=row[0], name=row[1], status=row[2], path=row[3])


def login_refusal(account: Account) -> str | None:
    """Why the users of ``account`` cannot log in now, or None."""
    blocker = blocking_account(account)
    if blocker is None:
        return None
    if blocker.id == account.id:
        return f"your account '{account.name}' is {blocker.status}: contact your provider"
    return (
        f"your account is not available: '{blocker.name}', the account above it, is "
        f"{blocker.status}; contact your provider"
    )


def closed_on(account: Account) -> date | None:
    """The day ``account`` was closed (bill runs invoice nothing after it), or None."""
    if account.status != CLOSED:
        return None
    row = (
        AccountStatusChange.select(AccountStatusChange.effective_on)
        .where((AccountStatusChange.account == account.id) & (AccountStatusChange.status == CLOSED))
        .order_by(AccountStatusChange.id.desc())
        .first()
    )
    return row.effective_on if row is not None else clock.today()


def suspended_subtrees() -> list[Account]:
    """The suspended accounts (few), whose subtrees bill runs leave out."""
    return list(Account.select(Account.id, Account.path).where(Account.status == SUSPENDED))


def guard_billable(account_id: int) -> str | None:
    """Inside a bill-run invoice's transaction, before anything is written: lock the account's
    row and share-lock its ancestors' (PostgreSQL), then answer why it may not be invoiced
    now (suspended itself or below a suspended account), or None. A suspension committed
    meanwhile is seen here; one under way waits for this transaction (see module doc)."""
    locked = lock_row(Account, account_id)
    if locked is None:
        return "the account no longer exists"
    ancestors = [i for i in path_ids(locked) if i != locked.id]
    query = Account.select(Account.id, Account.name, Account.status).where(
        Account.id.in_(ancestors)
    )
    if is_postgres() and ancestors:
        query = query.for_update("FOR SHARE")
    rows = {a.id: a for a in query} if ancestors else {}
    for account_id_ in ancestors:
        row = rows.get(account_id_)
        if row is not None and row.status == SUSPENDED:
            return f"account suspended: '{row.name}', above it, is suspended"
    if locked.status == SUSPENDED:
        return "account suspended"
    return None


def _check(actor, account: Account, status: str, reason) -> str:
    errors: dict[str, list[str]] = {}
    if status not in STATUSES:
        errors["status"] = [f"Status must be one of {', '.join(STATUSES)}"]
    try:
        reason = REASON.deserialize("" if reason is None else reason, "reason")
    except Exception as exc:  # marshmallow's ValidationError: a message naming the field
        messages = getattr(exc, "messages", [str(exc)])
        errors["reason"] = [f"Reason: {m}" for m in messages]
    if errors:
        raise ValidationFailed(
            "invalid input — " + ", ".join(f"{k}: {v[0]}" for k, v in errors.items()), errors
        )
    if actor is not None:
        if not account.is_within(actor.account):
            raise NotFound(f"account {account.id} not found")
        if account.id == actor.account_id:
            verb = VERBS[status]
            raise Forbidden(
                f"you cannot {verb} your own account: the account above it does",
                {"status": [f"you cannot {verb} your own account"]},
            )
        rbac.require(actor, PRIVILEGE, account)
    if account.parent_id is None:
        raise Forbidden(
            "the provider's own account cannot be suspended or closed",
            {"status": ["the provider's account is always active"]},
        )
    return reason


def set_account_status(account: Account, status: str, actor=None, reason: str = "") -> Account:
    """Move ``account`` to ``status`` (active, suspended or closed) for ``reason``.

    The same status again changes nothing (and records nothing): dunning may ask twice; so
    does suspending a closed account (it has no logins and no bill runs already). A closed
    account is never reactivated (409). Closing refuses an account with child accounts that
    are not closed (409 naming them), ends its open subscriptions on the closing day.
    Suspending and closing end the panel sessions of every user of the account and below.
    Returns the account as stored after the change."""
    reason = _check(actor, account, status, reason)
    with database.atomic():
        locked = lock_row(Account, account.id)
        if locked is None:
            raise NotFound(f"account {account.id} not found")
        before = locked.status
        if before == status or (before == CLOSED and status == SUSPENDED):
            return locked  # a closed account is already out of bill runs and logins
        if before == CLOSED:
            raise Conflict(
                f"account '{locked.name}' is closed: closing is final",
                {"status": ["a closed account cannot be reactivated or suspended"]},
            )
        ended: dict = {}
        if status == CLOSED:
            _refuse_open_children(locked)
            ended["subscriptions_ended"] = _end_subscriptions(locked)
        Account.update(status=status).where(Account.id == locked.id).execute()
        locked.status = status
        if status != ACTIVE:
            ended["sessions_ended"] = _end_sessions(locked)
        AccountStatusChange.create(
            account=locked.id,
            status=status,
            previous=before,
            effective_on=clock.today(),
            actor=actor,
            actor_label=audit.actor_label(actor),
            reason=reason,
        )
        audit.record(
            actor,
            ACTIONS[status],
            locked,
            account=locked,
            before={"status": before},
            after={"status": status, "reason": reason, **ended},
        )
    account.status = status
    return locked


def _refuse_open_children(account: Account) -> None:
    children = list(
        Account.select(Account.name)
        .where((Account.parent == account.id) & (Account.status != CLOSED))
        .order_by(Account.name)
        .limit(4)
    )
    if children:
        names = ", ".join(f"'{c.name}'" for c in children[:3]) + (
            " ..." if len(children) > 3 else ""
        )
        raise Conflict(
            f"account '{account.name}' still has accounts that are not closed ({names}): "
            "close them first",
            {"status": [f"child accounts not closed: {names}"]},
        )


def _end_subscriptions(account: Account) -> int:
    """Open subscriptions end on the closing day (never before what is billed already, nor
    before they start), so bill runs invoice what is left up to it and nothing after."""
    from core.billing.models import Subscription

    today = clock.today()
    count = 0
    query = Subscription.select().where(
        (Subscription.account == account.id)
        & (Subscription.end.is_null() | (Subscription.end > today))
    )
    for sub in query:
        end = max(d for d in (today, sub.start, sub.billed_through) if d is not None)
        if sub.end is None or end < sub.end:
            Subscription.update(end=end).where(Subscription.id == sub.id).execute()
            count += 1
    return count


def _end_sessions(account: Account) -> int:
    """End every live panel session of the users of ``account`` and below."""
    from core.models import User

    below = Account.select(Account.id).where(rbac.in_subtree(account))
    people = User.select(User.id).where(User.account.in_(below))
    return (
        LoginSession.update(revoked_at=utcnow())
        .where(LoginSession.user.in_(people) & LoginSession.revoked_at.is_null())
        .execute()
    )


def history(account: Account, limit: int = 20) -> list[AccountStatusChange]:
    return list(
        AccountStatusChange.select()
        .where(AccountStatusChange.account == account.id)
        .order_by(AccountStatusChange.id.desc())
        .limit(limit)
    )


def refuse_if_closed(account: Account | None, what: str, field: str) -> None:
    """Nothing new is added to a closed account: a 409 naming ``field``."""
    if account is not None and account.status == CLOSED:
        raise Conflict(
            f"{field}: account '{account.name}' is closed; no {what} can be added to it",
            {field: [f"account '{account.name}' is closed"]},
        )
