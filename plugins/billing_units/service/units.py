"""Phone numbers, teams, billing units, their settings and rated call records; every change
validates, writes and audits in one transaction.

The panel, the API and the CLI all call these functions; privilege checks live here.
``actor=None`` is the operator's shell (CLI) and skips privilege checks.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

import peewee as pw
from marshmallow import Schema, ValidationError, fields, validate

from core.kit import (
    Account,
    Conflict,
    Forbidden,
    Id,
    MoneyError,
    NotFound,
    Price,
    Text,
    User,
    ValidationFailed,
    accounts,
    audit,
    check_currency,
    coverage,
    exponent,
    host,
    line_amount,
    load,
    lock_row,
    parse_decimal,
    rbac,
    to_decimal,
    write_transaction,
)
from plugins.billing_units.models import (
    BillingUnit,
    CallRecord,
    PhoneNumber,
    Team,
    TeamMember,
    UnitNumber,
    UnitSettings,
    UnitTeam,
    UnitUser,
)

PLUGIN_NAME = "billing_units"
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
UNASSIGNED = "Unassigned"

VIEW = "billing_units.view"
EDIT = "billing_units.edit"


# -- privileges --------------------------------------------------------------------------------


def can_view(actor, account: Account | None = None) -> bool:
    if actor is None:
        return True
    if account is not None and not account.is_within(actor.account):
        return False
    return rbac.has(actor, VIEW) or rbac.has(actor, EDIT)


def can_edit(actor, account: Account | None = None) -> bool:
    if actor is None:
        return True
    if account is not None and not account.is_within(actor.account):
        return False
    return rbac.has(actor, EDIT)


def require_view(actor, account: Account) -> None:
    """The Billing units sub-tab needs one or both of View Billing unit and Edit Billing
    unit (the contact-center document), not Edit Billing: a unit privilege alone suffices.
    Outside the caller's subtree: 404."""
    if actor is None:
        return
    if not account.is_within(actor.account):
        raise NotFound(f"account {account.id} not found")
    if not (rbac.has(actor, VIEW) or rbac.has(actor, EDIT)):
        raise Forbidden(
            f"you lack the privilege '{VIEW}' (View Billing unit) or '{EDIT}' (Edit Billing unit)"
        )


def require_edit(actor, account: Account) -> None:
    """Changes need Edit Billing unit; View Billing unit alone is read-only (403)."""
    if actor is None:
        return
    rbac.require(actor, EDIT, account)


def require_licensed() -> None:
    """New work (creating units, numbers, teams, importing calls) needs the licence feature;
    existing data stays readable, editable and deletable without it."""
    host().require_licensed(PLUGIN_NAME)


def account_for(actor, account_id) -> Account:
    if actor is None:
        acc = Account.get_or_none(Account.id == account_id)
        if acc is None:
            raise NotFound(f"account {account_id} not found")
        return acc
    return rbac.get_account(actor, account_id)


def get_object(model, actor, object_id):
    """A plugin object by id, 404 outside the caller's subtree."""
    if actor is None:
        obj = model.get_or_none(model.id == object_id)
        if obj is None:
            raise NotFound(f"{model.__name__.lower()} {object_id} not found")
        return obj
    return rbac.get_scoped(model, actor, object_id)


def _clean_name(value, field: str = "name") -> str:
    name = (value or "").strip() if isinstance(value, str) else ""
    if not name:
        raise ValidationFailed.field(field, "must not be empty")
    if len(name) > 200:
        raise ValidationFailed.field(field, "must be at most 200 characters")
    return name


# -- phone numbers -----------------------------------------------------------------------------


class NumberInput(Schema):
    e164 = Text(40, required=True, card_numbers=False,
                metadata={"description": "E.164, e.g. +442079460000"})  # fmt: skip
    label = Text(200, load_default="")


def normalize_e164(value) -> str:
    """``+44 20 7946 0000`` -> ``+442079460000``; anything not E.164 is refused, naming it."""
    if not isinstance(value, str):
        raise ValidationFailed.field(
            "e164", "must be a phone number in E.164 form like +442079460000"
        )
    text = re.sub(r"[\s\-().]", "", value)
    if not E164_RE.fullmatch(text):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValidationFailed.field(
            "e164",
            f"{shown!r} is not an E.164 number (a '+', a country code that does not start "
            "with 0, at most 15 digits, e.g. +442079460000)",
        )
    return text


