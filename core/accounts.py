"""Creating and editing accounts of the tree, with their type's profile validated."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from core import audit, rbac
from core.billing.money import MoneyError, check_currency, parse_decimal
from core.billing.periods import PeriodError, check_cycle_day
from core.db import database
from core.errors import ValidationFailed, marshmallow_errors
from core.models import Account, Role

_EMAIL = validate.Email()


class AccountInput(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    type = fields.String(required=True, validate=validate.Length(min=1, max=40))
    parent_id = fields.Integer(load_default=None, allow_none=True)
    # "" (no e-mail) must survive a second load: the API validates once, the service again
    email = fields.String(load_default="", validate=lambda v: v == "" or _EMAIL(v))
    address = fields.String(load_default="", validate=validate.Length(max=2000))
    currency = fields.String(load_default="EUR")
    bill_cycle_day = fields.Raw(load_default=1)
    tax_rate = fields.Raw(load_default="0")
    invoice_prefix = fields.String(
        load_default="INV-", validate=validate.Regexp(r"^[A-Za-z0-9_./-]{0,20}$")
    )
    profile = fields.Dict(load_default=dict)


class AccountUpdate(AccountInput):
    class Meta:
        exclude = ("type", "parent_id")


class AccountPatch(AccountUpdate):
    """The editable fields, every one optional (PATCH)."""


def _check_common(data: dict) -> dict:
    """Field rules shared by create and update; all problems reported at once."""
    errors: dict[str, list[str]] = {}
    if "currency" in data:
        try:
            data["currency"] = check_currency(data["currency"])
        except MoneyError as exc:
            errors["currency"] = [str(exc)]
    if "bill_cycle_day" in data:
        try:
            data["bill_cycle_day"] = check_cycle_day(data["bill_cycle_day"])
        except PeriodError as exc:
            errors["bill_cycle_day"] = [str(exc)]
    if "tax_rate" in data:
        try:
            rate = parse_decimal(data["tax_rate"], "tax_rate")
            if not 0 <= rate <= 100:
                raise MoneyError("tax_rate must be a percentage from 0 to 100", field="tax_rate")
            data["tax_rate"] = str(rate)
        except MoneyError as exc:
            errors["tax_rate"] = [str(exc)]
    if errors:
        raise ValidationFailed(
            "invalid input — " + ", ".join(f"{k}: {v[0]}" for k, v in errors.items()), errors
        )
    return data


def _load(schema: Schema, payload: dict) -> dict:
    try:
        return schema.load(payload or {})
    except ValidationError as err:
        raise marshmallow_errors(err) from None


def validate_profile(type_code: str, profile: dict, partial: bool = False) -> dict:
    atype = rbac.host().catalog.account_types[type_code].item
    if atype.profile_schema is None:
        if profile:
            raise ValidationFailed.field("profile", f"a {atype.title} account has no profile")
        return {}
    try:
        return atype.profile_schema().load(profile or {}, partial=partial)
    except ValidationError as err:
        msgs = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
        errors = {f"profile.{k}": v for k, v in msgs.items()}
        text = ", ".join(f"{k}: {'; '.join(map(str, v))}" for k, v in errors.items())
        raise ValidationFailed(f"invalid profile — {text}", errors) from None


def check_type(parent: Account | None, type_code: str) -> None:
    host = rbac.host()
    declared = host.catalog.account_types.get(type_code)
    if declared is None:
        available = ", ".join(sorted(host.account_types()))
        raise ValidationFailed.field(
            "type", f"unknown account type '{type_code}' (available: {available})"
        )
    if declared.plugin not in host.enabled:
        raise ValidationFailed.field(
            "type",
            f"account type '{type_code}' comes from plugin '{declared.plugin}', which is disabled",
        )
    host.require_licensed(declared.plugin)
    atype = declared.item
    if parent is None:
        return
    parent_type = host.catalog.account_types.get(parent.type)
    allowed = type_code in (parent_type.item.child_types if parent_type else ()) or (
        parent.type in atype.parent_types
    )
    if not allowed:
        raise ValidationFailed.field(
            "type", f"a {parent.type} account cannot own a {type_code} account"
        )
    if atype.check_parent is not None:
        refusal = atype.check_parent(parent)
        if refusal:
            raise ValidationFailed.field("type", refusal)


def create_default_roles(account: Account) -> None:
    host = rbac.host()
    level = rbac.level_of(account)
    for declared in host.catalog.default_roles.values():
        role = declared.item
        if role.level == level and declared.plugin in host.enabled:
            Role.create(
                account=account,
                name=role.name,
                description=role.description,
                default_code=role.code,
            )


def snapshot(account: Account) -> dict:
    return {
        "name": account.name,
        "type": account.type,
        "parent_id": account.parent_id,
        "email": account.email,
        "currency": account.currency,
        "bill_cycle_day": account.bill_cycle_day,
        "tax_rate": account.tax_rate,
        "invoice_prefix": account.invoice_prefix,
        "profile": account.profile,
        "status": account.status,
    }


def create_account(actor, payload: dict) -> Account:
    """Create a child account; ``actor=None`` is the operator's shell."""
    data = _check_common(_load(AccountInput(), payload))
    if data["parent_id"] is None:
        if actor is not None:
            raise ValidationFailed.field("parent_id", "is required")
        parent = None
    else:
        parent = (
            rbac.get_account(actor, data["parent_id"])
            if actor is not None
            else Account.get_or_none(Account.id == data["parent_id"])
        )
        if parent is None:
            raise ValidationFailed.field("parent_id", f"account {data['parent_id']} not found")
    if actor is not None:
        rbac.require(actor, "accounts.manage", parent)
    check_type(parent, data["type"])
    profile = validate_profile(data["type"], data.pop("profile"))
    data.pop("parent_id")
    with database.atomic():
        account = Account.create(parent=parent, profile=profile, **data)
        account.path = (parent.path if parent else "/") + f"{account.id}/"
        account.save()
        create_default_roles(account)
        audit.record(actor, "account.create", account, account=account, after=snapshot(account))
        rbac.host().call("account_created", account=account, actor=actor)
    return account


def update_account(actor, account: Account, payload: dict) -> Account:
    if actor is not None:
        rbac.require(actor, "accounts.manage", account)
        if account.id == actor.account_id and "profile" in payload:
            # a reseller does not edit its own reseller profile: its parent does
            rbac.require(actor, "accounts.manage", account.parent or account)
    data = _check_common(_load(AccountUpdate(partial=True), payload) if payload else {})
    data = {k: v for k, v in data.items() if k in payload}
    if "profile" in data:
        merged = dict(account.profile or {}) | data["profile"]
        data["profile"] = validate_profile(account.type, merged)
    with database.atomic():
        before = snapshot(account)
        for key, value in data.items():
            setattr(account, key, value)
        account.save()
        audit.record(
            actor,
            "account.update",
            account,
            account=account,
            before=before,
            after=snapshot(account),
        )
        rbac.host().call("account_updated", account=account, actor=actor, before=before)
    return account
