"""Creating and editing accounts of the tree, with their type's profile validated."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from core import audit, current, lifecycle, rbac
from core.billing.money import MoneyError, check_currency, parse_decimal
from core.billing.periods import PeriodError, check_cycle_day
from core.db import database, lock_row
from core.errors import (
    Forbidden,
    LicenseRequired,
    NotFound,
    ValidationFailed,
    describe,
    marshmallow_errors,
)
from core.fields import Email, Id, Percent, Text
from core.lifecycle import set_account_status  # noqa: F401 - the lifecycle's public name
from core.models import Account, Role


class AccountInput(Schema):
    name = Text(200, min_length=1, required=True)
    type = Text(40, min_length=1, required=True, card_numbers=False)
    parent_id = Id(load_default=None, allow_none=True)
    # "" (no e-mail) must survive a second load: the API validates once, the service again
    email = Email(allow_empty=True, load_default="")
    address = Text(2000, multiline=True, load_default="")
    currency = Text(10, load_default="EUR", card_numbers=False,
                    metadata={"description": "ISO 4217 code", "example": "EUR"})  # fmt: skip
    bill_cycle_day = fields.Raw(load_default=1, metadata={"type": "integer", "minimum": 1,
                                                          "maximum": 28})  # fmt: skip
    tax_rate = Percent(load_default="0")
    invoice_prefix = fields.String(
        load_default="INV-", validate=validate.Regexp(r"^[A-Za-z0-9_./-]{0,20}$")
    )
    profile = fields.Dict(load_default=dict)


class AccountCreate(AccountInput):
    """What the API takes to create an account: a child of an account you manage, so
    ``parent_id`` is required (only the operator's shell creates the root)."""

    parent_id = Id(required=True)
    # no default here: a day left out takes the one the parent fixes (create_account)
    bill_cycle_day = fields.Raw(metadata={
        "type": "integer", "minimum": 1, "maximum": 28,
        "description": "Defaults to 1, or to the day the parent fixes (a reseller's Billing "
                       "Cycle); another day than the fixed one is refused"})  # fmt: skip


class AccountUpdate(AccountInput):
    class Meta:
        exclude = ("type", "parent_id")


class AccountPatch(AccountUpdate):
    """The editable fields, every one optional (PATCH)."""


# -- billing terms: the seller's to set -------------------------------------------------------

TERMS_PRIVILEGE = "accounts.billing_terms"
#: The account's own fields that are billing terms (``profile`` is one too: the account type's
#: profile, e.g. the Reseller Profile; ``payment_terms_days`` lives in the billing settings).
ACCOUNT_TERMS = ("currency", "bill_cycle_day", "tax_rate", "profile")
#: What users see for each term (the panel's labels), for messages naming them.
TERM_LABELS = {
    "currency": "Currency",
    "bill_cycle_day": "Bill cycle day",
    "tax_rate": "Tax rate",
    "payment_terms_days": "Payment terms",
    "profile": "Profile",
}


def can_edit_billing_terms(actor, account: Account) -> bool:
    """Whether ``actor`` may set ``account``'s billing terms: only from an account above it,
    with ``accounts.billing_terms``. ``actor=None`` (the operator's shell) may."""
    if actor is None:
        return True
    return (
        account.id != actor.account_id
        and account.is_within(actor.account)
        and rbac.has(actor, TERMS_PRIVILEGE)
    )


def require_billing_terms(
    actor, account: Account, changed, attempt: dict | None = None, *, record: bool = True
) -> None:
    """The one rule for billing terms (currency, bill cycle day, tax rate, payment terms, the
    account type's profile), called by every path that changes them: account edits (API,
    panel, CLI), billing settings and the reseller profile.

    ``changed`` names the terms the request would change. Nobody edits the terms of their own
    account (the seller above sets them); below it, ``accounts.billing_terms`` is needed. A
    refusal is a 403 naming each field, audited in its own transaction like other refused
    escalations (``record=False``: a page that only offers the form, nothing attempted)."""
    changed = list(changed)
    if actor is None or not changed:
        return
    if not account.is_within(actor.account):  # callers scope first; never above the caller
        raise NotFound(f"account {account.id} not found")
    if account.id == actor.account_id:
        names = ", ".join(changed)
        message = (
            f"{names}: the billing terms of your own account are set by the account above it; "
            "you can edit your name, contacts and addresses"
        )
        per_field = "set by the account above yours; you cannot change it on your own account"
    elif not rbac.has(actor, TERMS_PRIVILEGE):
        title = current.host().privileges().get(TERMS_PRIVILEGE)
        label = f" ({title.title})" if title else ""
        message = f"changing {', '.join(changed)} needs the privilege '{TERMS_PRIVILEGE}'{label}"
        per_field = f"needs the privilege '{TERMS_PRIVILEGE}'"
    else:
        return
    exc = Forbidden(message, {name: [f"{TERM_LABELS.get(name, name)} is {per_field}"]
                              for name in changed})  # fmt: skip
    if not record:
        raise exc
    refuse(actor, account, "account.update", exc, attempt)


def refuse(actor, account: Account, action: str, exc, attempt: dict | None) -> None:
    """Record a refused change (``<action>.refused``, with what was asked and why) in its own
    transaction, then raise ``exc``: nothing of the change itself is written."""
    with database.atomic():
        audit.record(
            actor,
            f"{action}.refused",
            account,
            account=account,
            after={"attempt": _jsonable(attempt or {}), "errors": exc.errors},
        )
    raise exc


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _changed_terms(account: Account, data: dict) -> list[str]:
    """The billing terms ``data`` (validated) would change; the same value sent back (the
    panel's form, a client's read-modify-write) is no change."""
    changed = []
    for name in ACCOUNT_TERMS:
        if name not in data:
            continue
        current = getattr(account, name)
        if name == "tax_rate":
            same = parse_decimal(current or "0", name) == parse_decimal(data[name], name)
        elif name == "profile":
            same = (current or {}) == data[name]
        else:
            same = current == data[name]
        if not same:
            changed.append(name)
    return changed


def currency_uses(account: Account) -> list[str]:
    """What fixes an account's currency: its subscriptions, invoices, ledger entries and
    prepaid top-ups (as the billed account). Empty when the currency may still change."""
    from core.billing.models import Invoice, LedgerEntry, PrepaidTopup, Subscription

    found = []
    for label, model in (
        ("subscriptions", Subscription),
        ("invoices", Invoice),
        ("ledger entries", LedgerEntry),
        ("prepaid top-ups", PrepaidTopup),
    ):
        if model.select(model.id).where(model.account == account.id).exists():
            found.append(label)
    return found


def currency_refusal(account: Account, currency: str) -> ValidationFailed | None:
    """The refusal (422 naming ``currency``) of a new currency for an account already used
    in its own; None when the change may go ahead. Called inside the edit's transaction."""
    if currency == account.currency:
        return None
    uses = currency_uses(account)
    if not uses:
        return None
    what = uses[0] if len(uses) == 1 else ", ".join(uses[:-1]) + " and " + uses[-1]
    message = (
        f"currency cannot change: the account already has {what} in {account.currency}; "
        "a new currency needs a new account"
    )
    return ValidationFailed(f"currency: {message}", {"currency": [message]})


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
            errors["bill_cycle_day"] = [_labelled(str(exc), "bill_cycle_day")]
    if "tax_rate" in data:
        try:
            rate = parse_decimal(data["tax_rate"], "tax_rate")
            if not 0 <= rate <= 100:
                raise MoneyError("tax_rate must be a percentage from 0 to 100", field="tax_rate")
            data["tax_rate"] = str(rate)
        except MoneyError as exc:
            errors["tax_rate"] = [_labelled(str(exc), "tax_rate")]
    if errors:
        raise ValidationFailed(
            "invalid input — " + ", ".join(f"{k}: {v[0]}" for k, v in errors.items()), errors
        )
    return data


def _validated(schema: Schema, payload: dict, type_code: str | None, profile_base=None) -> dict:
    """Every field of an account's input checked in one pass: the schema's types, the common
    rules (:func:`_check_common`) and the type's profile, all problems in one error (a form
    shows them all at once instead of one per attempt). ``profile_base``: the stored profile
    an edit's changes merge into."""
    errors: dict[str, list[str]] = {}
    try:
        data = schema.load(payload or {})
    except ValidationError as err:
        errors.update(marshmallow_errors(err).errors)
        data = dict(err.valid_data or {}) if isinstance(err.valid_data, dict) else {}
    try:
        data = _check_common({k: v for k, v in data.items() if k not in errors})
    except ValidationFailed as exc:
        errors.update(exc.errors)
    known = type_code in current.host().catalog.account_types
    if known and "profile" in data and "profile" not in errors:
        try:
            merged = dict(profile_base or {}) | dict(data["profile"] or {})
            data["profile"] = validate_profile(type_code, merged)
        except ValidationFailed as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationFailed(describe(errors), errors)
    return data


def _labelled(message: str, name: str) -> str:
    """A field's message with the label users see ("Bill cycle day must be ...")."""
    if message.startswith(name):
        return TERM_LABELS[name] + message[len(name) :]
    return message


def validate_profile(type_code: str, profile: dict, partial: bool = False) -> dict:
    atype = current.host().catalog.account_types[type_code].item
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
    host = current.host()
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


def fixed_terms(parent: Account | None, type_code: str) -> dict[str, tuple]:
    """``{field: (value, why)}``: the billing terms ``parent`` fixes for a child of type
    ``type_code`` (``AccountType.child_terms`` of the parent's type; a reseller's customers
    bill on its profile's Billing Cycle). Forms show them read-only; the API refuses another
    value by name (:func:`refuse_other_terms`) instead of silently replacing it."""
    if parent is None:
        return {}
    declared = current.host().catalog.account_types.get(parent.type)
    rule = declared.item.child_terms if declared is not None else None
    return dict(rule(parent, type_code) or {}) if rule else {}


def refuse_other_terms(parent: Account | None, type_code: str, data: dict) -> None:
    """A value the caller gave for a term the parent fixes must be that value."""
    errors = {}
    for name, (value, why) in fixed_terms(parent, type_code).items():
        if name in data and data[name] != value:
            errors[name] = [f"{TERM_LABELS.get(name, name)} is {value} here: it {why}"]
    if errors:
        raise ValidationFailed("; ".join(m for ms in errors.values() for m in ms), errors)


def type_choices(parent: Account) -> tuple[list, list[tuple[str, str]]]:
    """What can be created under ``parent`` right now, for forms that offer only that:
    ``(offered AccountTypes, [(title, why not)])``. "Why not" lists the types the tree's
    shape allows under ``parent`` that are refused at the moment (the licence does not cover
    their add-on, naming the feature; the type's own rule, e.g. sub-resellers switched off);
    types that can never be owned here (a Standard account owns nothing) or whose add-on is
    disabled are neither offered nor explained. Same rules as :func:`check_type`."""
    host = current.host()
    offered, refused = [], []
    parent_type = host.catalog.account_types.get(parent.type)
    for code, declared in host.catalog.account_types.items():
        atype = declared.item
        shaped = code in (parent_type.item.child_types if parent_type else ()) or (
            parent.type in atype.parent_types
        )
        if not shaped or declared.plugin not in host.enabled:
            continue
        try:
            check_type(parent, code)
        except (ValidationFailed, LicenseRequired) as exc:
            refused.append((atype.title, exc.message.removeprefix("type: ")))
        else:
            offered.append(atype)
    return offered, refused


def create_default_roles(account: Account) -> None:
    host = current.host()
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
        "address": account.address,
        "currency": account.currency,
        "bill_cycle_day": account.bill_cycle_day,
        "tax_rate": account.tax_rate,
        "invoice_prefix": account.invoice_prefix,
        "profile": account.profile,
        "status": account.status,
    }


