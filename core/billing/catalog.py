"""Catalog, subscriptions and usage: validated writes (every problem names its field; nothing
is written when anything is wrong). ``actor=None`` is the operator's shell (CLI, demo)."""

from __future__ import annotations

import re
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate

from core import audit, rbac
from core import lifecycle as account_status
from core._fastpath import insert_rows
from core.billing.models import PRODUCT_KINDS, PricePlan, Product, Subscription, UsageRecord
from core.billing.money import MoneyError, check_currency, parse_decimal, tiered_unit_price
from core.billing.periods import PeriodError, parse_date
from core.db import database, lock_row
from core.errors import ValidationFailed, load
from core.fields import Id, Price, Quantity, Text
from core.models import Account


class ProductInput(Schema):
    account_id = Id(load_default=None, allow_none=True)
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,60}$"))
    name = Text(200, min_length=1, required=True)
    unit = Text(40, load_default="")
    kind = fields.String(load_default="recurring", validate=validate.OneOf(PRODUCT_KINDS))


class PlanInput(Schema):
    product_id = Id(required=True)
    name = Text(200, min_length=1, required=True)
    currency = Text(10, required=True, card_numbers=False,
                    metadata={"description": "ISO 4217 code", "example": "EUR"})  # fmt: skip
    recurring_price = Price(load_default="0")
    usage_rate = Price(load_default="0")
    tiers = fields.List(
        fields.Tuple((Quantity(allow_none=True), Price())),
        load_default=None,
        allow_none=True,
        metadata={"description": "volume tiers: [[up_to, unit_price], ...], the last up_to null"},
    )


class SubscriptionInput(Schema):
    account_id = Id(required=True)
    plan_id = Id(required=True)
    quantity = Quantity(load_default="1")
    start = fields.Raw(required=True, metadata={"type": "string", "format": "date"})
    end = fields.Raw(load_default=None, allow_none=True,
                     metadata={"type": "string", "format": "date"})  # fmt: skip
    external_id = Text(100, load_default=None, allow_none=True, card_numbers=False)


class UsageInput(Schema):
    subscription_id = fields.Raw(required=True)
    quantity = Quantity(required=True)
    date = fields.Raw(required=True)
    external_id = Text(100, min_length=1, required=True, card_numbers=False)


def _raise(errors: dict) -> None:
    if errors:
        raise ValidationFailed(
            "invalid input — " + ", ".join(f"{k}: {v[0]}" for k, v in errors.items()), errors
        )


def _owner(actor, account_id) -> Account:
    """The catalog owner: the actor's own account unless another (visible) one is named."""
    if actor is None:
        owner = Account.get_or_none(Account.id == account_id) if account_id else None
        if owner is None:
            raise ValidationFailed.field("account_id", f"account {account_id} not found")
        return owner
    owner = rbac.get_account(actor, account_id) if account_id else actor.account
    rbac.require(actor, "catalog.manage", owner)
    return owner


def create_product(actor, payload) -> Product:
    data = load(ProductInput(), payload)
    owner = _owner(actor, data.pop("account_id"))
    if Product.get_or_none(account=owner.id, code=data["code"]) is not None:
        raise ValidationFailed.field("code", f"product code '{data['code']}' already exists")
    with database.atomic():
        product = Product.create(account=owner, **data)
        audit.record(actor, "product.create", product, account=owner.id, after=data)
    return product


def _visible_product(actor, product_id) -> Product:
    if actor is None:
        product = Product.get_or_none(Product.id == product_id)
        if product is None:
            raise ValidationFailed.field("product_id", f"product {product_id} not found")
        return product
    try:
        return rbac.get_scoped(Product, actor, product_id)
    except Exception:  # noqa: BLE001 - NotFound: name the field
        raise ValidationFailed.field("product_id", f"product {product_id} not found") from None