def number_snapshot(n: PhoneNumber) -> dict:
    return {"e164": n.e164, "label": n.label, "account_id": n.account_id}


def create_number(actor, account: Account, payload) -> PhoneNumber:
    require_edit(actor, account)
    data = load(NumberInput(), payload)
    e164 = normalize_e164(data["e164"])
    require_licensed()
    try:
        with write_transaction():
            if PhoneNumber.get_or_none(PhoneNumber.e164 == e164) is not None:
                raise Conflict(f"e164: number {e164} already exists", {"e164": ["already exists"]})
            number = PhoneNumber.create(account=account, e164=e164, label=data["label"].strip())
            audit.record(
                actor, "phone_number.create", number, account=account, after=number_snapshot(number)
            )
    except pw.IntegrityError:
        raise Conflict(
            f"e164: number {e164} already exists", {"e164": ["already exists"]}
        ) from None
    return number


def delete_number(actor, number: PhoneNumber) -> None:
    account = number.account
    require_edit(actor, account)
    with write_transaction():
        calls = CallRecord.select().where(CallRecord.number == number).count()
        if calls:
            raise Conflict(
                f"number {number.e164} has {calls} call record(s) and cannot be deleted",
                {"number": ["has call records"]},
            )
        audit.record(
            actor, "phone_number.delete", number, account=account, before=number_snapshot(number)
        )
        UnitNumber.delete().where(UnitNumber.number == number).execute()
        number.delete_instance()


def numbers_of(account: Account) -> list[PhoneNumber]:
    return list(
        PhoneNumber.select().where(PhoneNumber.account == account).order_by(PhoneNumber.e164)
    )


def number_units(account: Account) -> dict[int, BillingUnit]:
    """number id -> the unit holding it, for the account."""
    units = {u.id: u for u in BillingUnit.select().where(BillingUnit.account == account)}
    rows = (
        UnitNumber.select(UnitNumber.number, UnitNumber.unit)
        .join(BillingUnit)
        .where(BillingUnit.account == account)
        .tuples()
    )
    return {number_id: units[unit_id] for number_id, unit_id in rows}


def available_numbers(account: Account, unit: BillingUnit | None = None) -> list[PhoneNumber]:
    """Numbers in no unit (plus those of ``unit`` itself when editing it)."""
    held = number_units(account)
    return [
        n
        for n in numbers_of(account)
        if n.id not in held or (unit is not None and held[n.id].id == unit.id)
    ]


# -- teams -------------------------------------------------------------------------------------


class TeamInput(Schema):
    name = Text(200, required=True)
    user_ids = fields.List(Id(), load_default=list)


class TeamPatch(TeamInput):
    """The same fields, each optional (PATCH)."""


def _users_of(account: Account, ids, field: str = "user_ids") -> list[User]:
    out = []
    for uid in dict.fromkeys(ids or []):
        user = User.get_or_none(User.id == uid, User.account == account)
        if user is None:
            raise ValidationFailed.field(
                field, f"user {uid} is not a user of account '{account.name}'"
            )
        out.append(user)
    return out


def team_snapshot(team: Team) -> dict:
    return {"name": team.name, "members": sorted(u.email for u in team_members(team))}


def team_members(team: Team) -> list[User]:
    return list(User.select().join(TeamMember).where(TeamMember.team == team).order_by(User.email))


def _check_team_name(account, name, team=None):
    query = Team.select().where(Team.account == account, Team.name == name)
    if team is not None:
        query = query.where(Team.id != team.id)
    if query.exists():
        raise Conflict(f"name: a team named '{name}' already exists", {"name": ["already exists"]})


def create_team(actor, account: Account, payload) -> Team:
    require_edit(actor, account)
    data = load(TeamInput(), payload)
    name = _clean_name(data["name"])
    members = _users_of(account, data["user_ids"])
    require_licensed()
    with write_transaction():
        _check_team_name(account, name)
        team = Team.create(account=account, name=name)
        for user in members:
            TeamMember.create(team=team, user=user)
        audit.record(actor, "team.create", team, account=account, after=team_snapshot(team))
    return team


