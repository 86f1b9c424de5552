"""Users: creation, passwords, login throttling, API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app, has_app_context
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.security import check_password_hash, generate_password_hash

from core import audit, rbac
from core.db import Prepared, database, utcnow
from core.errors import Conflict, ValidationFailed, marshmallow_errors
from core.models import ApiToken, LoginSession, Role, User, UserRole

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)


class UserInput(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = fields.String(load_default="", validate=validate.Length(max=200))
    password = fields.String(required=True, validate=validate.Length(min=8, max=200))
    account_id = fields.Integer(required=True)
    role_ids = fields.List(fields.Integer(), load_default=list)


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
    try:
        data = UserInput().load(payload or {})
    except ValidationError as err:
        raise marshmallow_errors(err) from None
    account = (
        rbac.get_account(actor, data["account_id"])
        if actor is not None
        else rbac.Account.get_or_none(rbac.Account.id == data["account_id"])
    )
    if account is None:
        raise ValidationFailed.field("account_id", f"account {data['account_id']} not found")
    if actor is not None:
        rbac.require(actor, "users.manage", account)
    email = data["email"].strip().lower()
    if User.get_or_none(User.email == email):
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


def _roles_of(account, role_ids: list[int]) -> list[Role]:
    roles = []
    for rid in role_ids:
        role = Role.get_or_none(Role.id == rid, Role.account == account)
        if role is None:
            raise ValidationFailed.field("role_ids", f"role {rid} is not a role of this account")
        roles.append(role)
    return roles


def authenticate(email: str, password: str) -> User:
    """The user for these credentials; the same message whether the e-mail exists or not,
    and a temporary lock after repeated failures."""
    refused = ValidationFailed(
        "wrong e-mail or password", {"password": ["wrong e-mail or password"]}
    )
    user = User.get_or_none(User.email == (email or "").strip().lower())
    now = utcnow()
    if user is None or not user.is_active:
        check_password_hash(hash_password("x" * 8), password or "")  # same cost either way
        raise refused
    if user.locked_until and user.locked_until > now:
        raise ValidationFailed(
            "too many failed logins: try again in a few minutes",
            {"password": ["too many failed logins: try again in a few minutes"]},
        )
    if not check_password_hash(user.password_hash, password or ""):
        # counted in the database, not from what this request read: guesses sent in parallel
        # must lock the account as surely as guesses sent one after the other
        User.update(failed_logins=User.failed_logins + 1).where(User.id == user.id).execute()
        User.update(failed_logins=0, locked_until=now + LOCKOUT).where(
            (User.id == user.id) & (User.failed_logins >= MAX_FAILED_LOGINS)
        ).execute()
        raise refused
    User.update(failed_logins=0, locked_until=None, last_login_at=now).where(
        User.id == user.id
    ).execute()
    return user


def start_session(user: User) -> User:
    """A fresh login session: a new id on every login (no fixation)."""
    token = secrets.token_urlsafe(32)
    LoginSession.create(token=token, user=user)
    user.session_token = token
    return user


def end_session(token: str | None) -> None:
    if token:
        LoginSession.update(revoked_at=utcnow()).where(LoginSession.token == token).execute()


def load_session(token: str) -> User | None:
    row = (
        LoginSession.select(LoginSession, User)
        .join(User)
        .where(LoginSession.token == token, LoginSession.revoked_at.is_null(), User.is_active)
        .first()
    )
    if row is None:
        return None
    user = row.user
    user.session_token = token
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, name: str = "api") -> str:
    token = "bh_" + secrets.token_urlsafe(32)
    with database.atomic():
        ApiToken.create(user=user, name=name, token_hash=_digest(token), prefix=token[:10])
        audit.record(user, "token.create", object_type="api_token", object_id=token[:10])
    return token


_token_user = Prepared(  # every API call: its SQL is generated once
    lambda digest: (
        User.select()
        .join(ApiToken)
        .where((ApiToken.token_hash == digest) & ApiToken.revoked_at.is_null() & User.is_active)
        .limit(1)
    )
)


def user_for_token(token: str) -> User | None:
    return _token_user.instance(_digest(token))


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
