"""Panel pages of the core. Every handler asks the same services as the API."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from peewee import fn

from core import accounts as account_service
from core import dashboard, impersonation, license_store, lifecycle, rbac, roles, users
from core.accounts import AccountInput
from core.api.resources import license_status, plugin_rows
from core.billing.invoicing import parties
from core.current import host
from core.errors import BillhiveError, Forbidden, ValidationFailed
from core.find import lists
from core.find.listing import panel_list
from core.find.views import account_names
from core.licenses import LicenseError
from core.models import Account, Role, User
from core.panel.forms import form_errors, keep
from core.plugins import CORE_PLUGIN
from core.redirects import redirect_next

blueprint = Blueprint(
    "panel",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/panel",
)


#: What each form calls its fields (the labels of its template), for its messages.
ACCOUNT_LABELS = {
    "type": "Account Type",
    "name": "Name",
    "email": "E-mail",
    "address": "Address",
    "currency": "Currency",
    "bill_cycle_day": "Bill cycle day",
    "tax_rate": "Tax rate",
    "invoice_prefix": "Invoice number prefix",
    "parent_id": "Parent account",
    "profile": "Profile",
}
USER_LABELS = {"email": "E-mail", "name": "Name", "password": "Password", "role_ids": "Roles"}
PASSWORD_LABELS = {"current_password": "Current password", "new_password": "New password"}


# -- login -----------------------------------------------------------------------------------


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    error, email = None, ""
    if request.method == "POST":
        email = request.form.get("email", "")
        try:
            user = users.authenticate(email, request.form.get("password", ""))
        except ValidationFailed as exc:
            error = exc.message
        else:
            if current_user.is_authenticated:  # whoever was logged in here: that session ends
                users.end_session(current_user.session_token)
            login_user(users.start_session(user))
            return redirect_next(request.args.get("next"), url_for("panel.home"))
    return render_template("core/login.html", error=error, email=email), (401 if error else 200)


@blueprint.route("/logout", methods=["POST"])
@login_required
def logout():
    # logging out while acting as someone ends that and the caller's own session too
    users.end_session(impersonation.end(current_user._get_current_object()))
    users.end_session(current_user.session_token)
    logout_user()
    flash("You have been logged out.")
    return redirect(url_for("panel.login"))


@blueprint.route("/")
@login_required
def home():
    return redirect(url_for("panel.account", account_id=current_user.account_id))


# -- accounts --------------------------------------------------------------------------------


@blueprint.route("/accounts")
@login_required
def accounts():
    """The account tree one level at a time (``parent_id``, your own account's children at
    first, breadcrumbs up to yours), or, once something is searched or filtered, every
    matching account of your subtree with its path (core.find.lists.ACCOUNTS)."""
    rbac.require(current_user, "accounts.view")
    searching = any(request.args.get(k) for k in ("q", "type", "status"))
    browsing = not searching or bool(request.args.get("parent_id"))
    defaults = {"sort": "name"}
    if not searching and not request.args.get("parent_id"):
        defaults["parent_id"] = current_user.account_id
    page, sent, error = panel_list(lists.ACCOUNTS, lists.accounts_query(current_user),
                                   current_user, request.args, **defaults)  # fmt: skip
    parent = None
    if browsing and not error:
        parent = rbac.get_account(current_user, sent.get("parent_id", current_user.account_id))
    ids = [a.id for a in page.items]
    below = dict(
        Account.select(Account.parent, fn.COUNT(Account.id))
        .where(Account.parent.in_(ids))
        .group_by(Account.parent)
        .tuples()
    ) if ids else {}  # fmt: skip
    ancestors = account_names({int(x) for a in page.items for x in a.path.strip("/").split("/")})
    return render_template(
        "core/accounts.html", page=page, sent=sent, error=error, parent=parent, below=below,
        ancestors=ancestors, types=host().account_types(), searching=searching,
        status_labels=lifecycle.LABELS,
    ), (422 if error else 200)  # fmt: skip


CHILDREN_SHOWN = 50  # on an account's page; the Accounts page pages through the rest


def _account(account_id: int) -> Account:
    return rbac.get_account(current_user, account_id)


def _account_labels(types) -> dict:
    """The account form's labels, with those of each type's profile (``profile.<field>``)."""
    from core.panel.jinja import schema_fields

    labels = dict(ACCOUNT_LABELS)
    for atype in types:
        if atype is not None and atype.profile_schema is not None:
            for f in schema_fields(atype.profile_schema):
                labels[f"profile.{f['name']}"] = f["label"]
    return labels


def _account_form_payload(form, types) -> dict:
    payload = {
        k: form[k]
        for k in (
            "name",
            "email",
            "address",
            "currency",
            "bill_cycle_day",
            "tax_rate",
            "invoice_prefix",
        )
        if k in form
    }
    atype = types.get(form.get("type")) if types is not None else None
    if atype is not None:
        payload["type"] = atype.code
    if atype is not None and atype.profile_schema is not None:
        profile = {}
        from core.panel.jinja import schema_fields

        for f in schema_fields(atype.profile_schema):
            key = f"profile.{f['name']}"
            if f["kind"] == "checkbox":
                profile[f["name"]] = key in form
            elif form.get(key, "") != "":
                profile[f["name"]] = form[key]
        payload["profile"] = profile
    elif "type" in form:
        payload["type"] = form["type"]
    return payload


def _fixed_terms(parent: Account, types: dict) -> dict[str, dict[str, tuple]]:
    """``{type code: {field: (value, why)}}``: the terms ``parent`` fixes for a new child of
    each offered type (``AccountType.child_terms``), shown read-only by the form."""
    return {code: account_service.fixed_terms(parent, code) for code in types}


@blueprint.route("/accounts/<int:account_id>/new", methods=["GET", "POST"])
@login_required
def new_account(account_id):
    parent = _account(account_id)
    rbac.require(current_user, "accounts.manage", parent)
    offered, refused = account_service.type_choices(parent)
    types = {t.code: t for t in offered}
    # what the form shows is what an untouched form saves (AccountInput's defaults)
    errors, values = (
        {},
        {
            "type": request.args.get("type", ""),
            "currency": parent.currency,
            "bill_cycle_day": AccountInput._declared_fields["bill_cycle_day"].load_default,
            "tax_rate": "0",
            "invoice_prefix": "INV-",
        },
    )
    fixed = _fixed_terms(parent, types)
    if request.method == "POST":
        values = request.form.to_dict()
        payload = _account_form_payload(request.form, types) | {"parent_id": parent.id}
        try:
            account = account_service.create_account(current_user, payload)
        except BillhiveError as exc:
            errors = form_errors(exc, _account_labels(types.values()))
        else:
            flash(f"Account '{account.name}' created.")
            return redirect(url_for("panel.account", account_id=account.id))
    return render_template(
        "core/account_form.html",
        parent=parent,
        types=list(types.values()),
        refused=refused,
        fixed=fixed,
        errors=errors,
        values=values,
        account=None,
    ), (422 if errors else 200)


@blueprint.route("/accounts/<int:account_id>")
@login_required
def account(account_id):
    acc = _account(account_id)
    if not (rbac.has(current_user, "accounts.view") or acc.id == current_user.account_id):
        raise Forbidden("you lack the privilege 'accounts.view'")
    # the first ones, and a link to all of them: a provider may have 100,000 (core.find)
    children = list(acc.children.order_by(Account.name, Account.id).limit(CHILDREN_SHOWN + 1))
    atype = host().catalog.account_types.get(acc.type)
    offered, refused = [], []
    if rbac.has(current_user, "accounts.manage"):
        offered, refused = account_service.type_choices(acc)
    return render_template(
        "core/account.html",
        account=acc,
        children=children,
        atype=atype.item if atype else None,
        add_types=offered,
        add_refused=refused,
        tab="panel.account",
        status_labels=lifecycle.LABELS,
        blocker=lifecycle.blocking_account(acc),
        can_lifecycle=acc.id != current_user.account_id
        and acc.parent_id is not None
        and rbac.has(current_user, lifecycle.PRIVILEGE),
        status_history=lifecycle.history(acc, 5),
        billing=parties.party(acc),
        payment=parties.payment_instructions(acc) if parties.is_issuer(acc) else None,
        board=dashboard.context(current_user._get_current_object(), acc),
        children_shown=CHILDREN_SHOWN,
    )


@blueprint.route("/accounts/<int:account_id>/status", methods=["POST"])
@login_required
def account_status(account_id):
    """Suspend, reactivate or close an account (core.lifecycle decides who may and what it
    means); the form asks for a confirmation first (data-confirm)."""
    acc = _account(account_id)
    status = request.form.get("status", "")
    try:
        lifecycle.set_account_status(acc, status, current_user, request.form.get("reason", ""))
    except BillhiveError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
    else:
        done = {"active": "reactivated", "suspended": "suspended", "closed": "closed"}[status]
        flash(f"Account '{acc.name}' {done}.")
    return redirect(url_for("panel.account", account_id=acc.id))


@blueprint.route("/accounts/<int:account_id>/edit", methods=["GET", "POST"])
@login_required
def edit_account(account_id):
    acc = _account(account_id)
    rbac.require(current_user, "accounts.manage", acc)
    atype = host().catalog.account_types.get(acc.type)
    terms_editable = account_service.can_edit_billing_terms(current_user, acc)
    errors, values = {}, {**account_service.snapshot(acc)}
    for k, v in (acc.profile or {}).items():
        values[f"profile.{k}"] = v
    if request.method == "POST":
        values = request.form.to_dict()
        types = {acc.type: atype.item} if atype else None
        payload = _account_form_payload(request.form, types)
        payload.pop("type", None)
        if not terms_editable:
            # the form shows the terms read-only: an absent checkbox is no "off" here
            payload.pop("profile", None)
        try:
            account_service.update_account(current_user, acc, payload)
        except BillhiveError as exc:
            errors = form_errors(exc, _account_labels([atype.item] if atype else []))
        else:
            flash("Account saved.")
            return redirect(url_for("panel.account", account_id=acc.id))
    return render_template(
        "core/account_form.html",
        parent=acc.parent,
        account=acc,
        types=[atype.item] if atype else [],
        errors=errors,
        values=values,
        terms_editable=terms_editable,
    ), (422 if errors else 200)


@blueprint.route("/accounts/<int:account_id>/users", methods=["GET", "POST"])
@login_required
def account_users(account_id):
    acc = _account(account_id)
    rbac.require(current_user, "users.view", acc)
    errors, values = {}, {}
    if request.method == "POST":
        values = keep(request.form, lists=("role_ids",), drop=("csrf_token", "password"))
        payload = {
            "email": request.form.get("email", ""),
            "name": request.form.get("name", ""),
            "password": request.form.get("password", ""),
            "account_id": acc.id,
            "role_ids": [int(r) for r in request.form.getlist("role_ids") if r.isdigit()],
        }
        try:
            user = users.create_user(current_user, payload)
        except BillhiveError as exc:
            errors = form_errors(exc, USER_LABELS)
        else:
            flash(f"User {user.email} created.")
            return redirect(url_for("panel.account_users", account_id=acc.id))
    people = list(User.select().where(User.account == acc).order_by(User.email))
    account_roles = list(Role.select().where(Role.account == acc).order_by(Role.name))
    return render_template(
        "core/account_users.html",
        account=acc,
        people=people,
        may_log_in_as=acc.id != current_user.account_id
        and current_user.impersonation is None
        and rbac.has(current_user, impersonation.PRIVILEGE),
        roles=account_roles,
        errors=errors,
        values=values,
        tab="panel.account_users",
    ), (422 if errors else 200)


@blueprint.route("/accounts/<int:account_id>/users/<int:user_id>/roles", methods=["POST"])
@login_required
def user_roles(account_id, user_id):
    acc = _account(account_id)
    target = rbac.get_scoped(User, current_user, user_id)
    if target.account_id != acc.id:
        abort(404)
    role = rbac.get_scoped(Role, current_user, request.form.get("role_id", "x"))
    try:
        if request.form.get("action") == "unassign":
            roles.unassign(current_user, role, target)
            flash(f"Role '{role.name}' removed from {target.email}.")
        else:
            roles.assign(current_user, role, target)
            flash(f"Role '{role.name}' assigned to {target.email}.")
    except BillhiveError as exc:
        flash(exc.message, "error")
    return redirect_next(
        request.form.get("next"), url_for("panel.account_users", account_id=acc.id)
    )


@blueprint.route("/accounts/<int:account_id>/users/<int:user_id>/edit", methods=["GET", "POST"])
@login_required
def edit_user(account_id, user_id):
    """Edit a user's name and e-mail (users.update_user decides who may)."""
    acc = _account(account_id)
    target = rbac.get_scoped(User, current_user, user_id)
    if target.account_id != acc.id:
        abort(404)
    if target.id != current_user.id:
        rbac.require(current_user, "users.manage", acc)
    errors, values = {}, {"email": target.email, "name": target.name}
    if request.method == "POST":
        values = {"email": request.form.get("email", ""), "name": request.form.get("name", "")}
        try:
            users.update_user(current_user, target, values)
        except BillhiveError as exc:
            if exc.status == 404:
                raise
            errors = form_errors(exc, USER_LABELS)
            if "role" in errors:  # the refusal names the user's roles: say it for the form
                errors = {"_": exc.message}
        else:
            flash(f"User {target.email} saved.")
            return redirect(url_for("panel.account_users", account_id=acc.id))
    return render_template(
        "core/user_form.html",
        account=acc,
        target=target,
        errors=errors,
        values=values,
        tab="panel.account_users",
    ), (422 if errors else 200)