def update_team(actor, team: Team, payload) -> Team:
    account = team.account
    require_edit(actor, account)
    data = load(TeamPatch(partial=True), payload)
    with write_transaction():
        team = lock_row(Team, team.id)  # concurrent edits of one team apply one after the other
        if team is None:
            raise NotFound("team not found (it was deleted)")
        before = team_snapshot(team)
        if "name" in data:
            team.name = _clean_name(data["name"])
            _check_team_name(account, team.name, team)
            team.save()
        if "user_ids" in data:
            members = _users_of(account, data["user_ids"])
            TeamMember.delete().where(TeamMember.team == team).execute()
            for user in members:
                TeamMember.create(team=team, user=user)
        audit.record(
            actor, "team.update", team, account=account, before=before, after=team_snapshot(team)
        )
    return team


def delete_team(actor, team: Team) -> None:
    account = team.account
    require_edit(actor, account)
    with write_transaction():
        audit.record(actor, "team.delete", team, account=account, before=team_snapshot(team))
        UnitTeam.delete().where(UnitTeam.team == team).execute()
        TeamMember.delete().where(TeamMember.team == team).execute()
        team.delete_instance()


def teams_of(account: Account) -> list[Team]:
    return list(Team.select().where(Team.account == account).order_by(Team.name))


# -- billing units -----------------------------------------------------------------------------


class UnitInput(Schema):
    name = Text(200, required=True, metadata={"description": "e.g. Sales"})
    user_ids = fields.List(Id(), load_default=list)
    team_ids = fields.List(Id(), load_default=list)
    number_ids = fields.List(Id(), load_default=list)


class UnitPatch(UnitInput):
    """The same fields, each optional (PATCH); a given list replaces the current one."""


def unit_users(unit: BillingUnit) -> list[User]:
    """Users assigned directly."""
    return list(User.select().join(UnitUser).where(UnitUser.unit == unit).order_by(User.email))


def unit_teams(unit: BillingUnit) -> list[Team]:
    return list(Team.select().join(UnitTeam).where(UnitTeam.unit == unit).order_by(Team.name))


def unit_numbers(unit: BillingUnit) -> list[PhoneNumber]:
    return list(
        PhoneNumber.select()
        .join(UnitNumber)
        .where(UnitNumber.unit == unit)
        .order_by(PhoneNumber.e164)
    )


def effective_users(unit: BillingUnit) -> list[User]:
    """Direct users plus the *current* members of the assigned teams (a team assignment is
    live: who joins or leaves the team later is counted from then on)."""
    direct = User.select(User.id).join(UnitUser).where(UnitUser.unit == unit)
    via_team = (
        User.select(User.id)
        .join(TeamMember)
        .join(UnitTeam, on=(UnitTeam.team == TeamMember.team))
        .where(UnitTeam.unit == unit)
    )
    return list(
        User.select().where(User.id.in_(direct) | User.id.in_(via_team)).order_by(User.email)
    )


def unit_snapshot(unit: BillingUnit) -> dict:
    return {
        "name": unit.name,
        "users": [u.email for u in unit_users(unit)],
        "teams": [t.name for t in unit_teams(unit)],
        "numbers": [n.e164 for n in unit_numbers(unit)],
    }


def _check_unit_name(account, name, unit=None):
    if name.casefold() == UNASSIGNED.casefold():
        raise ValidationFailed.field(
            "name", f"'{UNASSIGNED}' is reserved for costs outside every billing unit"
        )
    query = BillingUnit.select().where(BillingUnit.account == account, BillingUnit.name == name)
    if unit is not None:
        query = query.where(BillingUnit.id != unit.id)
    if query.exists():
        raise Conflict(
            f"name: a billing unit named '{name}' already exists", {"name": ["already exists"]}
        )


def _teams_of(account, ids) -> list[Team]:
    out = []
    for tid in dict.fromkeys(ids or []):
        team = Team.get_or_none(Team.id == tid, Team.account == account)
        if team is None:
            raise ValidationFailed.field(
                "team_ids", f"team {tid} is not a team of account '{account.name}'"
            )
        out.append(team)
    return out


def _numbers_of(account, ids) -> list[PhoneNumber]:
    out = []
    for nid in dict.fromkeys(ids or []):
        number = PhoneNumber.get_or_none(PhoneNumber.id == nid)
        if number is None or number.account_id != account.id:
            # never name a number of another account: it may be outside the caller's subtree
            raise ValidationFailed.field(
                "number_ids", f"number {nid} is not a phone number of account '{account.name}'"
            )
        out.append(number)
    return out


