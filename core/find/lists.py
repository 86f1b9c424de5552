"""The five lists people search all day, declared once for the panel and the API: accounts,
users, subscriptions, invoices and the audit log (see :mod:`core.find.listing`).

Each query here starts from the caller's subtree (``core.rbac``); an ``account_id`` or
``parent_id`` filter resolves the account through ``rbac.get_account``, so naming one outside
the subtree answers 404 like a missing account.
"""

from __future__ import annotations

from marshmallow import fields, validate, validates_schema

from core import rbac
from core.billing.models import Invoice, PricePlan, Subscription
from core.clock import today
from core.fields import Id, Text
from core.find.listing import (
    ListArgs,
    Listing,
    check_range,
    date_field,
    day_bounds,
    prefix_range,
    search_field,
    sort_field,
)
from core.lifecycle import STATUSES
from core.models import Account, AuditEntry, User

INVOICE_STATUSES = ("draft", "issued", "paid", "void")
INVOICE_KINDS = ("invoice", "credit_note")


def _digits(q: str) -> int | None:
    """``q`` as an account id when it is one (ASCII digits: '²' is a digit to Python too)."""
    if not (q.isascii() and q.isdigit()) or len(q) > 19:
        return None
    return int(q) if 0 < int(q) < 2**63 else None


def _account_filter(column):
    """A filter on one account of the caller's subtree (404 outside it)."""

    def apply(query, account_id, user):
        return query.where(column == rbac.get_account(user, account_id).id)

    return apply


def _account_id(what: str) -> Id:
    return Id(load_default=None, metadata={"description": what})


# -- accounts --------------------------------------------------------------------------------

ACCOUNT_SORTS = {"name": Account.name, "id": Account.id, "tree": Account.path}


class AccountListArgs(ListArgs):
    q = search_field("name or e-mail containing this (any case), or the account id")
    parent_id = _account_id("only the accounts directly below this one (the tree, one level)")
    type = Text(40, load_default=None, card_numbers=False, metadata={"description": "type code"})
    status = Text(
        20,
        load_default=None,
        card_numbers=False,
        validate=validate.OneOf(STATUSES, error="must be one of " + ", ".join(STATUSES)),
    )
    sort = sort_field(ACCOUNT_SORTS, "tree")


def _account_search(q: str):
    condition = Account.name.contains(q) | Account.email.contains(q)
    number = _digits(q)
    return condition | (Account.id == number) if number else condition


ACCOUNTS = Listing(
    "accounts",
    Account,
    AccountListArgs,
    ACCOUNT_SORTS,
    search=_account_search,
    filters={
        "parent_id": _account_filter(Account.parent),
        "type": lambda query, value, user: query.where(Account.type == value),
        "status": lambda query, value, user: query.where(Account.status == value),
    },
)


def accounts_query(user):
    return rbac.visible_accounts(user)


# -- users -----------------------------------------------------------------------------------

USER_SORTS = {"email": User.email, "name": User.name, "id": User.id}


class UserListArgs(ListArgs):
    q = search_field("e-mail or name containing this (any case)")
    account_id = _account_id("only the users of this account")
    active = fields.Boolean(load_default=None, metadata={"description": "true or false"})
    sort = sort_field(USER_SORTS, "email")


USERS = Listing(
    "users",
    User,
    UserListArgs,
    USER_SORTS,
    search=lambda q: User.email.contains(q) | User.name.contains(q),
    filters={
        "account_id": _account_filter(User.account),
        "active": lambda query, value, user: query.where(User.is_active == value),
    },
)


def users_query(user):
    return rbac.scoped(User.select(), User.account, user)


# -- subscriptions ---------------------------------------------------------------------------

SUBSCRIPTION_SORTS = {"id": Subscription.id, "start": Subscription.start}


class SubscriptionListArgs(ListArgs):
    q = search_field("price plan name containing this (any case), or the external id")
    account_id = _account_id("only the subscriptions of this account")
    plan_id = _account_id("only the subscriptions to this price plan")
    status = Text(
        10,
        load_default=None,
        card_numbers=False,
        validate=validate.OneOf(("active", "ended"), error="must be one of active, ended"),
        metadata={"description": "active (no end, or an end after today) or ended"},
    )
    sort = sort_field(SUBSCRIPTION_SORTS, "id")


def _subscription_search(q: str):
    plans = PricePlan.select(PricePlan.id).where(PricePlan.name.contains(q))
    return Subscription.plan.in_(plans) | (Subscription.external_id == q)