@blueprint.route("/accounts/<int:account_id>/users/<int:user_id>/log-in-as", methods=["POST"])
@login_required
def log_in_as(account_id, user_id):
    """Act as a user of an account below yours (core.impersonation decides who may)."""
    acc = _account(account_id)
    target = rbac.get_scoped(User, current_user, user_id)
    if target.account_id != acc.id:
        abort(404)
    actor = current_user._get_current_object()
    try:
        acting = impersonation.start(actor, target, actor.session_token)
    except BillhiveError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
        return redirect(url_for("panel.account_users", account_id=acc.id))
    login_user(acting)
    flash(f"You are now acting as {target.email}.")
    return redirect(url_for("panel.home"))


@blueprint.route("/impersonation/end", methods=["POST"])
@login_required
def end_impersonation():
    """ "Return to my account": the impersonated session ends, the caller's own comes back."""
    user = current_user._get_current_object()
    original = impersonation.end(user)
    if original is None:
        abort(404)
    email = user.email
    logout_user()
    own = users.load_session(original)
    if own is None:
        flash(f"You stopped acting as {email}; your own session had ended: please log in.")
        return redirect(url_for("panel.login"))
    login_user(own)
    flash(f"You stopped acting as {email} and are back in your account.")
    return redirect(url_for("panel.account_users", account_id=user.account_id))


