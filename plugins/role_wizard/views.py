"""Panel pages of the role wizard: the Roles and Privileges tabs of an account, the Add New
Role wizard (also used to edit), clone, delete, assign and unassign.

Every change goes through ``core.roles`` (escalation checks, audit); this module only keeps
the wizard's state (in hidden form fields, so Back/Next need no JavaScript) and renders.
"""

from __future__ import annotations

from collections import defaultdict

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from core.kit import (
    Account,
    BillhiveError,
    Conflict,
    Forbidden,
    NotFound,
    Role,
    User,
    form_errors,
    host,
    rbac,
    roles,
)

blueprint = Blueprint("role_wizard", __name__, template_folder="templates")

TAB = "role_wizard.roles"
STEPS = ("Name and Description", "Privileges", "Review")
# Who may look at the Roles tab, its Privileges tab and a role: either privilege suffices
# (the menu item says the same). Changes still need roles.manage, assignments users.manage.
VIEW = ("users.view", "roles.manage")


def _account(account_id: int) -> Account:
    return rbac.get_account(current_user, account_id)


def _require_view(account: Account) -> None:
    """Any of ``VIEW`` opens the read-only pages (404 outside the subtree, 403 without)."""
    if not account.is_within(current_user.account):
        raise NotFound(f"account {account.id} not found")
    if not any(rbac.has(current_user, code) for code in VIEW):
        raise Forbidden("you lack the privilege 'users.view' or 'roles.manage'")


def _role(account: Account, role_id: int) -> Role:
    role = rbac.get_scoped(Role, current_user, role_id)
    if role.account_id != account.id:
        raise NotFound(f"role {role_id} not found")
    return role


#: What the wizard calls its fields.
LABELS = {"name": "Name", "description": "Description", "privileges": "Privileges"}


# -- privileges: what exists, what is offered, why one is greyed ----------------------------


def inactive_reason(code: str, account: Account) -> str | None:
    """Why a stored privilege grants nothing on a role of ``account`` (None: it is active)."""
    active = host().privileges()
    if code in active:
        level = rbac.level_of(account)
        if level not in active[code].levels:
            return f"not available at the {level} level"
        return None
    declared = host().catalog.privileges.get(code)
    if declared is not None:
        return f"plugin {declared.plugin} is disabled"
    return "no installed plugin declares it"


def privilege_title(code: str) -> str:
    declared = host().catalog.privileges.get(code)
    return declared.item.title if declared else code


def offered_privileges(account: Account) -> dict:
    """What the wizard offers: privileges at the account's level that the actor may grant."""
    level = rbac.level_of(account)
    held = rbac.grantable_by(current_user)
    return {
        code: p for code, p in host().privileges().items() if level in p.levels and code in held
    }


def grouped(privs: dict) -> list[tuple[str, list]]:
    groups: dict[str, list] = defaultdict(list)
    for _code, p in sorted(privs.items()):
        groups[p.group].append(p)
    return sorted(groups.items())


def role_rows(role: Role, account: Account) -> list[dict]:
    return [
        {"code": code, "title": privilege_title(code), "reason": inactive_reason(code, account)}
        for code in sorted(rbac.stored_privileges(role))
    ]


# -- tabs ------------------------------------------------------------------------------------


@blueprint.route("/accounts/<int:account_id>/roles", endpoint="roles")
@login_required
def roles_tab(account_id):
    account = _account(account_id)
    _require_view(account)
    rows = []
    for role in (
        Role.select()
        .where(Role.account == account)
        .order_by(Role.default_code.is_null(), Role.name)
    ):
        privs = role_rows(role, account)
        rows.append(
            {
                "role": role,
                "count": len(privs),
                "inactive": sum(1 for p in privs if p["reason"]),
                "holders": rbac.users_holding(role),
            }
        )
    return render_template("role_wizard/roles.html", account=account, rows=rows, tab=TAB)


@blueprint.route("/accounts/<int:account_id>/roles/privileges")
@login_required
def privileges_tab(account_id):
    account = _account(account_id)
    _require_view(account)
    catalog = host().catalog.privileges
    privs = [
        {"p": p, "plugin": catalog[code].plugin} for code, p in sorted(host().privileges().items())
    ]
    privs.sort(key=lambda r: (r["p"].group, r["p"].code))
    return render_template(
        "role_wizard/privileges.html",
        account=account,
        privs=privs,
        level=rbac.level_of(account),
        tab=TAB,
    )


# -- the wizard (new and edit) ---------------------------------------------------------------


def _validate_step1(account: Account, state: dict, role: Role | None) -> dict:
    errors = {}
    if not state["name"]:
        errors["name"] = "Name is required"
    elif len(state["name"]) > 100:
        errors["name"] = "Name must be at most 100 characters"
    else:
        query = Role.select().where(Role.account == account, Role.name == state["name"])
        if role is not None:
            query = query.where(Role.id != role.id)
        if query.exists():
            errors["name"] = f"a role named '{state['name']}' already exists in {account.name}"
    if not state["description"]:
        errors["description"] = "Description is required"
    elif len(state["description"]) > 500:
        errors["description"] = "Description must be at most 500 characters"
    return errors


def _validate_step2(state: dict, locked: dict) -> dict:
    if not state["privileges"] and not locked:
        return {"privileges": "Select at least one privilege"}
    return {}


