"""Core API resources: tokens, accounts, users, roles, privileges, plugins, licence, audit."""

from __future__ import annotations

from flask_smorest import Blueprint

from core import accounts as account_service
from core import audit, license_store, lifecycle, rbac, roles, users
from core.api import schemas as s
from core.auth import api_login_required, api_user
from core.current import host
from core.errors import Forbidden, ValidationFailed
from core.find import lists
from core.find.listing import API_HEADERS, api_answer
from core.licenses import LicenseError
from core.models import Role, User
from core.plugins import CORE_PLUGIN

tokens = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens", description="API tokens")
accounts = Blueprint("accounts", __name__, url_prefix="/api/v1/accounts", description="Accounts")
users_bp = Blueprint("users", __name__, url_prefix="/api/v1/users", description="Users")
roles_bp = Blueprint("roles", __name__, url_prefix="/api/v1", description="Roles and privileges")
ops = Blueprint("operations", __name__, url_prefix="/api/v1", description="Plugins, licence, audit")


def blueprints():
    return [tokens, accounts, users_bp, roles_bp, ops]


# -- tokens ----------------------------------------------------------------------------------


@tokens.route("", methods=["POST"])
@tokens.arguments(s.TokenRequest)
@tokens.response(201, s.TokenOut)
@tokens.doc(security=[])
def create_token(data):
    """Exchange e-mail and password for an API token."""
    user = users.authenticate(data["email"], data["password"])
    return {"token": users.issue_token(user)}


@tokens.route("/<prefix>", methods=["DELETE"])
@tokens.response(204)
@api_login_required
def revoke_token(prefix):
    """Revoke one of your tokens by its prefix (the first 10 characters); effective at once."""
    if not users.revoke_token(api_user(), prefix):
        raise ValidationFailed.field("prefix", f"no active token starting with {prefix}")


# -- accounts --------------------------------------------------------------------------------


@accounts.route("", methods=["GET"])
@accounts.arguments(lists.AccountListArgs, location="query")
@accounts.response(200, s.AccountOut(many=True), headers=API_HEADERS)
@accounts.alt_response(403, response="DEFAULT_ERROR", description="without the list's privilege")
@accounts.alt_response(
    404, response="DEFAULT_ERROR", description="an account_id or parent_id outside your subtree"
)
@api_login_required
def list_accounts(args):
    """Accounts of your subtree (your own included), tree order unless ``sort`` says
    otherwise. ``parent_id`` lists one level of the tree (404 for an account outside your
    subtree). Paging in the ``X-Total-Count`` and ``Link`` headers."""
    user = api_user()
    rbac.require(user, "accounts.view")
    return api_answer(lists.ACCOUNTS, lists.accounts_query(user), args, user)


@accounts.route("", methods=["POST"])
@accounts.arguments(account_service.AccountCreate)
@accounts.response(201, s.AccountOut)
@api_login_required
def create_account(data):
    """Create a child account (type Standard = ``customer``, or a plugin's type)."""
    return account_service.create_account(api_user(), data)


@accounts.route("/<int:account_id>", methods=["GET"])
@accounts.response(200, s.AccountOut)
@api_login_required
def get_account(account_id):
    user = api_user()
    account = rbac.get_account(user, account_id)
    rbac.require(user, "accounts.view", account)
    return account


@accounts.route("/<int:account_id>", methods=["PATCH"])
@accounts.arguments(account_service.AccountPatch(partial=True))
@accounts.response(200, s.AccountOut)
@api_login_required
def update_account(data, account_id):
    """Edit an account (``accounts.manage``). Its **billing terms** (``currency``,
    ``bill_cycle_day``, ``tax_rate``, ``profile`` such as the Reseller Profile) belong to the
    seller: they change only with ``accounts.billing_terms``, which applies strictly below
    your own account; on your own account they are refused with 403 naming each field
    (values sent back unchanged are no change). Name, e-mail, address and invoice prefix stay
    yours to edit. ``currency`` cannot change once the account has subscriptions, invoices,
    ledger entries or prepaid top-ups (422 naming ``currency`` and why). ``bill_cycle_day``
    is a whole number 1-28. Refused attempts are audited (``account.update.refused``);
    nothing of a refused edit is written."""
    user = api_user()
    return account_service.update_account(user, rbac.get_account(user, account_id), data)


