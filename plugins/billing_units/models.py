"""Tables of the billing_units plugin (named billing_units_*). Every change here needs a step in
migrations.py.

A phone number is in at most one billing unit: ``UnitNumber.number`` carries a UNIQUE index,
so two concurrent assignments of the same number cannot both commit, whatever the code above
does. Users (directly or through teams) may be in several units.
"""

from __future__ import annotations

import peewee as pw

from core.kit import (
    Account,
    BaseModel,
    DecimalTextField,
    MinorUnitsField,
    UsageRecord,
    User,
    utcnow,
)


class Team(BaseModel):
    """A named group of users of one account. Assigning a team to a unit is *live*: the
    unit counts the team's members at the time of asking, so later joins and leaves apply."""

    account = pw.ForeignKeyField(Account, backref="bu_teams", on_delete="CASCADE")
    name = pw.CharField(max_length=200)

    class Meta:
        table_name = "billing_units_team"
        indexes = ((("account", "name"), True),)


class TeamMember(BaseModel):
    team = pw.ForeignKeyField(Team, backref="members", on_delete="CASCADE")
    user = pw.ForeignKeyField(User, backref="bu_team_links", on_delete="CASCADE")

    class Meta:
        table_name = "billing_units_team_member"
        indexes = ((("team", "user"), True),)


class PhoneNumber(BaseModel):
    account = pw.ForeignKeyField(Account, backref="bu_numbers", on_delete="CASCADE")
    e164 = pw.CharField(max_length=16, unique=True)
    label = pw.CharField(max_length=200, default="")

    class Meta:
        table_name = "billing_units_phone_number"


class BillingUnit(BaseModel):
    account = pw.ForeignKeyField(Account, backref="bu_units", on_delete="CASCADE")
    name = pw.CharField(max_length=200)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "billing_units_unit"
        indexes = ((("account", "name"), True),)


class UnitUser(BaseModel):
    unit = pw.ForeignKeyField(BillingUnit, backref="user_links", on_delete="CASCADE")
    user = pw.ForeignKeyField(User, backref="bu_unit_links", on_delete="CASCADE")

    class Meta:
        table_name = "billing_units_unit_user"
        indexes = ((("unit", "user"), True),)


class UnitTeam(BaseModel):
    unit = pw.ForeignKeyField(BillingUnit, backref="team_links", on_delete="CASCADE")
    team = pw.ForeignKeyField(Team, backref="unit_links", on_delete="CASCADE")

    class Meta:
        table_name = "billing_units_unit_team"
        indexes = ((("unit", "team"), True),)


class UnitNumber(BaseModel):
    unit = pw.ForeignKeyField(BillingUnit, backref="number_links", on_delete="CASCADE")
    # UNIQUE: a number belongs to at most one billing unit (the database enforces it)
    number = pw.ForeignKeyField(PhoneNumber, backref="unit_link", on_delete="CASCADE", unique=True)

    class Meta:
        table_name = "billing_units_unit_number"


class CallRecord(BaseModel):
    """A rated call: its cost is already priced (minor units + currency)."""

    account = pw.ForeignKeyField(Account, backref="bu_calls", on_delete="CASCADE")
    external_id = pw.CharField(max_length=200)
    number = pw.ForeignKeyField(PhoneNumber, backref="calls", on_delete="RESTRICT")
    user = pw.ForeignKeyField(User, null=True, backref="bu_calls", on_delete="SET NULL")
    started_at = pw.DateTimeField(index=True)
    duration_seconds = pw.IntegerField()
    cost = MinorUnitsField()
    currency = pw.CharField(max_length=3)

    class Meta:
        table_name = "billing_units_call_record"
        indexes = ((("account", "external_id"), True), (("account", "started_at"), False))


class UnitSettings(BaseModel):
    """Per-account prices of recurring charges, major units as exact decimal text."""

    account = pw.ForeignKeyField(Account, unique=True, on_delete="CASCADE")
    number_rental_price = DecimalTextField(default="0")
    seat_price = DecimalTextField(default="0")

    class Meta:
        table_name = "billing_units_settings"


class RecordingStorage(BaseModel):
    """Call-recording storage used on one day by the recordings of one number, as the recorder
    reports it (idempotent by ``external_id`` per account). ``unit_name`` is the unit holding
    the number when the record arrived (the report allocates the storage line by it); the
    record is billed through the core usage record ``usage`` it created, rated by the seller's
    recording-storage plan like any other usage (``plugins.billing_units.service.recording``)."""

    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    external_id = pw.CharField(max_length=100)
    day = pw.DateField()
    number = pw.ForeignKeyField(PhoneNumber, backref="+", on_delete="RESTRICT")
    unit_name = pw.CharField(max_length=200)
    gigabytes = DecimalTextField()
    usage = pw.ForeignKeyField(UsageRecord, backref="+", on_delete="RESTRICT")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "billing_units_recording_storage"
        indexes = ((("account", "external_id"), True), (("account", "day"), False))


class RecordingRetention(BaseModel):
    """How many days call recordings are kept, from ``effective_from`` on (a history: the
    latest row in force applies). A change takes effect on the first day not invoiced yet,
    so it never reaches back into a billed period."""

    account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
    days = pw.IntegerField()
    effective_from = pw.DateField()
    changed_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "billing_units_recording_retention"
        indexes = ((("account", "effective_from"), False),)


MODELS = [
    Team,
    TeamMember,
    PhoneNumber,
    BillingUnit,
    UnitUser,
    UnitTeam,
    UnitNumber,
    CallRecord,
    UnitSettings,
    RecordingStorage,
    RecordingRetention,
]
