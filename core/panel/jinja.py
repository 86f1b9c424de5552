"""Template helpers: the navigation (from ``register_menu_items``), privilege checks, forms
generated from a marshmallow schema (so a plugin's profile schema gets a form for free)."""

from __future__ import annotations

from flask import url_for
from flask_login import current_user
from marshmallow import fields, missing, validate

from core import rbac
from core.current import host


def _visible(item, account=None) -> bool:
    if not current_user.is_authenticated:
        return False
    if account is not None and rbac.level_of(account) not in item.levels:
        return False
    return item.visible_with(lambda code: rbac.has(current_user, code))


def main_menu():
    return [(i.label, url_for(i.endpoint)) for i in host().menu_items("main") if _visible(i)]


BILLING_TAB = "billing_account.index"


def _tab_visible(item, account) -> bool:
    if item.endpoint == BILLING_TAB:
        # the Billing page: for whoever sees one of its sub-tabs, the core's (Edit Billing)
        # or a plugin's (e.g. Billing units with View Billing unit alone)
        from core.billing.web.account_views import page_visible

        return current_user.is_authenticated and page_visible(account)
    return _visible(item, account)


def account_tabs(account):
    return [
        (i.label, url_for(i.endpoint, account_id=account.id), i.endpoint)
        for i in host().menu_items("account")
        if _tab_visible(i, account)
    ]


def schema_fields(schema_cls) -> list[dict]:
    """Describe a marshmallow schema's fields for a generic form."""
    out = []
    for name, field in schema_cls().fields.items():
        info = {
            "name": name,
            "label": field.metadata.get("label", name.replace("_", " ").capitalize()),
            "help": field.metadata.get("description", ""),
            "required": field.required,
            # no default: None (marshmallow's ``missing`` would print "<marshmallow.missing>")
            "default": None if field.load_default in (None, missing) else field.load_default,
            "kind": "text",
            "choices": [],
        }
        if callable(info["default"]):
            info["default"] = info["default"]()
        one_of = next((v for v in _validators(field) if isinstance(v, validate.OneOf)), None)
        if isinstance(field, fields.Boolean):
            info["kind"] = "checkbox"
        elif one_of is not None:
            info["kind"] = "select"
            labels = one_of.labels or one_of.choices
            info["choices"] = list(zip(one_of.choices, labels, strict=False))
        elif isinstance(field, fields.Integer | fields.Number):
            info["kind"] = "number"
        out.append(info)
    return out


def _validators(field):
    return field.validators if hasattr(field, "validators") else []


def crumbs(account) -> list[tuple[str, str]]:
    """``[(name, url)]`` of the accounts above ``account`` that the user may open, from their
    own account down (a breadcrumb: where in the tree this page is)."""
    from core.models import Account

    if not current_user.is_authenticated or account is None:
        return []
    own = current_user.account
    ids = [int(p) for p in account.path.strip("/").split("/") if p][:-1]
    above = {a.id: a for a in Account.select().where(Account.id.in_(ids))} if ids else {}
    return [
        (above[i].name, url_for("panel.account", account_id=i))
        for i in ids
        if i in above and above[i].is_within(own)
    ]


def type_title(code: str) -> str:
    """An account type's title ("Standard", "Reseller") for its code."""
    declared = host().catalog.account_types.get(code)
    return declared.item.title if declared is not None else code


def can(code: str, account=None) -> bool:
    if not current_user.is_authenticated or not rbac.has(current_user, code):
        return False
    return account is None or account.is_within(current_user.account)


def init_app(app) -> None:
    from core.panel import filters

    filters.init_app(app)
    app.jinja_env.globals.update(
        main_menu=main_menu,
        account_tabs=account_tabs,
        can=can,
        schema_fields=schema_fields,
        type_title=type_title,
        crumbs=crumbs,
    )