def _subscription_status(query, value, user):
    active = Subscription.end.is_null() | (Subscription.end > today())
    return query.where(active if value == "active" else ~active)


SUBSCRIPTIONS = Listing(
    "subscriptions",
    Subscription,
    SubscriptionListArgs,
    SUBSCRIPTION_SORTS,
    search=_subscription_search,
    filters={
        "account_id": _account_filter(Subscription.account),
        "plan_id": lambda query, value, user: query.where(Subscription.plan == value),
        "status": _subscription_status,
    },
)


def subscriptions_query(user):
    return rbac.scoped(Subscription.select(), Subscription.account, user)


# -- invoices --------------------------------------------------------------------------------

INVOICE_SORTS = {
    "id": Invoice.id,
    "number": Invoice.number,
    "issued_at": Invoice.issued_at,
    "due_date": Invoice.due_date,
}


class InvoiceListArgs(ListArgs):
    q = search_field("invoice number containing this (any case)")
    status = Text(
        10,
        load_default=None,
        card_numbers=False,
        validate=validate.OneOf(
            INVOICE_STATUSES, error="must be one of " + ", ".join(INVOICE_STATUSES)
        ),  # fmt: skip
    )
    kind = Text(
        20,
        load_default=None,
        card_numbers=False,
        validate=validate.OneOf(INVOICE_KINDS, error="must be one of " + ", ".join(INVOICE_KINDS)),
    )
    account_id = _account_id("only the invoices billed to this account")
    period = date_field("only the invoices whose period starts on this date (YYYY-MM-DD)")
    per_page = fields.Integer(
        load_default=100,  # what GET /api/v1/invoices answered before the list query
        validate=validate.Range(1, 500, error="must be from {min} to {max}"),
        metadata={"description": "rows per page, at most 500"},
    )
    sort = sort_field(INVOICE_SORTS, "-id")


INVOICES = Listing(
    "invoices",
    Invoice,
    InvoiceListArgs,
    INVOICE_SORTS,
    search=lambda q: Invoice.number.contains(q),
    filters={
        "status": lambda query, value, user: query.where(Invoice.status == value),
        "kind": lambda query, value, user: query.where(Invoice.kind == value),
        "account_id": _account_filter(Invoice.account),
        "period": lambda query, value, user: query.where(Invoice.period_start == value),
    },
)


def invoices_query(user):
    return rbac.scoped(Invoice.select(), Invoice.account, user)


# -- audit log -------------------------------------------------------------------------------

AUDIT_SORTS = {"at": AuditEntry.at, "id": AuditEntry.id}


class AuditListArgs(ListArgs):
    account_id = _account_id("only what was done on this account")
    actor = Text(254, load_default=None, card_numbers=False,
                 metadata={"description": "who did it: e-mail containing this (any case)"})  # fmt: skip
    action = Text(60, load_default=None, card_numbers=False,
                  metadata={"description": "the action, or its start: 'user.' finds every "
                            "user action"})  # fmt: skip
    # "from" is a Python keyword: the parameters are from/to, the attributes are not
    date_from = date_field("from this day (UTC, included)", data_key="from")
    date_to = date_field("to this day (UTC, included)", data_key="to")
    sort = sort_field(AUDIT_SORTS, "-at")

    @validates_schema
    def _range(self, data, **kwargs):
        check_range(data, ("date_from", "from"), ("date_to", "to"))


def _audit_from(query, value, user):
    low, _ = day_bounds(value, None)
    return query.where(AuditEntry.at >= low)


def _audit_to(query, value, user):
    _, high = day_bounds(None, value)
    return query if high is None else query.where(AuditEntry.at < high)


AUDIT = Listing(
    "audit",
    AuditEntry,
    AuditListArgs,
    AUDIT_SORTS,
    filters={
        "account_id": _account_filter(AuditEntry.account),
        "actor": lambda query, value, user: query.where(AuditEntry.actor_label.contains(value)),
        "action": lambda query, value, user: query.where(prefix_range(AuditEntry.action, value)),
        "date_from": _audit_from,
        "date_to": _audit_to,
    },
)


def audit_query(user):
    """What the audit log shows ``user``: entries on accounts of their subtree, and for the
    provider's operators (the root) also those on no account (logins, licences)."""
    if rbac.sees_every_account(user):
        return AuditEntry.select()
    if user.account.parent_id is not None:
        return rbac.scoped(AuditEntry.select(), AuditEntry.account, user)
    column = rbac.scope_column(AuditEntry.account, user)
    visible = rbac.visible_accounts(user).select(Account.id)
    return AuditEntry.select().where(column.in_(visible) | column.is_null())