def create_account(actor, payload: dict) -> Account:
    """Create a child account; ``actor=None`` is the operator's shell."""
    code = (payload or {}).get("type")
    data = _validated(AccountInput(), payload, code if isinstance(code, str) else None)
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
    lifecycle.refuse_if_closed(parent, "account", "parent_id")
    check_type(parent, data["type"])
    refuse_other_terms(parent, data["type"], {k: data[k] for k in (payload or {}) if k in data})
    data.update({name: value for name, (value, _) in fixed_terms(parent, data["type"]).items()})
    profile = data.pop("profile")  # validated with the rest (_validated)
    data.pop("parent_id")
    with database.atomic():
        account = Account.create(parent=parent, profile=profile, **data)
        account.path = (parent.path if parent else "/") + f"{account.id}/"
        account.save()
        create_default_roles(account)
        audit.record(actor, "account.create", account, account=account, after=snapshot(account))
        current.host().call("account_created", account=account, actor=actor)
    return account


def update_account(actor, account: Account, payload: dict) -> Account:
    """Edit an account. Name, e-mail, address and prefix need ``accounts.manage``; billing
    terms also :func:`require_billing_terms`; a used currency stays (:func:`currency_uses`).
    Every refusal writes nothing of the change."""
    if actor is not None:
        rbac.require(actor, "accounts.manage", account)
    try:
        data = _validated(AccountUpdate(partial=True), payload, account.type, account.profile)
        data = {k: v for k, v in data.items() if k in (payload or {})}
    except ValidationFailed as exc:
        # a term the caller may not set at all is refused as such, whatever its value
        bad_terms = [name for name in ACCOUNT_TERMS
                     if name in exc.errors or any(k.startswith(f"{name}.") for k in exc.errors)]  # fmt: skip
        if bad_terms and not can_edit_billing_terms(actor, account):
            require_billing_terms(actor, account, bad_terms, payload)
        raise
    changed = {k: v for k, v in data.items() if getattr(account, k, None) != v}
    refuse_other_terms(account.parent, account.type, changed)
    require_billing_terms(actor, account, _changed_terms(account, data), payload)
    refusal = None
    with database.atomic():
        if "currency" in data:
            # the account's row lock: a subscription created meanwhile (which takes it too)
            # is either committed and seen here, or waits and then sees the new currency
            lock_row(Account, account.id)
            refusal = currency_refusal(account, data["currency"])
        if refusal is None:
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
            current.host().call("account_updated", account=account, actor=actor, before=before)
    if refusal is not None:  # audited after the edit's transaction ended, writing nothing
        refuse(actor, account, "account.update", refusal, payload)
    return account