def _already_assigned(number: PhoneNumber, unit: BillingUnit | None = None) -> Conflict:
    holder = BillingUnit.select().join(UnitNumber).where(UnitNumber.number == number.id).first()
    name = holder.name if holder is not None else "another unit"
    return Conflict(
        f"number {number.e164} is already assigned to billing unit '{name}'",
        {"number_ids": [f"{number.e164} is already assigned to billing unit '{name}'"]},
    )


def _set_numbers(unit: BillingUnit, numbers: list[PhoneNumber]) -> None:
    wanted = {n.id for n in numbers}
    UnitNumber.delete().where(
        UnitNumber.unit == unit, UnitNumber.number.not_in(wanted or [0])
    ).execute()
    have = {r.number_id for r in UnitNumber.select().where(UnitNumber.unit == unit)}
    for number in numbers:
        if number.id in have:
            continue
        holder = UnitNumber.get_or_none(UnitNumber.number == number.id)
        if holder is not None and holder.unit_id != unit.id:
            raise _already_assigned(number)
        # the UNIQUE index on number settles a race between two requests
        UnitNumber.create(unit=unit, number=number)


def _set_links(model, unit, field, objects) -> None:
    model.delete().where(model.unit == unit).execute()
    for obj in objects:
        model.create(unit=unit, **{field: obj})


def _write_unit(actor, account, unit, data, action):
    """Apply ``data`` to ``unit`` (or a new one) in one transaction; IntegrityError on the
    number index is turned into a message naming the unit that holds the number."""
    users = _users_of(account, data["user_ids"]) if "user_ids" in data else None
    teams = _teams_of(account, data["team_ids"]) if "team_ids" in data else None
    numbers = _numbers_of(account, data["number_ids"]) if "number_ids" in data else None
    try:
        with write_transaction():
            if unit is not None:
                # the unit's row lock: concurrent edits of one unit apply one after the other,
                # each replacing the lists the previous one left (not racing on its link rows)
                unit = lock_row(BillingUnit, unit.id)
                if unit is None:
                    raise NotFound("billing unit not found (it was deleted)")
            before = unit_snapshot(unit) if unit is not None else None
            if "name" in data:
                _check_unit_name(account, data["name"], unit)
            if unit is None:
                unit = BillingUnit.create(account=account, name=data["name"])
            elif "name" in data and data["name"] != unit.name:
                unit.name = data["name"]
                unit.save()
            if users is not None:
                _set_links(UnitUser, unit, "user", users)
            if teams is not None:
                _set_links(UnitTeam, unit, "team", teams)
            if numbers is not None:
                _set_numbers(unit, numbers)
            audit.record(
                actor, action, unit, account=account, before=before, after=unit_snapshot(unit)
            )
    except pw.IntegrityError as exc:
        # a concurrent request committed first; find out who holds what
        for number in numbers or []:
            holder = UnitNumber.get_or_none(UnitNumber.number == number.id)
            if holder is not None and (unit is None or holder.unit_id != unit.id):
                raise _already_assigned(number) from None
        raise Conflict(
            f"name: a billing unit named '{data.get('name')}' already exists"
            if "name" in data
            else f"the change conflicts with a concurrent change: {exc}",
            {"name": ["already exists"]} if "name" in data else {},
        ) from None
    return unit


def create_unit(actor, account: Account, payload) -> BillingUnit:
    require_edit(actor, account)
    data = load(UnitInput(), payload)
    data["name"] = _clean_name(data["name"])
    require_licensed()
    return _write_unit(actor, account, None, data, "billing_unit.create")


def update_unit(actor, unit: BillingUnit, payload) -> BillingUnit:
    account = unit.account
    require_edit(actor, account)
    data = load(UnitPatch(partial=True), payload)
    if "name" in data:
        data["name"] = _clean_name(data["name"])
    return _write_unit(actor, account, unit, data, "billing_unit.update")


def delete_unit(actor, unit: BillingUnit) -> None:
    """Delete a unit; its numbers are released (become available), users and teams stay."""
    account = unit.account
    require_edit(actor, account)
    with write_transaction():
        if lock_row(BillingUnit, unit.id, key=True) is None:  # a concurrent delete came first
            raise NotFound("billing unit not found (it was deleted)")
        audit.record(
            actor, "billing_unit.delete", unit, account=account, before=unit_snapshot(unit)
        )
        UnitNumber.delete().where(UnitNumber.unit == unit).execute()
        UnitUser.delete().where(UnitUser.unit == unit).execute()
        UnitTeam.delete().where(UnitTeam.unit == unit).execute()
        unit.delete_instance()