@accounts.route("/<int:account_id>/status", methods=["POST"])
@accounts.arguments(s.AccountStatusIn)
@accounts.response(200, s.AccountOut)
@accounts.alt_response(403, response="DEFAULT_ERROR", description="Your own account, the "
                       "provider's, or without accounts.lifecycle")  # fmt: skip
@accounts.alt_response(404, response="DEFAULT_ERROR", description="Not in your subtree")
@accounts.alt_response(409, response="DEFAULT_ERROR", description="Closed already (closing "
                       "is final), or child accounts not closed")  # fmt: skip
@api_login_required
def set_account_status(data, account_id):
    """Suspend (``suspended``), reactivate (``active``) or close (``closed``, final) an
    account strictly below yours (``accounts.lifecycle``). A suspended account, and everything
    below it, is left out of bill runs and has no logins: its users' panel sessions end and
    their API tokens answer 401 until it is reactivated. A closed account's subscriptions end
    today; bill runs invoice what is left up to today, then nothing. Audited with ``reason``."""
    user = api_user()
    account = rbac.get_account(user, account_id)
    return lifecycle.set_account_status(account, data["status"], user, data["reason"])


@accounts.route("/<int:account_id>/status", methods=["GET"])
@accounts.response(200, s.AccountStatusChangeOut(many=True))
@api_login_required
def account_status_history(account_id):
    """The account's status changes, newest first (who, when, why)."""
    user = api_user()
    account = rbac.get_account(user, account_id)
    rbac.require(user, "accounts.view", account)
    return lifecycle.history(account, 100)


@accounts.route("/<int:account_id>/users", methods=["GET"])
@accounts.response(200, s.UserOut(many=True))
@api_login_required
def account_users(account_id):
    user = api_user()
    account = rbac.get_account(user, account_id)
    rbac.require(user, "users.view", account)
    return User.select().where(User.account == account).order_by(User.email)


@accounts.route("/<int:account_id>/roles", methods=["GET"])
@accounts.response(200, s.RoleOut(many=True))
@api_login_required
def account_roles(account_id):
    user = api_user()
    account = rbac.get_account(user, account_id)
    rbac.require(user, "users.view", account)
    return (
        Role.select()
        .where(Role.account == account)
        .order_by(Role.default_code.is_null(), Role.name)
    )


@accounts.route("/<int:account_id>/roles", methods=["POST"])
@accounts.arguments(roles.RoleInput)
@accounts.response(201, s.RoleOut)
@api_login_required
def create_role(data, account_id):
    user = api_user()
    return roles.create_role(user, rbac.get_account(user, account_id), data)


# -- users -----------------------------------------------------------------------------------


@users_bp.route("", methods=["GET"])
@users_bp.arguments(lists.UserListArgs, location="query")
@users_bp.response(200, s.UserOut(many=True), headers=API_HEADERS)
@users_bp.alt_response(403, response="DEFAULT_ERROR", description="without the list's privilege")
@users_bp.alt_response(
    404, response="DEFAULT_ERROR", description="an account_id or parent_id outside your subtree"
)
@api_login_required
def list_users(args):
    """Users of your subtree (``users.view``), by e-mail unless ``sort`` says otherwise.
    Paging in the ``X-Total-Count`` and ``Link`` headers."""
    user = api_user()
    rbac.require(user, "users.view")
    return api_answer(lists.USERS, lists.users_query(user), args, user)


@users_bp.route("", methods=["POST"])
@users_bp.arguments(users.UserInput)
@users_bp.response(201, s.UserOut)
@api_login_required
def create_user(data):
    return users.create_user(api_user(), data)


@users_bp.route("/me", methods=["GET"])
@users_bp.response(200, s.UserOut)
@api_login_required
def me():
    return api_user()


@users_bp.route("/<int:user_id>", methods=["GET"])
@users_bp.response(200, s.UserOut)
@api_login_required
def get_user(user_id):
    user = api_user()
    target = rbac.get_scoped(User, user, user_id)
    rbac.require(user, "users.view", target.account)
    return target


