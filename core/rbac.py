"""Privileges, roles and the two rules everything else relies on.

1. Scoping: a user sees their own account and everything below it, nothing else. Every
   tenant query goes through ``visible_accounts``/``scoped``/``get_scoped``; an object outside
   the caller's subtree is answered with 404, exactly as if it did not exist.
2. No escalation: nobody creates or assigns a role holding a privilege they lack, or one that
   does not exist at the role's account level (``check_grantable``).

Privileges of a disabled plugin stay stored on roles but grant nothing while it is disabled.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee as pw
from flask import g, has_app_context, has_request_context, request

from core.current import host
from core.db import is_postgres
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.models import Account, Role, RolePrivilege, User, UserRole
from core.registry import ALL


def level_of(account: Account) -> str:
    atype = host().catalog.account_types.get(account.type)
    if atype is None:  # a type whose plugin is gone: treat as the least privileged
        return "customer"
    return atype.item.level


def privileges_at_level(level: str) -> set[str]:
    return {code for code, p in host().privileges().items() if level in p.levels}


def default_role_privileges(level: str, default_code: str) -> set[str]:
    declared = host().catalog.default_roles.get(f"{level}:{default_code}")
    if declared is None or declared.plugin not in host().enabled:
        return set()
    privs = declared.item.privileges
    at_level = privileges_at_level(level)
    return set(at_level) if privs == ALL else set(privs) & at_level


def stored_privileges(role: Role) -> set[str]:
    """What the role holds as written, including privileges of disabled plugins."""
    if role.is_default:
        return default_role_privileges(level_of(role.account), role.default_code)
    return {rp.code for rp in role.privilege_rows}


def role_privileges(role: Role) -> set[str]:
    """What the role grants now: stored privileges that exist and are enabled."""
    return stored_privileges(role) & set(host().privileges())


def effective_privileges(user: User) -> frozenset[str]:
    """The union of the user's roles, cached for the request."""
    cache = g.setdefault("_billhive_privs", {}) if has_app_context() else {}
    key = (user.id, host().enabled)
    if key not in cache:
        roles = Role.select().join(UserRole).where(UserRole.user == user.id)
        granted: set[str] = set()
        for role in roles:
            granted |= role_privileges(role)
        cache[key] = frozenset(granted)
    return cache[key]


def has(user: User | None, code: str) -> bool:
    return user is not None and code in effective_privileges(user)


# -- scoping ---------------------------------------------------------------------------------


def in_subtree(account: Account, *, strict: bool = False) -> pw.Expression:
    """The condition "an account at or below ``account``" (strictly below with ``strict``):
    the single definition of a subtree, for tenant visibility and for billing alike.

    A range on the materialized path, from ``/1/4/`` up to ``/1/40`` ('0' sorts right after
    '/'), compared byte by byte so an index serves it: SQLite's default collation, and
    ``COLLATE "C"`` on PostgreSQL (whose locale collations ignore punctuation), matched by
    the index :func:`core.models.create_core_tables` makes there."""
    low = account.path
    high = low[:-1] + chr(ord(low[-1]) + 1)
    if is_postgres():
        path = Account.path.collate('"C"')
    elif account.parent_id is None:
        # the root's subtree is the whole tree: SQLite (no range statistics) would still
        # walk the path index and sort, so the range is kept out of its index choice (unary
        # '+', the same value and collation) and a list's sort index serves it (core.find)
        path = pw.NodeList((pw.SQL("+"), Account.path), glue="")
    else:
        path = Account.path
    condition = (path >= low) & (path < high)
    return condition & (Account.id != account.id) if strict else condition


def sees_every_account(user: User) -> bool:
    """True when the caller's account is the tree's only root (the provider, as
    ``core.bootstrap`` makes it): every account is then in its subtree, and scoping adds no
    condition, so the operator's lists at 100,000 accounts read one index instead of first
    listing every account (core.find). Asked each time (one indexed read, never cached: a
    second root, which only the operator's shell could make, turns it off at once)."""
    if user.account.parent_id is not None:
        return False
    roots = Account.select(Account.id).where(Account.parent.is_null()).limit(2)
    return [a.id for a in roots] == [user.account_id]


def visible_accounts(user: User) -> pw.ModelSelect:
    """The caller's subtree: the single definition of tenant visibility."""
    if sees_every_account(user):
        return Account.select()
    return Account.select().where(in_subtree(user.account))