def create_plan(actor, payload) -> PricePlan:
    data = load(PlanInput(), payload)
    product = _visible_product(actor, data["product_id"])
    if actor is not None:
        rbac.require(actor, "catalog.manage", product.account)
    errors: dict[str, list[str]] = {}
    try:
        data["currency"] = check_currency(data["currency"])
    except MoneyError as exc:
        errors["currency"] = [str(exc)]
    for name in ("recurring_price", "usage_rate"):
        try:
            data[name] = parse_decimal(data[name], name)
            if data[name] < 0:
                errors[name] = [f"{name} must not be negative"]
        except MoneyError as exc:
            errors[name] = [str(exc)]
    if data.get("tiers"):
        try:
            tiered_unit_price(0, data["tiers"])
            data["tiers"] = [[None if u is None else str(parse_decimal(u, "up_to")),
                              str(parse_decimal(p, "unit_price"))] for u, p in data["tiers"]]  # fmt: skip
        except MoneyError as exc:
            errors["tiers"] = [str(exc)]
    _raise(errors)
    data.pop("product_id")
    with database.atomic():
        plan = PricePlan.create(account=product.account_id, product=product, **data)
        audit.record(actor, "plan.create", plan, account=product.account_id,
                     after={k: _recorded(v) for k, v in data.items()})  # fmt: skip
    return plan


def _recorded(value):
    """A plan's value as the audit log keeps it: JSON's own types stay (tiers a list, no
    tier bound a null, never the text "None"), decimals as their text."""
    return value if value is None or isinstance(value, str | int | list) else str(value)


def _date(value, field, errors):
    try:
        return parse_date(value, field)
    except PeriodError as exc:
        errors[field] = [str(exc)]
        return None


def create_subscription(actor, payload) -> Subscription:
    data = load(SubscriptionInput(), payload)
    errors: dict[str, list[str]] = {}
    if actor is None:
        customer = Account.get_or_none(Account.id == data["account_id"])
    else:
        try:
            customer = rbac.get_account(actor, data["account_id"])
        except Exception:  # noqa: BLE001
            customer = None
    if customer is None:
        errors["account_id"] = [f"account {data['account_id']} not found"]
    plan = PricePlan.get_or_none(PricePlan.id == data["plan_id"])
    if plan is None or (actor is not None and not plan.account.is_within(actor.account)):
        errors["plan_id"] = [f"price plan {data['plan_id']} not found"]
        plan = None
    if customer is not None and plan is not None:
        owner = plan.account
        if not (customer.path.startswith(owner.path) and customer.id != owner.id):
            errors["plan_id"] = [f"plan '{plan.name}' belongs to {owner.name}, which does not "
                                 f"sell to {customer.name}"]  # fmt: skip
        elif plan.currency != customer.currency:
            errors["plan_id"] = [f"plan '{plan.name}' is in {plan.currency} but account "
                                 f"{customer.name} is billed in {customer.currency}"]  # fmt: skip
    try:
        data["quantity"] = parse_decimal(data["quantity"], "quantity")
        if data["quantity"] < 0:
            errors["quantity"] = ["quantity must not be negative"]
    except MoneyError as exc:
        errors["quantity"] = [str(exc)]
    start = _date(data["start"], "start", errors)
    end = _date(data["end"], "end", errors) if data["end"] is not None else None
    if start and end and end <= start:
        errors["end"] = ["end must be after start"]
    _raise(errors)
    if actor is not None:
        rbac.require(actor, "catalog.manage", plan.account)
    with database.atomic():
        # the currency read above may be changing: under the account's row lock (which a
        # currency change takes too) it is what this subscription will be billed in
        locked = lock_row(Account, customer.id)
        account_status.refuse_if_closed(locked, "subscription", "account_id")
        if locked.currency != plan.currency:
            _raise({"plan_id": [f"plan '{plan.name}' is in {plan.currency} but account "
                                f"{customer.name} is billed in {locked.currency}"]})  # fmt: skip
        sub = Subscription.create(account=customer, plan=plan, quantity=data["quantity"],
                                  start=start, end=end, external_id=data["external_id"])  # fmt: skip
        audit.record(actor, "subscription.create", sub, account=customer.id,
                     after={"plan_id": plan.id, "quantity": str(data["quantity"]),
                            "start": str(start), "end": str(end) if end else None})  # fmt: skip
    return sub