@users_bp.route("/<int:user_id>", methods=["PATCH"])
@users_bp.arguments(users.UserPatch)
@users_bp.response(200, s.UserOut)
@users_bp.alt_response(404, response="DEFAULT_ERROR", description="Not in your subtree")
@users_bp.alt_response(409, response="DEFAULT_ERROR", description="The e-mail is another user's")
@api_login_required
def update_user(data, user_id):
    """Edit a user's ``name`` and ``email``: your own always; someone else's with
    users.manage and every privilege of their roles (422 naming what you lack, audited as
    ``user.update.refused``). An e-mail another user has answers 409 naming ``email``."""
    return users.update_user(api_user(), _managed_user(user_id), data)


@users_bp.route("/me/password", methods=["POST"])
@users_bp.arguments(users.PasswordChange)
@users_bp.response(204)
@api_login_required
def change_own_password(data):
    """Change your own password (the current one is checked like a login). Your panel
    sessions end; your API tokens stay."""
    users.change_password(api_user(), data)


def _managed_user(user_id) -> User:
    return rbac.get_scoped(User, api_user(), user_id)


@users_bp.route("/<int:user_id>/password", methods=["POST"])
@users_bp.arguments(users.PasswordReset)
@users_bp.response(204)
@api_login_required
def reset_password(data, user_id):
    """Set a new password for a user of your subtree (users.manage and every privilege of
    their roles). Their sessions and tokens end."""
    users.reset_password(api_user(), _managed_user(user_id), data)


@users_bp.route("/<int:user_id>/deactivate", methods=["POST"])
@users_bp.response(200, s.UserOut)
@api_login_required
def deactivate_user(user_id):
    """The user can no longer log in; sessions and tokens end at once. Needs users.manage and
    every privilege of their roles; an account keeps its last active Full Access holder."""
    return users.deactivate(api_user(), _managed_user(user_id))


@users_bp.route("/<int:user_id>/activate", methods=["POST"])
@users_bp.response(200, s.UserOut)
@api_login_required
def activate_user(user_id):
    """Let a deactivated user log in again (needs what assigning their roles needs)."""
    return users.activate(api_user(), _managed_user(user_id))


@users_bp.route("/<int:user_id>", methods=["DELETE"])
@users_bp.response(204)
@api_login_required
def delete_user(user_id):
    """Delete a user (the same rules as deactivating)."""
    users.delete_user(api_user(), _managed_user(user_id))


# -- roles -----------------------------------------------------------------------------------


def _role(role_id) -> Role:
    return rbac.get_scoped(Role, api_user(), role_id)


@roles_bp.route("/roles/<int:role_id>", methods=["GET"])
@roles_bp.response(200, s.RoleOut)
@api_login_required
def get_role(role_id):
    role = _role(role_id)
    rbac.require(api_user(), "users.view", role.account)
    return role


@roles_bp.route("/roles/<int:role_id>", methods=["PATCH"])
@roles_bp.arguments(roles.RolePatch(partial=True))
@roles_bp.response(200, s.RoleOut)
@api_login_required
def update_role(data, role_id):
    return roles.update_role(api_user(), _role(role_id), data)


@roles_bp.route("/roles/<int:role_id>", methods=["DELETE"])
@roles_bp.response(204)
@api_login_required
def delete_role(role_id):
    roles.delete_role(api_user(), _role(role_id))


@roles_bp.route("/roles/<int:role_id>/clone", methods=["POST"])
@roles_bp.response(201, s.RoleOut)
@api_login_required
def clone_role(role_id):
    return roles.clone_role(api_user(), _role(role_id))


@roles_bp.route("/roles/<int:role_id>/users", methods=["POST"])
@roles_bp.arguments(s.RoleAssignment)
@roles_bp.response(200, s.RoleOut)
@api_login_required
def assign_role(data, role_id):
    role = _role(role_id)
    target = rbac.get_scoped(User, api_user(), data["user_id"])
    roles.assign(api_user(), role, target)
    return role