def scope_column(account_field: pw.Field, user: User):
    """``account_field`` as the scoping condition compares it. The root sees every account:
    on SQLite the membership test is then a check per row (unary '+': the same value, kept
    out of the index choice), so a list's sort index serves the query instead of a walk over
    every account followed by a sort (see in_subtree; core.find)."""
    if not is_postgres() and user.account.parent_id is None:
        return pw.NodeList((pw.SQL("+"), account_field), glue="")
    return account_field


def scoped(query: pw.ModelSelect, account_field: pw.Field, user: User) -> pw.ModelSelect:
    """Restrict any query over a table with an account column to the caller's subtree."""
    if sees_every_account(user):
        return query
    column = scope_column(account_field, user)
    return query.where(column.in_(visible_accounts(user).select(Account.id)))


def _refused_outside(user: User, model, object_id, account_field: pw.Field | None = None) -> None:
    """An object that exists outside the caller's subtree answers 404 like a missing one, and
    the attempt is audited (escalation attempts across tenants must leave a trace). Every
    lookup of a tenant object by id ends here on a miss (``get_account``, ``get_scoped``,
    ``get_in_account``), so every object type is audited the same way."""
    from core import audit
    from core.db import database

    try:
        query = model.select().where(model.id == int(object_id))
    except (ValueError, TypeError):
        return
    if account_field is not None:  # present but within the subtree: not a cross-tenant try
        query = query.where(account_field.not_in(visible_accounts(user).select(Account.id)))
    try:
        exists = query.exists()
    except (ValueError, TypeError, OverflowError, pw.DataError):
        return
    if not exists:
        return
    name = model.__name__.lower()
    where = {"method": request.method, "path": request.path} if has_request_context() else None
    with database.atomic():
        audit.record(
            user,
            f"{name}.access.refused",
            object_type=name,
            object_id=int(object_id),
            account=user.account_id,
            after=where,
        )


def _as_id(value) -> int | None:
    """An id from a request, or None when it cannot name a stored row (not a number, or
    beyond a 64-bit id column: 404, never an overflow in the database driver)."""
    try:
        number = int(value)
    except (ValueError, TypeError):
        return None
    return number if 0 < number < 2**63 else None


def get_account(user: User, account_id) -> Account:
    if _as_id(account_id) is None:
        raise NotFound(f"account {account_id} not found")
    try:
        return visible_accounts(user).where(Account.id == int(account_id)).get()
    except (ValueError, TypeError, Account.DoesNotExist):
        _refused_outside(user, Account, account_id)
        raise NotFound(f"account {account_id} not found") from None


def get_scoped(model, user: User, object_id, account_field: pw.Field | None = None):
    """Fetch one tenant object or 404 (also when it exists in someone else's subtree)."""
    field = account_field if account_field is not None else model.account
    if _as_id(object_id) is None:
        raise NotFound(f"{model.__name__.lower()} {object_id} not found")
    try:
        query = scoped(model.select(), field, user)
        return query.where(model.id == int(object_id)).get()
    except (ValueError, TypeError, model.DoesNotExist):
        _refused_outside(user, model, object_id)
        raise NotFound(f"{model.__name__.lower()} {object_id} not found") from None


def get_in_account(model, user: User | None, account: Account, object_id,
                   account_field: pw.Field | None = None, label: str | None = None):  # fmt: skip
    """Fetch one object of ``account`` (an account the caller was already allowed) or 404.
    An object of an account outside the caller's subtree is audited as a cross-tenant
    attempt, like :func:`get_scoped`; ``user=None`` is the operator's shell."""
    field = account_field if account_field is not None else model.account
    if _as_id(object_id) is None:
        raise NotFound(f"{label or model.__name__.lower()} {object_id} not found")
    try:
        return model.select().where((model.id == int(object_id)) & (field == account.id)).get()
    except (ValueError, TypeError, model.DoesNotExist):
        if user is not None:
            _refused_outside(user, model, object_id, field)
        raise NotFound(f"{label or model.__name__.lower()} {object_id} not found") from None


def require(user: User, code: str, account: Account | None = None) -> None:
    """The one privilege check: 404 outside the subtree, 403 for a missing privilege."""
    if account is not None and not account.is_within(user.account):
        raise NotFound(f"account {account.id} not found")
    if not has(user, code):
        title = host().privileges().get(code)
        raise Forbidden(f"you lack the privilege '{code}'" + (f" ({title.title})" if title else ""))


# -- no escalation ---------------------------------------------------------------------------


