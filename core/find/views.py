"""Panel pages of Find: the global search (the header's box and its results page), the users
of the caller's subtree, and the template helpers every list page uses (links that keep the
list's arguments, sortable column headings, breadcrumbs of an account's path).

The Accounts, Subscriptions, Invoices and Audit log pages stay where their menu items point
(``core.panel.views``, ``core.billing.web.views``); they read their arguments through the same
``core.find.listing`` as the API.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request, url_for
from flask_login import current_user, login_required
from marshmallow import Schema

from core import rbac
from core.errors import ValidationFailed
from core.find import lists
from core.find import search as finder
from core.find.listing import load_args, panel_list, query_string, search_field
from core.models import Account

blueprint = Blueprint("find", __name__, template_folder="templates")


class SearchArgs(Schema):
    q = search_field("accounts (name, e-mail, id), invoices (number), the panel's sections")


def _search_text() -> tuple[str, str | None]:
    try:
        return load_args(SearchArgs, request.args).get("q") or "", None
    except ValidationFailed as exc:
        return "", exc.message


@blueprint.route("/search")
@login_required
def search_page():
    """The search box's results, all kinds, with links to the full lists."""
    text, error = _search_text()
    found = finder.search(current_user, text)
    return render_template("find/search.html", found=found, error=error,
                           q=request.args.get("q", "")), (422 if error else 200)  # fmt: skip


@blueprint.route("/search.json")
@login_required
def search_json():
    """What the search box offers as it is typed (panel.js); the same as the results page."""
    text, error = _search_text()
    if error:
        return jsonify({"error": error}), 422
    found = finder.search(current_user, text, count=False)
    hits = found["sections"] + found["accounts"] + found["invoices"]
    return jsonify({"q": found["q"], "hits": [h.to_dict() for h in hits]})


@blueprint.route("/users")
@login_required
def users_page():
    """Every user of the caller's subtree: search, filter by account and activity, sort."""
    rbac.require(current_user, "users.view")
    page, sent, error = panel_list(lists.USERS, lists.users_query(current_user), current_user,
                                   request.args)  # fmt: skip
    names = account_names({u.account_id for u in page.items})
    account = None
    if sent.get("account_id") and not error:
        account = rbac.get_account(current_user, sent["account_id"])
    return render_template("find/users.html", page=page, sent=sent, error=error,
                           names=names, account=account), (422 if error else 200)  # fmt: skip


# -- helpers for every list page ---------------------------------------------------------------


def account_names(ids) -> dict[int, Account]:
    """The accounts of one page's rows, in one query (never every account of the subtree)."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return {a.id: a for a in Account.select().where(Account.id.in_(ids))}


def list_url(sent: dict, **changes) -> str:
    """This page's URL with the list's arguments ``sent`` and ``changes`` (None drops one;
    changing anything but the page goes back to page 1)."""
    if "page" not in changes:
        changes["page"] = None
    qs = query_string(sent, **changes)
    return request.path + (f"?{qs}" if qs else "")


def sort_state(sent: dict, column: str, default: str) -> tuple[str, str]:
    """For a sortable heading: the URL that sorts by ``column`` (descending when it is the
    ascending sort now) and its ``aria-sort`` value."""
    current = sent.get("sort") or default
    if current == column:
        return list_url(sent, sort=f"-{column}"), "ascending"
    if current == f"-{column}":
        return list_url(sent, sort=column), "descending"
    return list_url(sent, sort=column), "none"


def breadcrumbs(account: Account) -> list[Account]:
    """The accounts from the caller's own down to ``account`` (what they may open)."""
    if not current_user.is_authenticated:
        return []
    ids = [int(part) for part in account.path.strip("/").split("/") if part]
    rows = {a.id: a for a in Account.select().where(Account.id.in_(ids))}
    chain = [rows[i] for i in ids if i in rows]
    return [a for a in chain if a.is_within(current_user.account)]


def init_app(app) -> None:
    app.register_blueprint(blueprint)
    app.add_template_global(list_url)
    app.add_template_global(sort_state)
    app.add_template_global(breadcrumbs)
    app.add_template_global(lambda: url_for("find.search_json"), "search_json_url")