def units_of(account: Account) -> list[BillingUnit]:
    return list(
        BillingUnit.select().where(BillingUnit.account == account).order_by(BillingUnit.name)
    )


# -- settings ----------------------------------------------------------------------------------


class SettingsInput(Schema):
    number_rental_price = Price(metadata={"description": "per number per period, e.g. 2.50"})
    seat_price = Price(metadata={"description": "per user per period, e.g. 15.00"})


def settings_for(account: Account) -> UnitSettings:
    row = UnitSettings.get_or_none(UnitSettings.account == account)
    return row or UnitSettings(
        account=account, number_rental_price=Decimal(0), seat_price=Decimal(0)
    )


def can_set_prices(actor, account: Account) -> bool:
    """The prices of numbers and seats are what the seller invoices: billing terms, set
    from an account above (``core.accounts``), never by the customer for itself."""
    return can_edit(actor, account) and accounts.can_edit_billing_terms(actor, account)


def update_settings(actor, account: Account, payload) -> UnitSettings:
    """Set the prices the seller invoices per number and per seat (a billing term of the
    account: only from an account above it, with ``accounts.billing_terms`` and Edit
    Billing unit)."""
    require_edit(actor, account)
    data = load(SettingsInput(partial=True), payload)
    accounts.require_billing_terms(actor, account, list(data) or list(SettingsInput().fields),
                          {k: str(v) for k, v in data.items()})  # fmt: skip
    prices = {}
    for key, value in data.items():
        try:
            price = parse_decimal(value, key)
        except MoneyError as exc:
            raise ValidationFailed.field(key, exc.message) from None
        if price < 0:
            raise ValidationFailed.field(key, "must not be negative")
        prices[key] = price
    with write_transaction():
        row = settings_for(account)
        before = {
            "number_rental_price": str(row.number_rental_price),
            "seat_price": str(row.seat_price),
        }
        for key, price in prices.items():
            setattr(row, key, price)
        row.save()
        audit.record(
            actor,
            "billing_units.settings",
            object_type="billing_units_settings",
            object_id=account.id,
            account=account,
            before=before,
            after={k: str(v) for k, v in prices.items()},
        )
    return settings_for(account)


# -- call records ------------------------------------------------------------------------------


class CallInput(Schema):
    external_id = Text(200, min_length=1, required=True, card_numbers=False)
    number = Text(40, required=True, card_numbers=False,
                  metadata={"description": "E.164 of one of the account's numbers"})  # fmt: skip
    user_email = Text(254, load_default=None, allow_none=True, card_numbers=False)
    started_at = fields.DateTime(required=True)
    duration_seconds = fields.Integer(required=True, validate=validate.Range(min=0, max=2**31 - 1))
    cost = Price(signed=True, required=True,
                 metadata={"description": "rated cost, major units: '0.42'"})  # fmt: skip
    currency = Text(10, load_default=None, allow_none=True, card_numbers=False)


def _cost_minor(value, currency: str) -> int:
    amount = parse_decimal(value, "cost")
    exp = exponent(currency)
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"cost {value} has more decimals than {currency} allows ({exp})", "cost")
    return int(scaled)


def _validate_call(account, row: dict, numbers: dict, users: dict) -> dict:
    data = CallInput().load(row)
    currency = check_currency(data["currency"] or account.currency, "currency")
    if currency != account.currency:
        raise ValidationFailed.field(
            "currency", f"{currency} differs from the account's currency {account.currency}"
        )
    e164 = normalize_e164(data["number"])
    number = numbers.get(e164)
    if number is None:
        raise ValidationFailed.field(
            "number", f"{e164} is not a phone number of account '{account.name}'"
        )
    user = None
    if data["user_email"]:
        user = users.get(data["user_email"].strip().lower())
        if user is None:
            raise ValidationFailed.field(
                "user_email", f"{data['user_email']} is not a user of account '{account.name}'"
            )
    started = data["started_at"]
    if started.tzinfo is not None:
        from datetime import UTC

        started = started.astimezone(UTC).replace(tzinfo=None)
    return {
        "account": account.id,
        "external_id": data["external_id"],
        "number": number.id,
        "user": user.id if user else None,
        "started_at": started,
        "duration_seconds": data["duration_seconds"],
        "cost": _cost_minor(data["cost"], currency),
        "currency": currency,
    }