def grantable_by(actor: User) -> set[str]:
    """What ``actor`` may put on roles: what they hold, plus the privileges that do not exist
    at their own level at all (a provider's operator cannot hold "Service Desk Only"'s
    ``servicedesk.submit``, yet manages the resellers' roles that carry it). Privileges of
    the actor's own level are never grantable without holding them: that is the escalation
    the rule exists to stop."""
    own_level = level_of(actor.account)
    below_only = {c for c, p in host().privileges().items() if own_level not in p.levels}
    return set(effective_privileges(actor)) | below_only


def check_grantable(actor: User | None, account: Account, codes: Iterable[str]) -> None:
    """Refuse, with a message per privilege, anything ``actor`` may not put on a role of
    ``account``. ``actor=None`` is the operator's shell (CLI) and may grant anything that
    exists at the level."""
    level = level_of(account)
    known = host().privileges()
    held = grantable_by(actor) if actor is not None else None
    problems: list[str] = []
    for code in sorted(set(codes)):
        if code not in known:
            problems.append(f"'{code}' is not a privilege of any enabled plugin")
        elif level not in known[code].levels:
            problems.append(f"'{code}' does not exist at the {level} level")
        elif held is not None and code not in held:
            problems.append(f"you cannot grant '{code}': you do not hold it yourself")
    if problems:
        raise ValidationFailed(
            "privileges refused: " + "; ".join(problems), {"privileges": problems}
        )


def check_assignable(actor: User | None, role: Role, user: User) -> None:
    if role.account_id != user.account_id:
        raise ValidationFailed.field(
            "role", f"role '{role.name}' belongs to another account than user {user.email}"
        )
    if actor is None:
        return
    missing = sorted(role_privileges(role) - grantable_by(actor))
    if missing:
        raise ValidationFailed(
            f"you cannot assign role '{role.name}': it holds privileges you lack "
            f"({', '.join(missing)})",
            {"role": [f"holds privileges you lack: {', '.join(missing)}"]},
        )


def users_holding(role: Role) -> list[User]:
    return list(User.select().join(UserRole).where(UserRole.role == role.id).order_by(User.email))


def privilege_rows_for(role: Role) -> list[str]:
    return [rp.code for rp in RolePrivilege.select().where(RolePrivilege.role == role.id)]


# -- taking away: the same as granting, and never the last Full Access -----------------------

FULL_ACCESS = "full_access"  # the default role every account level has (core.builtin)


def check_removable(actor: User | None, user: User, roles: Iterable[Role], action: str) -> None:
    """Taking roles away from ``user`` (removing one, deactivating or deleting the user) needs
    what giving them needs: ``actor`` holds every privilege those roles grant at that level
    (``grantable_by``). Otherwise a weaker admin could demote a stronger one."""
    if actor is None:
        return
    held = grantable_by(actor)
    missing = sorted({code for role in roles for code in role_privileges(role)} - held)
    if missing:
        names = ", ".join(f"'{r.name}'" for r in roles)
        raise ValidationFailed(
            f"you cannot {action} {user.email}: {names} holds privileges you lack "
            f"({', '.join(missing)})",
            {"role": [f"holds privileges you lack: {', '.join(missing)}"]},
        )


def roles_of(user: User) -> list[Role]:
    return list(Role.select().join(UserRole).where(UserRole.user == user.id).order_by(Role.name))


def keep_last_full_access(user: User, role: Role | None = None) -> None:
    """Call inside the write's transaction, before the change: refuse (409) when ``user`` is
    the last active user holding their account's Full Access role and is about to lose it
    (``role`` removed; or, without ``role``, the user deactivated or deleted). The role's row
    is locked first on PostgreSQL (SQLite's write transactions are serial already), so two
    admins removing each other at once cannot both succeed."""
    query = Role.select().where(Role.account == user.account_id, Role.default_code == FULL_ACCESS)
    if is_postgres():
        query = query.for_update()
    full = query.first()
    if full is None or (role is not None and role.id != full.id) or not user.is_active:
        return
    holders = (
        User.select(User.id).join(UserRole).where(UserRole.role == full.id, User.is_active == True)  # noqa: E712
    )
    ids = {u.id for u in holders}
    if ids == {user.id}:
        raise Conflict(
            f"{user.email} is the last active user holding '{full.name}' on account "
            f"'{user.account.name}': an account must keep one; give '{full.name}' to another "
            "user first",
            {"user": [f"last active holder of '{full.name}' on this account"]},
        )
