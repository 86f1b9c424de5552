"""Reseller rules shared by the panel pages, the API and the hooks.

Scoping always goes through ``core.rbac`` (``visible_accounts``/``get_account``/``require``):
an account outside the caller's subtree answers 404 exactly as if it did not exist.
"""

from __future__ import annotations

from flask import has_request_context, request

from core.kit import (
    Account,
    BillhiveError,
    NotFound,
    audit,
    database,
    host,
    rbac,
    require_licensed,
)
from core.kit import accounts as account_service
from plugins.reseller_accounts.models import ResellerSettings

RESELLER = "reseller"
CYCLE_KEY = "customer_billing_cycle_day"


# -- who is asking (for rules the core calls without an actor) -----------------------------


def request_actor():
    """The user of the current request (API token or panel session), if any."""
    if not has_request_context():
        return None
    if request.path.startswith("/api/"):
        from core.kit import api_user

        try:
            return api_user()
        except BillhiveError:
            return None
    from flask_login import current_user

    return current_user if current_user and current_user.is_authenticated else None


# -- settings ------------------------------------------------------------------------------


def root_of(account: Account) -> int:
    """The id of the provider at the root of ``account``'s tree."""
    return int(account.path.strip("/").split("/")[0])


def settings_for(provider_id: int):
    return ResellerSettings.get_or_none(ResellerSettings.provider == provider_id)


def allow_sub_resellers(account: Account) -> bool:
    row = settings_for(root_of(account))
    return bool(row and row.allow_sub_resellers)


def set_allow_sub_resellers(actor, provider: Account, allowed: bool) -> bool:
    if provider.parent_id is not None:
        raise NotFound("reseller settings are made by the provider")
    if actor is not None:
        rbac.require(actor, "resellers.manage", provider)
        if actor.account_id != provider.id:
            raise NotFound("reseller settings are made by the provider")
    require_licensed("reseller_accounts")
    with database.atomic():
        row = settings_for(provider.id)
        before = bool(row and row.allow_sub_resellers)
        if row is None:
            row = ResellerSettings.create(provider=provider, allow_sub_resellers=allowed)
        else:
            row.allow_sub_resellers = allowed
            row.save()
        audit.record(
            actor,
            "reseller.settings",
            object_type="reseller_settings",
            object_id=provider.id,
            account=provider,
            before={"allow_sub_resellers": before},
            after={"allow_sub_resellers": allowed},
        )
    return allowed


def check_parent(parent: Account) -> str | None:
    """AccountType.check_parent of ``reseller``: sub-resellers only when the provider allows
    them; and whoever is asking needs ``resellers.manage`` to create a reseller."""
    if parent.type == RESELLER and not allow_sub_resellers(parent):
        return (
            f"'{parent.name}' is a reseller and sub-resellers are switched off: the provider "
            "must allow resellers to own resellers (the setting 'Allow resellers to own "
            "sub-resellers' of the Resellers page)"
        )
    actor = request_actor()
    if actor is not None and not rbac.has(actor, "resellers.manage"):
        return "creating a reseller needs the privilege 'resellers.manage' (Manage resellers)"
    return None


def child_terms(reseller: Account, child_type: str) -> dict:
    """AccountType.child_terms of ``reseller``: a customer of a reseller bills on the profile's
    Billing Cycle (``account_created`` sets it), so the new-account form shows that day
    instead of an editable default."""
    day = (reseller.profile or {}).get(CYCLE_KEY)
    if child_type == RESELLER or not day:
        return {}
    return {"bill_cycle_day": (int(day), f"follows the Billing Cycle of {reseller.name}'s "
                                         "Reseller Profile")}  # fmt: skip


# -- queries -------------------------------------------------------------------------------


def resellers_below(user) -> list[Account]:
    """Resellers strictly inside the caller's subtree, tree order."""
    return list(
        rbac.visible_accounts(user)
        .where((Account.type == RESELLER) & (Account.id != user.account_id))
        .order_by(Account.path)
    )


def get_reseller(user, account_id, privilege: str = "resellers.view") -> Account:
    account = rbac.get_account(user, account_id)
    if account.type != RESELLER:
        raise NotFound(f"reseller {account_id} not found")
    rbac.require(user, privilege, account)
    return account


def customers_of(reseller: Account) -> list[Account]:
    return list(reseller.children.order_by(Account.name))


# -- the profile ---------------------------------------------------------------------------


def update_profile(actor, reseller: Account, changes: dict) -> Account:
    """Edit a reseller's profile (validated by the type's schema); a reseller's own users do
    not edit their own profile — the account above does, with ``resellers.profile`` and
    ``accounts.billing_terms`` (:func:`core.accounts.require_billing_terms`). It is an account edit like the
    core's: ``account_updated`` is called, and the hook moves the customers to a new Billing
    Cycle (:func:`follow_cycle_day`), whichever way the profile was edited."""
    if actor is not None:
        rbac.require(actor, "resellers.profile", reseller)
    merged = dict(reseller.profile or {}) | dict(changes or {})
    if merged != (reseller.profile or {}):
        # the profile is a billing term: the core's one rule (never one's own; the seller
        # above holds accounts.billing_terms), judged before the content is
        account_service.require_billing_terms(actor, reseller, ["profile"], dict(changes or {}))
    profile = account_service.validate_profile(reseller.type, merged)
    with database.atomic():
        before = account_service.snapshot(reseller)
        reseller.profile = profile
        reseller.save()
        audit.record(
            actor,
            "reseller.profile.update",
            reseller,
            account=reseller,
            before=before,
            after=account_service.snapshot(reseller),
        )
        host().call("account_updated", account=reseller, actor=actor, before=before)
    return reseller


def profile_updated(actor, reseller: Account, before: dict) -> int:
    """``account_updated`` of a reseller: when the profile's Billing Cycle day changed, its
    customers follow (audited with how many moved). Returns how many accounts changed."""
    day = (reseller.profile or {}).get(CYCLE_KEY)
    if day == ((before or {}).get("profile") or {}).get(CYCLE_KEY):
        return 0
    moved = follow_cycle_day(reseller)
    if moved:
        audit.record(
            actor,
            "reseller.customers.cycle",
            object_type="account",
            object_id=reseller.id,
            account=reseller,
            after={CYCLE_KEY: day, "customers_moved": moved},
        )
    return moved


def follow_cycle_day(reseller: Account) -> int:
    """Give every direct customer of ``reseller`` the profile's Billing Cycle day.

    Sub-resellers keep their own day (their own customers follow their own profile).
    Returns how many accounts changed."""
    day = (reseller.profile or {}).get(CYCLE_KEY)
    if not day:
        return 0
    return (
        Account.update(bill_cycle_day=int(day))
        .where(
            (Account.parent == reseller.id)
            & (Account.type != RESELLER)
            & (Account.bill_cycle_day != int(day))
        )
        .execute()
    )