@blueprint.route("/accounts/<int:account_id>/users/<int:user_id>/<action>", methods=["POST"])
@login_required
def user_action(account_id, user_id, action):
    """Deactivate, activate, delete a user or set their password (the services decide who
    may: users.manage and every privilege of the user's roles)."""
    acc = _account(account_id)
    target = rbac.get_scoped(User, current_user, user_id)
    actions = ("deactivate", "activate", "delete", "password")
    if target.account_id != acc.id or action not in actions:
        abort(404)
    email = target.email
    try:
        if action == "deactivate":
            users.deactivate(current_user, target)
            flash(f"User {email} deactivated: their sessions and API tokens ended.")
        elif action == "activate":
            users.activate(current_user, target)
            flash(f"User {email} can log in again.")
        elif action == "delete":
            users.delete_user(current_user, target)
            flash(f"User {email} deleted.")
        else:
            users.reset_password(current_user, target, {"password": request.form.get("password")})
            flash(f"New password set for {email}: their sessions and API tokens ended.")
    except BillhiveError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
    return redirect(url_for("panel.account_users", account_id=acc.id))


@blueprint.route("/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change your own password (needs the current one)."""
    errors = {}
    if request.method == "POST":
        try:
            users.change_password(
                current_user,
                {
                    "current_password": request.form.get("current_password", ""),
                    "new_password": request.form.get("new_password", ""),
                },
                keep_session=current_user.session_token,
            )
        except BillhiveError as exc:
            errors = form_errors(exc, PASSWORD_LABELS)
        else:
            flash("Your password was changed; your other sessions were logged out.")
            return redirect(url_for("panel.home"))
    return render_template("core/password.html", errors=errors), (422 if errors else 200)


# -- operations ------------------------------------------------------------------------------


def _require_operator(code: str):
    if current_user.account.parent_id is not None:
        abort(404)
    rbac.require(current_user, code)


@blueprint.route("/plugins")
@login_required
def plugins():
    _require_operator("plugins.manage")
    return _plugins_page()


def _plugins_page(license_text: str = "", license_error: str = ""):
    rows = [r for r in plugin_rows() if r["name"] != CORE_PLUGIN]
    return render_template(
        "core/plugins.html",
        plugins=rows,
        license=license_status(),
        can_license=rbac.has(current_user, "licenses.manage"),
        license_text=license_text,
        license_error=license_error,
    ), (422 if license_error else 200)


@blueprint.route("/plugins/<name>/<action>", methods=["POST"])
@login_required
def plugin_action(name, action):
    _require_operator("plugins.manage")
    if action not in ("enable", "disable"):
        abort(404)
    try:
        changed = host().set_enabled(name, action == "enable", current_user)
    except BillhiveError as exc:
        flash(f"Cannot {action} '{name}': {exc.message}", "error")
    else:
        state = "enabled" if action == "enable" else "disabled"
        flash(f"Plugin '{name}' {state}." if changed else f"Plugin '{name}' was already {state}.")
    return redirect(url_for("panel.plugins"))


@blueprint.route("/license", methods=["POST"])
@login_required
def install_license():
    _require_operator("licenses.manage")
    upload = request.files.get("license_file")
    text = upload.read().decode("utf-8", "replace") if upload and upload.filename else ""
    text = text or request.form.get("license_text", "")
    if not text.strip():
        return _plugins_page(text, "paste the licence text or choose a file")
    try:
        lic = license_store.install(text, host().license_key_paths, current_user)
    except LicenseError as exc:
        # the pasted text stays in the box: one wrong character is fixed, not pasted again
        return _plugins_page(text, str(exc))
    flash(f"Licence for {lic.licensee} installed; valid until {lic.expires}.")
    return redirect(url_for("panel.plugins"))


@blueprint.route("/audit")
@login_required
def audit():
    """The audit log, newest first: filters account, actor, action, from/to (core.find)."""
    _require_operator("audit.view")
    page, sent, error = panel_list(lists.AUDIT, lists.audit_query(current_user), current_user,
                                   request.args)  # fmt: skip
    account = None
    if sent.get("account_id") and not error:
        account = rbac.get_account(current_user, sent["account_id"])
    names = account_names({e.account_id for e in page.items})
    return render_template("core/audit.html", page=page, sent=sent, error=error,
                           account=account, names=names), (422 if error else 200)  # fmt: skip