def add_calls(actor, account: Account, rows: list[dict]) -> dict:
    """Store rated call records, all or nothing. Idempotent by ``external_id``: a record
    already stored for the account is skipped (counted as ``duplicates``)."""
    require_edit(actor, account)
    require_licensed()
    numbers = {n.e164: n for n in numbers_of(account)}
    users = {u.email: u for u in User.select().where(User.account == account)}
    clean, errors = [], {}
    for index, row in enumerate(rows or []):
        try:
            if not isinstance(row, dict):
                raise ValidationFailed("a call record must be an object")
            clean.append({**_validate_call(account, row, numbers, users), "_index": index})
        except ValidationError as err:
            errors[str(index)] = [f"{k}: {'; '.join(map(str, v))}" for k, v in err.messages.items()]
        except ValidationFailed as exc:
            errors[str(index)] = [exc.message]
        except MoneyError as exc:
            errors[str(index)] = [f"{exc.field or 'value'}: {exc.message}"]
    # a call of a day invoiced already would never be billed (charges bill from what the
    # coverage key is billed through): refused, like recording storage of a billed day
    through = billed_through(account)
    if through is not None:
        billed = datetime.combine(through, datetime.min.time())
        late = [rec for rec in clean if rec["started_at"] < billed]
        stored = _existing_ids(account, [rec["external_id"] for rec in late])  # a retry: fine
        for rec in late:
            if rec["external_id"] not in stored:
                errors.setdefault(str(rec["_index"]), []).append(
                    f"started_at: {rec['started_at']:%Y-%m-%d %H:%M} is invoiced already (calls "
                    f"are billed through {through}); a billed period is never billed again"
                )
    if errors:
        first = next(iter(errors.items()))
        raise ValidationFailed(
            f"{len(errors)} call record(s) refused; record {first[0]}: {first[1][0]}",
            {"records": errors},
        )
    seen: dict[str, dict] = {}
    for rec in clean:
        rec.pop("_index", None)
        seen.setdefault(rec["external_id"], rec)
    unique = list(seen.values())
    with write_transaction():
        existing = _existing_ids(account, [r["external_id"] for r in unique])
        fresh = [r for r in unique if r["external_id"] not in existing]
        for start in range(0, len(fresh), 500):
            CallRecord.insert_many(fresh[start : start + 500]).on_conflict_ignore().execute()
        stored = _existing_ids(account, [r["external_id"] for r in fresh])
        created = len(stored)
        audit.record(
            actor,
            "call_records.import",
            object_type="call_records",
            object_id=account.id,
            account=account,
            after={"received": len(rows), "created": created},
        )
    return {"received": len(rows), "created": created, "duplicates": len(rows) - created}


def _existing_ids(account, ids) -> set[str]:
    out: set[str] = set()
    ids = list(ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        out |= {
            r.external_id
            for r in CallRecord.select(CallRecord.external_id).where(
                CallRecord.account == account, CallRecord.external_id.in_(chunk)
            )
        }
    return out


CSV_COLUMNS = (
    "external_id",
    "number",
    "user_email",
    "started_at",
    "duration_seconds",
    "cost",
    "currency",
)


def import_calls_csv(actor, account: Account, text: str) -> dict:
    """Import call records from CSV with the header
    ``external_id,number,user_email,started_at,duration_seconds,cost,currency``
    (``user_email`` and ``currency`` may be empty). Errors name the CSV line."""
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text))
    missing = [
        c
        for c in ("external_id", "number", "started_at", "duration_seconds", "cost")
        if c not in (reader.fieldnames or [])
    ]
    if missing:
        raise ValidationFailed.field("file", f"CSV header lacks column(s): {', '.join(missing)}")
    rows = []
    for row in reader:
        rows.append(
            {k: (v if v not in ("",) else None) for k, v in row.items() if k in CSV_COLUMNS}
        )
    for row in rows:
        if row.get("duration_seconds") is not None:
            row["duration_seconds"] = row["duration_seconds"].strip()
    try:
        return add_calls(actor, account, rows)
    except ValidationFailed as exc:
        records = exc.errors.get("records", {})
        lines = {f"line {int(i) + 2}": msgs for i, msgs in records.items()}
        first = next(iter(lines.items()), None)
        message = (
            exc.message
            if first is None
            else f"{len(lines)} row(s) refused; {first[0]}: {first[1][0]}"
        )
        raise ValidationFailed(message, lines or exc.errors) from None


