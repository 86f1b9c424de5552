"""Users: creation, passwords, login throttling, sessions, API tokens, deactivation."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import peewee as pw
from flask import current_app, has_app_context, has_request_context, request
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.security import check_password_hash, generate_password_hash

from core import audit, lifecycle, passwords, rbac
from core._fastpath import Prepared
from core.db import database, utcnow
from core.errors import Conflict, Forbidden, ValidationFailed, load
from core.fields import Email, Id, Text
from core.models import (
    Account,
    ApiToken,
    Impersonation,
    LoginSession,
    LoginThrottle,
    Role,
    User,
    UserRole,
)

# Defaults of the settings an operator can change (hostapp.config, README's table)
DEFAULTS = {
    "LOGIN_MAX_FAILURES": 5,  # per e-mail, known or not
    "LOGIN_MAX_FAILURES_PER_ADDRESS": 30,  # per client address, whatever the e-mail
    "LOGIN_LOCKOUT_SECONDS": 15 * 60,
    "SESSION_IDLE_MINUTES": 60,
    "SESSION_MAX_HOURS": 12,
    "TOKEN_IDLE_DAYS": 30,
    "TOKEN_MAX_DAYS": 90,
}


def setting(name: str):
    if has_app_context():
        return current_app.config.get(name, DEFAULTS[name])
    return DEFAULTS[name]


def _password_policy(value: str) -> None:
    message = passwords.problem(value)
    if message:
        raise ValidationError(message)


class UserInput(Schema):
    email = Email(required=True)
    name = Text(200, load_default="")
    password = fields.String(
        required=True,
        validate=[
            validate.Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH),
            _password_policy,
        ],
        metadata={"description": "12 characters at least; common passwords are refused"},
    )
    account_id = Id(required=True)
    role_ids = fields.List(Id(), load_default=list)


class UserPatch(Schema):
    """Edit a user: name and e-mail (either or both)."""

    email = Email()
    name = Text(200)


class PasswordChange(Schema):
    """Change your own password: the current one, and the new one."""

    current_password = fields.String(required=True, validate=validate.Length(max=200))
    new_password = fields.String(
        required=True,
        validate=validate.Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH),
    )


class PasswordReset(Schema):
    """An administrator sets a new password for a user of their subtree."""

    password = fields.String(
        required=True,
        validate=validate.Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH),
    )


def hash_password(password: str) -> str:
    """scrypt with werkzeug's strong defaults; ``PASSWORD_HASH_METHOD`` lets a test suite
    choose cheaper parameters (it creates hundreds of users on two CPU cores)."""
    method = "scrypt"
    if has_app_context():
        method = current_app.config.get("PASSWORD_HASH_METHOD", method)
    return generate_password_hash(password, method=method)


def snapshot(user: User) -> dict:
    return {
        "email": user.email,
        "name": user.name,
        "account_id": user.account_id,
        "is_active": user.is_active,
        "roles": sorted(r.name for r in Role.select().join(UserRole).where(UserRole.user == user)),
    }


def create_user(actor, payload: dict) -> User:
    data = load(UserInput(), payload)
    account = (
        rbac.get_account(actor, data["account_id"])
        if actor is not None
        else rbac.Account.get_or_none(rbac.Account.id == data["account_id"])
    )
    if account is None:
        raise ValidationFailed.field("account_id", f"account {data['account_id']} not found")
    if actor is not None:
        rbac.require(actor, "users.manage", account)
    lifecycle.refuse_if_closed(account, "user", "account_id")
    email = data["email"].strip().lower()
    # every problem at once (a form shows them together): the password policy, the e-mail
    # in use; the e-mail alone stays the 409 it always was
    weak = passwords.problem(data["password"], email)
    taken = User.get_or_none(User.email == email) is not None
    if weak and taken:
        raise ValidationFailed(
            f"password: {weak}; email: a user with e-mail {email} already exists",
            {"password": [weak], "email": [f"a user with e-mail {email} already exists"]},
        )
    if weak:
        raise ValidationFailed.field("password", weak)
    if taken:
        raise Conflict(f"email: a user with e-mail {email} already exists", {"email": ["taken"]})
    roles = _roles_of(account, data["role_ids"])
    with database.atomic():
        user = User.create(
            account=account,
            email=email,
            name=data["name"],
            password_hash=hash_password(data["password"]),
        )
        for role in roles:
            rbac.check_assignable(actor, role, user)
            UserRole.create(user=user, role=role)
        audit.record(actor, "user.create", user, account=account, after=snapshot(user))
    return user


def update_user(actor, user: User, payload: dict) -> User:
    """Edit a user's name and e-mail. Yourself: always (it is your own login). Someone else:
    users.manage on their account and every privilege of their roles (the rule of taking
    away: a weaker admin who could change a stronger one's e-mail could take over the login).
    An e-mail another user has is refused (409 naming ``email``). Audited; one transaction."""
    data = load(UserPatch(), payload)
    if actor is not None and actor.id != user.id:
        rbac.require(actor, "users.manage", user.account)
        try:
            rbac.check_removable(actor, user, rbac.roles_of(user), "edit")
        except ValidationFailed as exc:
            _refuse(actor, user, "user.update", exc)
    changes = {}
    if "email" in data:
        email = normalize_email(data["email"])
        if email != user.email:
            changes["email"] = email
    if "name" in data and data["name"] != user.name:
        changes["name"] = data["name"]
    if not changes:
        return user
    with database.atomic():
        if "email" in changes:
            taken = User.select(User.id).where(
                (User.email == changes["email"]) & (User.id != user.id)
            )
            if taken.exists():
                raise Conflict(
                    f"email: a user with e-mail {changes['email']} already exists",
                    {"email": ["E-mail is already used by another user"]},
                )
        before = snapshot(user)
        try:
            with database.atomic():
                User.update(**changes).where(User.id == user.id).execute()
        except pw.IntegrityError:  # the same e-mail taken at the same moment
            raise Conflict(
                f"email: a user with e-mail {changes['email']} already exists",
                {"email": ["E-mail is already used by another user"]},
            ) from None
        for key, value in changes.items():
            setattr(user, key, value)
        audit.record(
            actor, "user.update", user, account=user.account, before=before, after=snapshot(user)
        )
    return user


def _roles_of(account, role_ids: list[int]) -> list[Role]:
    roles = []
    for rid in role_ids:
        role = Role.get_or_none(Role.id == rid, Role.account == account)
        if role is None:
            raise ValidationFailed.field("role_ids", f"role {rid} is not a role of this account")
        roles.append(role)
    return roles


# -- logging in ------------------------------------------------------------------------------

_REFUSED = "wrong e-mail or password"
_LOCKED = "too many failed logins: try again in a few minutes"
_dummy_hashes: dict[str, str] = {}


def normalize_email(email) -> str:
    return (email if isinstance(email, str) else "").strip().lower()


def dummy_hash() -> str:
    """A hash made like every stored one, checked when no user can log in with the e-mail so
    an unknown e-mail costs what a known one costs: one hash check. Made once per process and
    method (``auth.init_app`` makes it at start)."""
    method = "scrypt"
    if has_app_context():
        method = current_app.config.get("PASSWORD_HASH_METHOD", method)
    if method not in _dummy_hashes:
        _dummy_hashes[method] = hash_password(secrets.token_urlsafe(16))
    return _dummy_hashes[method]


def _throttle_keys(email: str, address: str | None) -> list[tuple[str, int]]:
    digest = hashlib.sha256(email.encode()).hexdigest()  # unknown e-mails are not stored
    keys = [(f"email:{digest}", setting("LOGIN_MAX_FAILURES"))]
    if address:
        keys.insert(0, (f"address:{address[:250]}", setting("LOGIN_MAX_FAILURES_PER_ADDRESS")))
    return keys


def _count_attempt(key: str, limit: int, now) -> bool:
    """Count one attempt for ``key`` before any password is checked: one conditional UPDATE,
    so parallel attempts each get their own count. False when ``key`` is locked. The attempt
    that reaches ``limit`` still goes on (``limit`` guesses are checked, never more) and
    locks ``key`` in the same statement; a window older than the lockout starts again."""
    T = LoginThrottle
    lockout = timedelta(seconds=setting("LOGIN_LOCKOUT_SECONDS"))
    stamp = pw.Value(now, converter=T.window_start.db_value)
    restart = T.window_start < pw.Value(now - lockout, converter=T.window_start.db_value)
    attempts = pw.Case(None, [(restart, 1)], T.attempts + 1)
    with database.atomic():
        T.insert(key=key, attempts=0, window_start=now).on_conflict_ignore().execute()
        counted = (
            T.update(
                attempts=attempts,
                window_start=pw.Case(None, [(restart, stamp)], T.window_start),
                locked_until=pw.Case(
                    None,
                    [
                        (
                            attempts >= limit,
                            pw.Value(now + lockout, converter=T.window_start.db_value),
                        )
                    ],
                ),
            )
            .where((T.key == key) & (T.locked_until.is_null() | (T.locked_until <= stamp)))
            .execute()
        )
    return counted == 1


def _succeeded(keys: list[tuple[str, int]]) -> None:
    """A right password: the e-mail's count starts again; the address gives back the attempt
    it counted (a success of one's own account never clears guesses at other accounts)."""
    T = LoginThrottle
    with database.atomic():
        for key, _ in keys:
            if key.startswith("email:"):
                T.update(attempts=0, locked_until=None).where(T.key == key).execute()
            else:
                T.update(attempts=pw.Case(None, [(T.attempts > 0, T.attempts - 1)], 0)).where(
                    T.key == key
                ).execute()


def authenticate(email: str, password: str, address: str | None = None) -> User:
    """The user for these credentials. Each attempt is counted, per e-mail (known or not) and
    per client address, before the password is checked; a locked e-mail or address is
    refused without checking anything. Known, unknown and deactivated e-mails get the same
    messages, the same lock and the same cost (exactly one hash check)."""
    email = normalize_email(email)
    password = password if isinstance(password, str) else ""
    if address is None and has_request_context():
        address = request.remote_addr or ""
    now = utcnow()
    keys = _throttle_keys(email, address)
    for key, limit in keys:
        if not _count_attempt(key, limit, now):
            raise ValidationFailed(_LOCKED, {"password": [_LOCKED]})
    user = User.get_or_none(User.email == email) if email else None
    usable = user is not None and user.is_active
    matches = check_password_hash(user.password_hash if usable else dummy_hash(), password)
    if not (usable and matches):
        raise ValidationFailed(_REFUSED, {"password": [_REFUSED]})
    _succeeded(keys)
    # said only to whoever knows the password: a suspended or closed account (or one below
    # such an account) has no logins (core.lifecycle)
    refusal = lifecycle.login_refusal(user.account)
    if refusal:
        raise ValidationFailed(refusal, {"email": [refusal]})
    User.update(last_login_at=now).where(User.id == user.id).execute()
    return user


# -- panel sessions --------------------------------------------------------------------------

TOUCH_EVERY = timedelta(seconds=60)  # last-seen times are written at most this often


def _touch_every(idle: timedelta) -> timedelta:
    return min(TOUCH_EVERY, idle / 4)


def start_session(user: User) -> User:
    """A fresh login session: a new id on every login (no fixation)."""
    token = secrets.token_urlsafe(32)
    LoginSession.create(token=token, user=user, last_seen_at=utcnow())
    user.session_token = token
    return user


def end_session(token: str | None) -> None:
    if token:
        LoginSession.update(revoked_at=utcnow()).where(LoginSession.token == token).execute()


def load_session(token: str) -> User | None:
    """The user of a live panel session: not revoked, not older than SESSION_MAX_HOURS, used
    within SESSION_IDLE_MINUTES, its user active. Checked on the server on every request."""
    now = utcnow()
    idle = timedelta(minutes=setting("SESSION_IDLE_MINUTES"))
    oldest = now - timedelta(hours=setting("SESSION_MAX_HOURS"))
    row = (
        LoginSession.select(LoginSession, User, Account, Impersonation)
        .join(User)
        .join(Account)
        .switch(LoginSession)
        .join(
            Impersonation,
            pw.JOIN.LEFT_OUTER,
            on=(Impersonation.session == LoginSession.id) & Impersonation.ended_at.is_null(),
            attr="acting",
        )
        .where(
            LoginSession.token == token,
            LoginSession.revoked_at.is_null(),
            User.is_active,
            LoginSession.created_at > oldest,
            pw.fn.COALESCE(LoginSession.last_seen_at, LoginSession.created_at) > now - idle,
        )
        .first()
    )
    if row is None or lifecycle.blocking_account(row.user.account.path) is not None:
        return None
    acting = getattr(row, "acting", None)
    acting = acting if acting is not None and acting.id is not None else None
    if acting is not None and not _impersonator_live(acting, now - idle, oldest):
        return None  # "Log in as" lasts while the one acting could still use their own session
    seen = row.last_seen_at or row.created_at
    if seen < now - _touch_every(idle):
        which = LoginSession.id == row.id
        if acting is not None:  # the impersonator's own session is in use too
            which = which | (LoginSession.token == acting.original_token)
        LoginSession.update(last_seen_at=now).where(which).execute()
    user = row.user
    user.session_token = token
    user.impersonation = acting
    return user


def _impersonator_live(acting: Impersonation, idle_since, oldest) -> bool:
    """The impersonator is active, their account usable and their own session live (not
    revoked, not too old; its idle time is what the impersonated session's use renews)."""
    own = (
        LoginSession.select(LoginSession.id, User.id, Account.path)
        .join(User)
        .join(Account)
        .where(
            (LoginSession.token == acting.original_token)
            & (LoginSession.user == acting.impersonator_id)
            & LoginSession.revoked_at.is_null()
            & User.is_active
            & (LoginSession.created_at > oldest)
            & (pw.fn.COALESCE(LoginSession.last_seen_at, LoginSession.created_at) > idle_since)
        )
        .first()
    )
    return own is not None and lifecycle.blocking_account(own.user.account.path) is None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, name: str = "api") -> str:
    if getattr(user, "impersonation", None) is not None:  # core.impersonation
        raise Forbidden(
            "no API token can be created while acting as another user",
            {"user": ["acting as another user"]},
        )
    token = "bh_" + secrets.token_urlsafe(32)
    with database.atomic():
        ApiToken.create(user=user, name=name, token_hash=_digest(token), prefix=token[:10])
        audit.record(user, "token.create", object_type="api_token", object_id=token[:10])
    return token


_USER_FIELDS = User._meta.sorted_fields
_token_user = Prepared(  # every API call: its SQL is generated once
    lambda digest, born_after, used_after: (
        User.select(
            *_USER_FIELDS, ApiToken.id, ApiToken.last_used_at, ApiToken.created_at, Account.path
        )  # fmt: skip
        .join(ApiToken)
        .switch(User)
        .join(Account)
        .where(
            (ApiToken.token_hash == digest)
            & ApiToken.revoked_at.is_null()
            & User.is_active
            & (ApiToken.created_at > born_after)
            & (pw.fn.COALESCE(ApiToken.last_used_at, ApiToken.created_at) > used_after)
        )
        .limit(1)
    )
)
_touch_token = Prepared(
    lambda now, token_id: ApiToken.update(last_used_at=now).where(ApiToken.id == token_id)
)


def user_for_token(token: str) -> User | None:
    """The user of a live API token: not revoked, not older than TOKEN_MAX_DAYS, used within
    TOKEN_IDLE_DAYS, its user active."""
    now = utcnow()
    idle = timedelta(days=setting("TOKEN_IDLE_DAYS"))
    oldest = now - timedelta(days=setting("TOKEN_MAX_DAYS"))
    field = ApiToken.created_at
    row = _token_user.execute(
        _digest(token), field.db_value(oldest), field.db_value(now - idle)
    ).fetchone()
    if row is None or lifecycle.blocking_account(row[-1]) is not None:
        return None  # a suspended account's tokens answer 401 until it is reactivated
    n = len(_USER_FIELDS)
    user = User(
        __no_default__=1,
        **{f.name: f.python_value(v) for f, v in zip(_USER_FIELDS, row[:n], strict=True)},
    )
    user._dirty.clear()
    token_id, last_used, created = row[n], field.python_value(row[n + 1]), row[n + 2]
    seen = last_used or field.python_value(created)
    if seen < now - _touch_every(idle):
        _touch_token.execute(field.db_value(now), token_id)
    return user


def revoke_token(user: User, prefix: str) -> int:
    with database.atomic():
        n = (
            ApiToken.update(revoked_at=utcnow())
            .where(ApiToken.user == user, ApiToken.prefix == prefix, ApiToken.revoked_at.is_null())
            .execute()
        )
        if n:
            audit.record(user, "token.revoke", object_type="api_token", object_id=prefix)
    return n


# -- changing passwords, deactivating, deleting ----------------------------------------------


def _revoke_access(user: User, keep_session: str | None = None) -> dict:
    """End the user's panel sessions (but ``keep_session``) and, without ``keep_session``,
    revoke their API tokens. Returns how many of each, for the audit entry."""
    now = utcnow()
    sessions = LoginSession.update(revoked_at=now).where(
        LoginSession.user == user.id, LoginSession.revoked_at.is_null()
    )
    if keep_session:
        sessions = sessions.where(LoginSession.token != keep_session)
    ended = {"sessions_ended": sessions.execute()}
    if keep_session is None:
        ended["tokens_revoked"] = (
            ApiToken.update(revoked_at=now)
            .where(ApiToken.user == user.id, ApiToken.revoked_at.is_null())
            .execute()
        )
    return ended


def _refuse(actor, user: User, action: str, exc: ValidationFailed):
    with database.atomic():
        audit.record(
            actor,
            f"{action}.refused",
            object_type="user",
            object_id=user.id,
            account=user.account,
            after={"user": user.email, "errors": exc.errors},
        )
    raise exc


def _may_take_away(actor, user: User, action: str, verb: str) -> None:
    """Deactivating, deleting or setting the password of ``user`` needs users.manage on their
    account and every privilege their roles grant (no weaker admin takes over a stronger
    one); nobody does it to themselves here."""
    if actor is None:
        return
    rbac.require(actor, "users.manage", user.account)
    if actor.id == user.id:
        raise Conflict(f"you cannot {verb} your own user", {"user": [f"cannot {verb} yourself"]})
    try:
        rbac.check_removable(actor, user, rbac.roles_of(user), verb)
    except ValidationFailed as exc:
        _refuse(actor, user, action, exc)


def deactivate(actor, user: User) -> User:
    """The user can no longer log in; their sessions end and their tokens are revoked at once.
    An account keeps its last active Full Access holder (409)."""
    _may_take_away(actor, user, "user.deactivate", "deactivate")
    with database.atomic():
        rbac.keep_last_full_access(user)
        if not user.is_active:
            return user
        before = snapshot(user)
        User.update(is_active=False).where(User.id == user.id).execute()
        user.is_active = False
        ended = _revoke_access(user)
        audit.record(
            actor,
            "user.deactivate",
            user,
            account=user.account,
            before=before,
            after={**snapshot(user), **ended},
        )
    return user


def activate(actor, user: User) -> User:
    """Give a deactivated user their login back: that grants their roles again, so it needs
    what assigning them needs."""
    if actor is not None:
        rbac.require(actor, "users.manage", user.account)
        for role in rbac.roles_of(user):
            rbac.check_assignable(actor, role, user)
    with database.atomic():
        if user.is_active:
            return user
        before = snapshot(user)
        User.update(is_active=True).where(User.id == user.id).execute()
        user.is_active = True
        audit.record(
            actor, "user.activate", user, account=user.account, before=before, after=snapshot(user)
        )
    return user


def delete_user(actor, user: User) -> None:
    """Delete the user with their role links, sessions and tokens; what they did stays in the
    audit log under their e-mail. The same rules as deactivating."""
    _may_take_away(actor, user, "user.delete", "delete")
    with database.atomic():
        rbac.keep_last_full_access(user)
        before = snapshot(user)
        user_id, account = user.id, user.account
        UserRole.delete().where(UserRole.user == user_id).execute()
        LoginSession.delete().where(LoginSession.user == user_id).execute()
        ApiToken.delete().where(ApiToken.user == user_id).execute()
        try:
            with database.atomic():
                User.delete().where(User.id == user_id).execute()
        except pw.IntegrityError:
            raise Conflict(
                f"{user.email} is still referenced by records that must keep them; "
                "deactivate the user instead"
            ) from None
        audit.record(
            actor, "user.delete", object_type="user", object_id=user_id, account=account,
            before=before,
        )  # fmt: skip


def change_password(user: User, payload: dict, keep_session: str | None = None) -> None:
    """Change your own password: the current one is checked like a login (counted, locked
    after repeated failures). Your other panel sessions end; ``keep_session`` (the one
    asking) stays, and so do your API tokens."""
    data = load(PasswordChange(), payload)
    try:
        authenticate(user.email, data["current_password"])
    except ValidationFailed as exc:
        raise ValidationFailed(
            f"current_password: {exc.message}", {"current_password": [exc.message]}
        ) from None
    passwords.check(data["new_password"], "new_password", user.email)
    if data["new_password"] == data["current_password"]:
        raise ValidationFailed.field("new_password", "must differ from the current password")
    with database.atomic():
        User.update(password_hash=hash_password(data["new_password"])).where(
            User.id == user.id
        ).execute()
        # the panel session asking stays; an API caller ("") keeps no panel session
        ended = _revoke_access(user, keep_session=keep_session or "")
        audit.record(user, "user.password.change", user, account=user.account_id, after=ended)


def reset_password(actor, user: User, payload: dict) -> None:
    """An administrator sets a new password for a user of their subtree (users.manage, and
    every privilege of the user's roles). All the user's sessions and tokens end, and a lock
    on their e-mail is lifted."""
    _may_take_away(actor, user, "user.password.reset", "reset the password of")
    data = load(PasswordReset(), payload)
    passwords.check(data["password"], "password", user.email)
    with database.atomic():
        User.update(password_hash=hash_password(data["password"])).where(
            User.id == user.id
        ).execute()
        key = _throttle_keys(user.email, None)[0][0]
        LoginThrottle.update(attempts=0, locked_until=None).where(
            LoginThrottle.key == key
        ).execute()
        ended = _revoke_access(user)
        audit.record(actor, "user.password.reset", user, account=user.account_id, after=ended)