@roles_bp.route("/roles/<int:role_id>/users/<int:user_id>", methods=["DELETE"])
@roles_bp.response(200, s.RoleOut)
@api_login_required
def unassign_role(role_id, user_id):
    role = _role(role_id)
    roles.unassign(api_user(), role, rbac.get_scoped(User, api_user(), user_id))
    return role


@roles_bp.route("/privileges", methods=["GET"])
@roles_bp.response(200, s.PrivilegeOut(many=True))
@api_login_required
def list_privileges():
    """Every privilege of every enabled plugin, with the levels where it applies."""
    catalog = host().catalog.privileges
    return [
        {**vars(p), "plugin": catalog[code].plugin}
        for code, p in sorted(host().privileges().items())
    ]


# -- operations: plugins, licence, audit -----------------------------------------------------


def plugin_rows() -> list[dict]:
    rows = []
    for name, plugin in sorted(host().plugins.items()):
        problem = host().license_problem(name)
        rows.append(
            {
                "name": name,
                "title": plugin.meta.title,
                "version": plugin.meta.version,
                "enabled": host().is_enabled(name),
                "license_feature": plugin.meta.license_feature,
                "licensed": problem is None,
                "license_problem": problem,
                "essential": plugin.meta.essential,
            }
        )
    return rows


def _operator(code: str):
    user = api_user()
    if user.account.parent_id is not None:
        raise Forbidden(f"only the provider's operators hold '{code}'")
    rbac.require(user, code)
    return user


@ops.route("/plugins", methods=["GET"])
@ops.response(200, s.PluginOut(many=True))
@api_login_required
def list_plugins():
    _operator("plugins.manage")
    return [r for r in plugin_rows() if r["name"] != CORE_PLUGIN]


@ops.route("/plugins/<name>/enable", methods=["POST"])
@ops.response(200, s.PluginOut)
@api_login_required
def enable_plugin(name):
    host().set_enabled(name, True, _operator("plugins.manage"))
    return next(r for r in plugin_rows() if r["name"] == name)


@ops.route("/plugins/<name>/disable", methods=["POST"])
@ops.response(200, s.PluginOut)
@api_login_required
def disable_plugin(name):
    host().set_enabled(name, False, _operator("plugins.manage"))
    return next(r for r in plugin_rows() if r["name"] == name)


def license_status() -> dict:
    record = license_store.current_record()
    lic, problem = license_store.current(host().license_key_paths)
    out = {"installed": record is not None, "valid": lic is not None, "problem": problem}
    if lic is not None:
        out.update(lic.to_dict())
    elif record is not None:
        out.update(licensee=record.licensee, expires=str(record.expires), features=record.features)
    return out


@ops.route("/license", methods=["GET"])
@ops.response(200, s.LicenseOut)
@api_login_required
def get_license():
    _operator("licenses.manage")
    return license_status()


@ops.route("/license", methods=["PUT"])
@ops.arguments(s.LicenseIn)
@ops.response(200, s.LicenseOut)
@api_login_required
def put_license(data):
    """Install a licence; a malformed, tampered, untrusted or expired one is refused."""
    actor = _operator("licenses.manage")
    try:
        license_store.install(data["text"], host().license_key_paths, actor)
    except LicenseError as exc:
        raise ValidationFailed.field("text", str(exc)) from None
    return license_status()


@ops.route("/audit", methods=["GET"])
@ops.arguments(lists.AuditListArgs, location="query")
@ops.response(200, s.AuditOut(many=True), headers=API_HEADERS)
@ops.alt_response(403, response="DEFAULT_ERROR", description="without the list's privilege")
@ops.alt_response(
    404, response="DEFAULT_ERROR", description="an account_id or parent_id outside your subtree"
)
@api_login_required
def list_audit(args):
    """The audit log, newest first: filters ``account_id``, ``actor``, ``action`` (or its
    start), ``from``/``to`` (days, both included). Paging in the ``X-Total-Count`` and
    ``Link`` headers."""
    user = _operator("audit.view")
    return api_answer(lists.AUDIT, lists.audit_query(user), args, user)


__all__ = ["blueprints", "plugin_rows", "license_status", "audit"]