def calls_of(
    account: Account, start: date | None = None, end: date | None = None, limit: int = 100
):
    query = CallRecord.select().where(CallRecord.account == account)
    if start is not None:
        query = query.where(CallRecord.started_at >= datetime.combine(start, datetime.min.time()))
    if end is not None:
        query = query.where(CallRecord.started_at < datetime.combine(end, datetime.min.time()))
    return query.order_by(CallRecord.started_at, CallRecord.id).limit(limit)


# -- report ------------------------------------------------------------------------------------


def _bounds(period: tuple[date, date]) -> tuple[datetime, datetime]:
    start, end = period
    if end <= start:
        raise ValidationFailed.field("end", "must be after start")
    return datetime.combine(start, datetime.min.time()), datetime.combine(end, datetime.min.time())


def compute_report(account: Account, period: tuple[date, date]) -> dict:
    """The **rating**: what a bill run invoices for ``period`` (start, end exclusive) per
    unit, plus an Unassigned bucket (:func:`charges` bills it; the report shows it only as
    the estimate of days not invoiced yet; the report itself reads the invoices).

    * Usage: the sum of the rated costs of the calls on the unit's numbers (calls on numbers
      in no unit go to Unassigned). One SQL GROUP BY per number, then a mapping to units.
    * Number rental: each of the account's numbers once, to its unit or Unassigned.
    * Seats: each active user of the account once, to the first (by name) unit they belong to
      directly or through a team, or to Unassigned.
    Assignments are those in force when the report is made.
    """
    lo, hi = _bounds(period)
    currency = account.currency
    units = units_of(account)
    by_number = number_units(account)
    settings = settings_for(account)
    rental, seat = settings.number_rental_price, settings.seat_price

    rows: dict[int | None, dict] = {}

    def row(unit):
        key = unit.id if unit is not None else None
        if key not in rows:
            rows[key] = {
                "unit_id": key,
                "unit": unit.name if unit is not None else UNASSIGNED,
                "numbers": 0,
                "users": 0,
                "calls": 0,
                "duration_seconds": 0,
                "usage": 0,
            }
        return rows[key]

    for unit in units:
        row(unit)
    row(None)

    usage = (
        CallRecord.select(
            CallRecord.number,
            pw.fn.COUNT(CallRecord.id).alias("n"),
            pw.fn.SUM(CallRecord.duration_seconds).alias("secs"),
            pw.fn.SUM(CallRecord.cost).alias("cost"),
        )
        .where(
            CallRecord.account == account,
            CallRecord.started_at >= lo,
            CallRecord.started_at < hi,
        )
        .group_by(CallRecord.number)
        .tuples()
    )
    for number_id, n, secs, cost in usage:
        r = row(by_number.get(number_id))
        r["calls"] += int(n)
        r["duration_seconds"] += int(secs or 0)
        r["usage"] += int(cost or 0)

    for (number_id,) in (
        PhoneNumber.select(PhoneNumber.id).where(PhoneNumber.account == account).tuples()
    ):
        row(by_number.get(number_id))["numbers"] += 1

    # memberships in two queries (direct, through teams), not one per unit
    unit_by_id = {u.id: u for u in units}
    order = {u.id: i for i, u in enumerate(units)}  # units are ordered by name
    members: dict[int, set[int]] = {}
    direct = (
        UnitUser.select(UnitUser.unit, UnitUser.user)
        .join(BillingUnit)
        .where(BillingUnit.account == account)
        .tuples()
    )
    via_team = (
        UnitTeam.select(UnitTeam.unit, TeamMember.user)
        .join(BillingUnit)
        .switch(UnitTeam)
        .join(TeamMember, on=(TeamMember.team == UnitTeam.team))
        .where(BillingUnit.account == account)
        .tuples()
    )
    for unit_id, user_id in list(direct) + list(via_team):
        members.setdefault(user_id, set()).add(unit_id)
    first_unit = {
        user_id: unit_by_id[min(ids, key=order.__getitem__)] for user_id, ids in members.items()
    }
    active = User.select(User.id).where(User.account == account, User.is_active == True)  # noqa: E712
    for (user_id,) in active.tuples():
        row(first_unit.get(user_id))["users"] += 1

    out = []
    ordered = [rows[u.id] for u in units] + [rows[None]]
    for r in ordered:
        r["rental"] = line_amount(r["numbers"], rental, currency)
        r["seats"] = line_amount(r["users"], seat, currency)
        r["recurring"] = r["rental"] + r["seats"]
        r["total"] = r["usage"] + r["recurring"]
        out.append(r)
    totals = {
        k: sum(r[k] for r in out)
        for k in (
            "numbers",
            "users",
            "calls",
            "duration_seconds",
            "usage",
            "rental",
            "seats",
            "recurring",
            "total",
        )
    }
    return {
        "account_id": account.id,
        "currency": currency,
        "start": period[0],
        "end": period[1],
        "number_rental_price": rental,
        "seat_price": seat,
        "units": out,
        "totals": totals,
    }