def _wizard(account: Account, role: Role | None):
    rbac.require(current_user, "roles.manage", account)
    offered = offered_privileges(account)
    locked: dict[str, str] = {}  # stored privileges the actor cannot (un)set here, kept as is
    if role is not None:
        for code in sorted(rbac.stored_privileges(role) - set(offered)):
            locked[code] = inactive_reason(code, account) or "you do not hold it yourself"
    errors: dict = {}
    if request.method == "GET":
        step = 1
        state = {
            "name": role.name if role else "",
            "description": role.description if role else "",
            "privileges": sorted(rbac.stored_privileges(role) & set(offered)) if role else [],
        }
    else:
        form = request.form
        state = {
            "name": form.get("name", "").strip(),
            "description": form.get("description", "").strip(),
            "privileges": sorted(set(form.getlist("privileges"))),
        }
        try:
            step = min(max(int(form.get("step", 1)), 1), len(STEPS))
        except ValueError:
            step = 1
        action = form.get("action", "next")
        back = url_for("role_wizard.roles", account_id=account.id)
        if role is not None:
            back = url_for("role_wizard.role", account_id=account.id, role_id=role.id)
        if action == "cancel":
            flash("Nothing was saved." if role is None else "Changes discarded.")
            return redirect(back)
        if action == "back":
            step = max(step - 1, 1)
        elif action == "next":
            errors = _validate_step1(account, state, role) if step == 1 else {}
            if step == 2:
                errors = _validate_step2(state, locked)
            if not errors:
                step = min(step + 1, len(STEPS))
        elif action == "finish":
            errors = _validate_step1(account, state, role)
            if errors:
                step = 1
            else:
                errors = _validate_step2(state, locked)
                step = 2 if errors else step
            if not errors:
                payload = {
                    "name": state["name"],
                    "description": state["description"],
                    "privileges": sorted(set(state["privileges"]) | set(locked)),
                }
                try:
                    if role is None:
                        saved = roles.create_role(current_user, account, payload)
                        flash(f"Role '{saved.name}' created.")
                    else:
                        saved = roles.update_role(current_user, role, payload)
                        flash(f"Role '{saved.name}' saved.")
                except BillhiveError as exc:
                    errors = form_errors(exc, LABELS)
                    step = 1 if ("name" in errors or "description" in errors) else 2
                else:
                    return redirect(
                        url_for("role_wizard.role", account_id=account.id, role_id=saved.id)
                    )
    return render_template(
        "role_wizard/wizard.html",
        account=account,
        role=role,
        step=step,
        steps=STEPS,
        state=state,
        errors=errors,
        groups=grouped(offered),
        offered=offered,
        locked=locked,
        title=privilege_title,
        tab=TAB,
    ), (422 if errors else 200)


@blueprint.route("/accounts/<int:account_id>/roles/new", methods=["GET", "POST"])
@login_required
def new_role(account_id):
    return _wizard(_account(account_id), None)


@blueprint.route("/accounts/<int:account_id>/roles/<int:role_id>/edit", methods=["GET", "POST"])
@login_required
def edit_role(account_id, role_id):
    account = _account(account_id)
    role = _role(account, role_id)
    if role.is_default:
        raise Conflict(f"'{role.name}' is a default role and cannot be changed; clone it instead")
    return _wizard(account, role)


# -- one role: privileges, holders, assign, clone, delete -----------------------------------


def _render_role(account: Account, role: Role, error: str | None = None, status: int = 200):
    people = []  # the account's users are listed to users.view only (roles.manage may not)
    if rbac.has(current_user, "users.view"):
        people = list(User.select().where(User.account == account).order_by(User.email))
    holders = {u.id for u in rbac.users_holding(role)}
    return render_template(
        "role_wizard/role.html",
        account=account,
        role=role,
        privs=role_rows(role, account),
        people=people,
        holders=holders,
        error=error,
        tab=TAB,
    ), status


@blueprint.route("/accounts/<int:account_id>/roles/<int:role_id>")
@login_required
def role(account_id, role_id):
    account = _account(account_id)
    _require_view(account)
    return _render_role(account, _role(account, role_id))


@blueprint.route("/accounts/<int:account_id>/roles/<int:role_id>/clone", methods=["POST"])
@login_required
def clone_role(account_id, role_id):
    account = _account(account_id)
    source = _role(account, role_id)
    try:
        copy = roles.clone_role(current_user, source)
    except BillhiveError as exc:
        if exc.status in (403, 404):
            raise
        flash(f"Cannot clone '{source.name}': {exc.message}", "error")
        return redirect(url_for("role_wizard.role", account_id=account.id, role_id=source.id))
    flash(f"Role '{source.name}' cloned as '{copy.name}'.")
    return redirect(url_for("role_wizard.role", account_id=account.id, role_id=copy.id))


@blueprint.route("/accounts/<int:account_id>/roles/<int:role_id>/delete", methods=["POST"])
@login_required
def delete_role(account_id, role_id):
    account = _account(account_id)
    target = _role(account, role_id)
    try:
        roles.delete_role(current_user, target)
    except Conflict as exc:
        _require_view(account)
        return _render_role(account, target, exc.message, 409)
    flash(f"Role '{target.name}' deleted.")
    return redirect(url_for("role_wizard.roles", account_id=account.id))


@blueprint.route("/accounts/<int:account_id>/roles/<int:role_id>/users", methods=["POST"])
@login_required
def role_users(account_id, role_id):
    account = _account(account_id)
    target_role = _role(account, role_id)
    target = rbac.get_scoped(User, current_user, request.form.get("user_id", "x"))
    try:
        if request.form.get("action") == "unassign":
            roles.unassign(current_user, target_role, target)
            flash(f"Role '{target_role.name}' removed from {target.email}.")
        else:
            roles.assign(current_user, target_role, target)
            flash(f"Role '{target_role.name}' assigned to {target.email}.")
    except BillhiveError as exc:
        if exc.status in (403, 404):
            raise
        flash(exc.message, "error")
    return redirect(url_for("role_wizard.role", account_id=account.id, role_id=target_role.id))
