"""Roles of an account: create, edit, clone, delete, assign — each checked for escalation and
audited in its own transaction. The core API and the role wizard both call these."""

from __future__ import annotations

from marshmallow import Schema, fields

from core import audit, rbac
from core.db import database
from core.errors import Conflict, ValidationFailed, load
from core.fields import Text
from core.models import Account, Role, RolePrivilege, User, UserRole


class RoleInput(Schema):
    name = Text(100, min_length=1, required=True)
    description = Text(500, min_length=1, required=True, multiline=True)
    privileges = fields.List(Text(100, card_numbers=False), load_default=list)


class RolePatch(RoleInput):
    """The same fields, every one optional (PATCH)."""


def snapshot(role: Role) -> dict:
    return {
        "name": role.name,
        "description": role.description,
        "account_id": role.account_id,
        "privileges": sorted(rbac.stored_privileges(role)),
        "default": role.is_default,
    }


def _load(payload: dict, partial=False) -> dict:
    data = load(RoleInput(), payload, partial=partial)
    if "name" in data:
        data["name"] = data["name"].strip()
        if not data["name"]:
            raise ValidationFailed.field("name", "is required")
    return data


def _check_unique(account: Account, name: str, exclude: int | None = None) -> None:
    query = Role.select().where(Role.account == account, Role.name == name)
    if exclude:
        query = query.where(Role.id != exclude)
    if query.exists():
        raise ValidationFailed.field("name", f"a role named '{name}' already exists here")


def _refuse(actor, account, action: str, exc: ValidationFailed, payload: dict):
    """Escalation attempts are refused and audited (in their own transaction)."""
    with database.atomic():
        audit.record(
            actor,
            f"{action}.refused",
            object_type="role",
            account=account,
            after={"attempt": payload, "errors": exc.errors},
        )
    raise exc


def create_role(actor, account: Account, payload: dict) -> Role:
    if actor is not None:
        rbac.require(actor, "roles.manage", account)
    data = _load(payload)
    _check_unique(account, data["name"])
    try:
        rbac.check_grantable(actor, account, data["privileges"])
    except ValidationFailed as exc:
        _refuse(actor, account, "role.create", exc, data)
    with database.atomic():
        role = Role.create(account=account, name=data["name"], description=data["description"])
        for code in sorted(set(data["privileges"])):
            RolePrivilege.create(role=role, code=code)
        audit.record(actor, "role.create", role, account=account, after=snapshot(role))
    return role


def update_role(actor, role: Role, payload: dict) -> Role:
    if actor is not None:
        rbac.require(actor, "roles.manage", role.account)
    if role.is_default:
        raise Conflict(f"'{role.name}' is a default role and cannot be changed; clone it instead")
    data = _load(payload, partial=True)
    if "name" in data:
        _check_unique(role.account, data["name"], exclude=role.id)
    if "privileges" in data:
        # privileges already on the role (e.g. of a disabled plugin) may stay as they are
        added = set(data["privileges"]) - rbac.stored_privileges(role)
        try:
            rbac.check_grantable(actor, role.account, added)
        except ValidationFailed as exc:
            _refuse(actor, role.account, "role.update", exc, data)
    with database.atomic():
        before = snapshot(role)
        for key in ("name", "description"):
            if key in data:
                setattr(role, key, data[key])
        role.save()
        if "privileges" in data:
            RolePrivilege.delete().where(RolePrivilege.role == role).execute()
            for code in sorted(set(data["privileges"])):
                RolePrivilege.create(role=role, code=code)
        audit.record(
            actor, "role.update", role, account=role.account, before=before, after=snapshot(role)
        )
    return role


def clone_role(actor, role: Role, name: str | None = None) -> Role:
    base = name or f"{role.name} (copy)"
    candidate, n = base, 2
    while Role.select().where(Role.account == role.account, Role.name == candidate).exists():
        candidate, n = f"{base} {n}", n + 1
    privileges = sorted(rbac.role_privileges(role))
    return create_role(
        actor,
        role.account,
        {"name": candidate, "description": role.description or role.name, "privileges": privileges},
    )


def delete_role(actor, role: Role) -> None:
    if actor is not None:
        rbac.require(actor, "roles.manage", role.account)
    if role.is_default:
        raise Conflict(f"'{role.name}' is a default role and cannot be deleted")
    holders = rbac.users_holding(role)
    if holders:
        emails = ", ".join(u.email for u in holders)
        raise Conflict(
            f"role '{role.name}' is still assigned to: {emails}; unassign it first",
            {"users": [u.email for u in holders]},
        )
    with database.atomic():
        before = snapshot(role)
        role.delete_instance(recursive=True)
        audit.record(
            actor,
            "role.delete",
            object_type="role",
            object_id=role.id,
            account=role.account,
            before=before,
        )


def assign(actor, role: Role, user: User) -> bool:
    if actor is not None:
        rbac.require(actor, "users.manage", user.account)
    try:
        rbac.check_assignable(actor, role, user)
    except ValidationFailed as exc:
        _refuse(actor, user.account, "role.assign", exc, {"role": role.id, "user": user.id})
    with database.atomic():
        if UserRole.get_or_none(user=user, role=role):
            return False
        UserRole.create(user=user, role=role)
        audit.record(
            actor,
            "role.assign",
            object_type="user",
            object_id=user.id,
            account=user.account,
            after={"role": role.name, "user": user.email},
        )
    return True


def unassign(actor, role: Role, user: User) -> bool:
    """Taking a role away needs what giving it needs (no demotion by a weaker admin), and an
    account keeps its last active Full Access holder (409)."""
    if actor is not None:
        rbac.require(actor, "users.manage", user.account)
    try:
        rbac.check_removable(actor, user, [role], f"remove '{role.name}' from")
    except ValidationFailed as exc:
        _refuse(actor, user.account, "role.unassign", exc, {"role": role.id, "user": user.id})
    with database.atomic():
        rbac.keep_last_full_access(user, role)
        n = UserRole.delete().where(UserRole.user == user, UserRole.role == role).execute()
        if n:
            audit.record(
                actor,
                "role.unassign",
                object_type="user",
                object_id=user.id,
                account=user.account,
                before={"role": role.name, "user": user.email},
            )
    return bool(n)
