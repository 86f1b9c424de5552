"""How the billing_units tables came to be, one step per change, applied in order by the core.

Never edit a released step: append a new one (``billhive migrate --draft billing_units``
prints the step that turns the tables into the current models).

1. the tables as release 0.1.0 made them (``bu_*``), from frozen copies of the models; on an
   install whose tables the plugin made before it declared migrations, nothing changes;
2. the tables carry the plugin's name (``bu_team`` -> ``billing_units_team`` ...), with their
   indexes; rows and keys stay.
"""

from __future__ import annotations

import peewee as pw

from core.kit import Account, UsageRecord, User, migrations

#: release 0.1.0's table names, in the order they were created (parents first)
OLD_TABLES = (
    "bu_team",
    "bu_team_member",
    "bu_phone_number",
    "bu_unit",
    "bu_unit_user",
    "bu_unit_team",
    "bu_unit_number",
    "bu_call_record",
    "bu_settings",
    "bu_recording_storage",
    "bu_recording_retention",
)


def create_tables(migrator):
    """0.1.0: the tables as they were then (kept if they exist already)."""

    class Frozen(pw.Model):
        class Meta:
            database = migrator.database
            legacy_table_names = False  # as core.db.BaseModel: index names start with the table

    class Team(Frozen):
        account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
        name = pw.CharField(max_length=200)

        class Meta:
            table_name = "bu_team"
            indexes = ((("account", "name"), True),)

    class TeamMember(Frozen):
        team = pw.ForeignKeyField(Team, backref="+", on_delete="CASCADE")
        user = pw.ForeignKeyField(User, backref="+", on_delete="CASCADE")

        class Meta:
            table_name = "bu_team_member"
            indexes = ((("team", "user"), True),)

    class PhoneNumber(Frozen):
        account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
        e164 = pw.CharField(max_length=16, unique=True)
        label = pw.CharField(max_length=200)

        class Meta:
            table_name = "bu_phone_number"

    class BillingUnit(Frozen):
        account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
        name = pw.CharField(max_length=200)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "bu_unit"
            indexes = ((("account", "name"), True),)

    class UnitUser(Frozen):
        unit = pw.ForeignKeyField(BillingUnit, backref="+", on_delete="CASCADE")
        user = pw.ForeignKeyField(User, backref="+", on_delete="CASCADE")

        class Meta:
            table_name = "bu_unit_user"
            indexes = ((("unit", "user"), True),)

    class UnitTeam(Frozen):
        unit = pw.ForeignKeyField(BillingUnit, backref="+", on_delete="CASCADE")
        team = pw.ForeignKeyField(Team, backref="+", on_delete="CASCADE")

        class Meta:
            table_name = "bu_unit_team"
            indexes = ((("unit", "team"), True),)

    class UnitNumber(Frozen):
        unit = pw.ForeignKeyField(BillingUnit, backref="+", on_delete="CASCADE")
        number = pw.ForeignKeyField(PhoneNumber, backref="+", on_delete="CASCADE", unique=True)

        class Meta:
            table_name = "bu_unit_number"

    class CallRecord(Frozen):
        account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
        external_id = pw.CharField(max_length=200)
        number = pw.ForeignKeyField(PhoneNumber, backref="+", on_delete="RESTRICT")
        user = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
        started_at = pw.DateTimeField(index=True)
        duration_seconds = pw.IntegerField()
        cost = pw.BigIntegerField()  # minor units
        currency = pw.CharField(max_length=3)

        class Meta:
            table_name = "bu_call_record"
            indexes = ((("account", "external_id"), True), (("account", "started_at"), False))

    class UnitSettings(Frozen):
        account = pw.ForeignKeyField(Account, unique=True, on_delete="CASCADE")
        number_rental_price = pw.TextField()  # exact decimal text
        seat_price = pw.TextField()

        class Meta:
            table_name = "bu_settings"

    class RecordingStorage(Frozen):
        account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
        external_id = pw.CharField(max_length=100)
        day = pw.DateField()
        number = pw.ForeignKeyField(PhoneNumber, backref="+", on_delete="RESTRICT")
        unit_name = pw.CharField(max_length=200)
        gigabytes = pw.TextField()
        usage = pw.ForeignKeyField(UsageRecord, backref="+", on_delete="RESTRICT")
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "bu_recording_storage"
            indexes = ((("account", "external_id"), True), (("account", "day"), False))

    class RecordingRetention(Frozen):
        account = pw.ForeignKeyField(Account, backref="+", on_delete="CASCADE")
        days = pw.IntegerField()
        effective_from = pw.DateField()
        changed_by = pw.ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "bu_recording_retention"
            indexes = ((("account", "effective_from"), False),)

    migrator.database.create_tables(
        [Team, TeamMember, PhoneNumber, BillingUnit, UnitUser, UnitTeam, UnitNumber,
         CallRecord, UnitSettings, RecordingStorage, RecordingRetention], safe=True,
    )  # fmt: skip


def tables_carry_the_plugin_name(migrator):
    """0.2.0: ``bu_*`` -> ``billing_units_*`` (the host requires the plugin's name first)."""
    for old in OLD_TABLES:
        migrations.rename_table(migrator, old, "billing_units_" + old.removeprefix("bu_"))


MIGRATIONS = [(1, create_tables), (2, tables_carry_the_plugin_name)]