_USAGE_KEYS = frozenset(("subscription_id", "quantity", "date", "external_id"))
_PLAIN_QUANTITY = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,10})?")  # below MAX_QUANTITY, MAX_PLACES
_PLAIN_ID = re.compile(r"[!-~]{1,100}")  # printable ASCII: no space or control character


def _plain_usage(raw) -> dict | None:
    """``UsageInput().load(raw)`` for a row of the usual shape (the four fields, plain text or
    an integer id, a quantity like 12.5), without marshmallow (about 13 us a row, most of a
    large import's validation); None for anything else, which marshmallow then judges."""
    if type(raw) is not dict or raw.keys() != _USAGE_KEYS:
        return None
    sub, quantity, day, external = (raw["subscription_id"], raw["quantity"], raw["date"],
                                    raw["external_id"])  # fmt: skip
    if (
        type(sub) in (int, str)
        and type(quantity) is str
        and type(day) is str
        and type(external) is str
        and _PLAIN_QUANTITY.fullmatch(quantity)
        and _PLAIN_ID.fullmatch(external)
    ):
        return {"subscription_id": sub, "quantity": Decimal(quantity), "date": day,
                "external_id": external}  # fmt: skip
    return None


def check_usage(rows: list, actor=None, *, fast: bool = True) -> tuple[list[dict], dict]:
    """Validate usage rows: (good rows ready to insert, {row index: field errors}). Rows of
    the usual shape skip marshmallow (``fast``; the same rows and errors either way)."""
    good, bad = [], {}
    subs: dict = {}
    schema = UsageInput()
    for index, raw in enumerate(rows):
        errors: dict[str, list[str]] = {}
        row = _plain_usage(raw) if fast else None
        if row is None:
            try:
                row = schema.load(raw or {})
            except ValidationError as err:
                messages = err.messages
                bad[index] = messages if isinstance(messages, dict) else {"_": messages}
                continue
        key = str(row["subscription_id"]).strip()
        if key not in subs:
            sub = None
            if key.isdigit():
                sub = Subscription.get_or_none(Subscription.id == int(key))
            if sub is not None and actor is not None:
                if not sub.account.is_within(actor.account):
                    sub = None
            subs[key] = sub
        sub = subs[key]
        if sub is None:
            errors["subscription_id"] = [f"unknown subscription {key!r}"]
        quantity = row["quantity"]  # a Decimal from 0 to MAX_QUANTITY (UsageInput's Quantity)
        day = _date(row["date"], "date", errors)
        if (
            sub is not None
            and day is not None
            and (day < sub.start or (sub.end is not None and day >= sub.end))
        ):
            errors["date"] = [f"{day} is outside subscription {sub.id}'s active dates"]
        if errors:
            bad[index] = errors
            continue
        good.append({"subscription": sub.id, "account": sub.account_id, "quantity": quantity,
                     "occurred_at": day, "external_id": row["external_id"]})  # fmt: skip
    return good, bad


USAGE_CHUNK = 20_000  # rows a transaction: one commit, one audit entry


def insert_usage(good: list[dict], actor=None, chunk: int = USAGE_CHUNK,
                 progress=None) -> tuple[int, int]:  # fmt: skip
    """Insert validated rows, idempotent by (account, external_id): (inserted, duplicates).
    ``chunk`` rows a transaction (an import of up to that many is all or nothing), each
    chunk written in the order of the unique index it is checked against, so the index is
    written page by page instead of all over (the input's order is the sender's)."""
    inserted = 0
    seen: set = set()
    for start in range(0, len(good), chunk):
        part = []
        for row in good[start : start + chunk]:
            key = (row["account"], row["external_id"])
            if key in seen:
                continue
            seen.add(key)
            part.append(row)
        part.sort(key=lambda row: (row["account"], row["external_id"]))
        with database.atomic():
            # the unique (account, external_id) index skips what is there already: the rows
            # the INSERT reports are the new ones
            fresh = insert_rows(UsageRecord, part, ignore_conflicts=True) if part else 0
            if fresh:
                audit.record(actor, "usage.import", object_type="usage",
                             object_id=f"{fresh} records")  # fmt: skip
            inserted += fresh
        if progress is not None:
            progress(len(good[start : start + chunk]))
    return inserted, len(good) - inserted