def billed_through(account: Account) -> date | None:
    """The last day (exclusive) the account's unit charges are invoiced through, if any."""
    return coverage.key_through(f"billing_units:{account.id}")


def charges(account: Account, period: tuple[date, date]) -> list:
    """Invoice lines grouped by unit (``group`` = unit name, Unassigned included).

    Coverage key ``billing_units:<account>``: the lines bill the days from what it is billed
    through (never before the period's start) to the period's end, so after a cycle-day change
    the first invoice bills a short stretch: calls of those days, numbers and seats prorated
    to those days ("(14 of 30 days)")."""
    from decimal import Decimal

    from core.kit import Charge, ExactRatio

    has_units = BillingUnit.select().where(BillingUnit.account == account).exists()
    has_calls = CallRecord.select().where(CallRecord.account == account).exists()
    if not (has_units or has_calls):
        return []
    key = f"billing_units:{account.id}"
    begin = max(period[0], coverage.key_through(key) or period[0])
    if begin >= period[1]:
        return []  # billed already
    days, total_days = (period[1] - begin).days, (period[1] - period[0]).days
    share = ExactRatio(days, total_days)
    prorated = "" if days == total_days else f" ({days} of {total_days} days)"
    data = compute_report(account, (begin, period[1]))
    cur = data["currency"]
    cover = {"coverage": key, "service_start": begin, "service_end": period[1]}
    out = []
    for r in data["units"]:
        group = r["unit"]
        if r["calls"]:
            minutes = Decimal(r["duration_seconds"]) / 60
            out.append(
                Charge(
                    description=f"Calls — {group}: {r['calls']} call(s), {minutes:.1f} min",
                    quantity=Decimal(1),
                    unit_price=to_decimal(r["usage"], cur),
                    unit="usage",
                    product_code="BU-CALLS",
                    group=group,
                    source="billing_units",
                    **cover,
                )
            )
        if r["numbers"] and data["number_rental_price"]:
            out.append(
                Charge(
                    description=f"Number rental — {group}{prorated}",
                    quantity=Decimal(r["numbers"]),
                    unit_price=data["number_rental_price"],
                    unit="number",
                    product_code="BU-NUMBER",
                    group=group,
                    fraction=share,
                    source="billing_units",
                    **cover,
                )
            )
        if r["users"] and data["seat_price"]:
            out.append(
                Charge(
                    description=f"User seats — {group}{prorated}",
                    quantity=Decimal(r["users"]),
                    unit_price=data["seat_price"],
                    unit="seat",
                    product_code="BU-SEAT",
                    group=group,
                    fraction=share,
                    source="billing_units",
                    **cover,
                )
            )
    return out


def parse_period(args) -> tuple[date, date]:
    """``start``/``end`` (end exclusive) from request args; default: the current month."""
    from core.kit import PeriodError, parse_date

    today = date.today()
    try:
        start = (
            parse_date(args.get("start"), "start") if args.get("start") else today.replace(day=1)
        )
        if args.get("end"):
            end = parse_date(args.get("end"), "end")
        else:
            end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    except PeriodError as exc:
        raise ValidationFailed.field(exc.field or "start", str(exc)) from None
    if end <= start:
        raise ValidationFailed.field("end", "must be after start")
    return start, end
