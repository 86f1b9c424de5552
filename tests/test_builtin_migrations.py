"""Built-in plugins declare MIGRATIONS: enabling one makes its tables, named after the plugin,
through its steps; an install made before they carried the plugin's name (``bu_*``,
``reseller_*``: tables made straight from the models, no migration history) is adopted and
renamed by ``billhive migrate``, keeping every row, key and index (SQLite and PostgreSQL);
the placeholder subscriptions reseller_accounts 0.1.0 wrote into the core's table go."""

from __future__ import annotations

from decimal import Decimal

import peewee as pw
import pytest

from core import migrations
from core.billing.models import Subscription
from core.db import is_postgres
from core.models import Account, PluginState
from plugins.reseller_accounts.migrations import ANCHOR
from tests.billing_support import setup_catalog
from tests.conftest import World

RENAMED = {
    "billing_units": {old: "billing_units_" + old[3:] for old in (
        "bu_team", "bu_team_member", "bu_phone_number", "bu_unit", "bu_unit_user",
        "bu_unit_team", "bu_unit_number", "bu_call_record", "bu_settings",
        "bu_recording_storage", "bu_recording_retention")},
    "reseller_accounts": {
        "reseller_settings": "reseller_accounts_settings",
        "reseller_wholesale_link": "reseller_accounts_wholesale_link",
    },
}  # fmt: skip


STEPS = {"billing_units": [1, 2], "reseller_accounts": [1, 2, 3]}


def _host(app):
    return app.extensions["billhive"].host


def _model_indexes(model) -> set[str]:
    return {index._name for index in model._meta.fields_to_index()}


def _table_indexes(db, table) -> set[str]:
    return {i.name for i in db.get_indexes(table) if not i.name.endswith("_pkey")}


@pytest.mark.parametrize("plugin", sorted(RENAMED))
def test_enabling_makes_the_tables_through_the_migrations_and_they_match_the_models(
    make_app, plugin, install_license
):
    app = make_app(plugins=[plugin])
    db = app.extensions["billhive"].database
    with app.app_context(), db.connection_context():
        install_license(["BH-UNITS", "FT-3001.007"])
        host = _host(app)
        host.set_enabled(plugin, True)
        assert [m.version for m in migrations.history(plugin)] == STEPS[plugin]
        [plan] = migrations.plan(host)
        assert plan.pending == [] and plan.drift == ""
        for model in host.get(plugin).module.MODELS:
            assert model._meta.table_name.startswith(plugin + "_")
            assert _table_indexes(db, model._meta.table_name) == _model_indexes(model)
        for old in RENAMED[plugin]:
            assert not db.table_exists(old)


def _insert(db, table, **values) -> int:
    t = pw.Table(table, ("id", *values)).bind(db)
    t.insert(values).execute()
    return t.select(t.id).order_by(t.id.desc()).limit(1).scalar()


def _as_the_old_release_left_it(app, db) -> dict:
    """Both plugins enabled, their tables under the old names (made by the models of then:
    step 1 is their frozen copy), rows in them, no migration history."""
    from playhouse.migrate import SchemaMigrator

    from plugins.billing_units import migrations as units_steps
    from plugins.reseller_accounts import migrations as reseller_steps

    world = World()
    migrator = SchemaMigrator.from_database(db)
    units_steps.create_tables(migrator)
    reseller_steps.create_tables(migrator)
    for name in RENAMED:
        PluginState.create(name=name, enabled=True)
    now = "2024-05-01 10:00:00"
    a = world.customer_a.id
    team = _insert(db, "bu_team", account_id=a, name="Night shift")
    _insert(db, "bu_team_member", team_id=team, user_id=world.user_a.id)
    number = _insert(db, "bu_phone_number", account_id=a, e164="+4930123456", label="Desk")
    unit = _insert(db, "bu_unit", account_id=a, name="Sales", created_at=now)
    _insert(db, "bu_unit_number", unit_id=unit, number_id=number)
    _insert(db, "bu_unit_team", unit_id=unit, team_id=team)
    _insert(db, "bu_call_record", account_id=a, external_id="c-1", number_id=number,
            user_id=world.user_a.id, started_at=now, duration_seconds=90, cost=123,
            currency="EUR")  # fmt: skip
    _insert(db, "bu_settings", account_id=a, number_rental_price="2.50", seat_price="9.99")
    _insert(db, "reseller_settings", provider_id=world.provider.id, allow_sub_resellers=True,
            changed_at=now)  # fmt: skip
    # 0.1.0 gave a reseller an "anchor" subscription in the core's table (active no day)
    reseller = world.customer_b
    Account.update(type="reseller").where(Account.id == reseller.id).execute()
    _, plan = setup_catalog(world.provider, code="WS")
    anchored = {"plan": plan, "quantity": 0, "external_id": ANCHOR}
    Subscription.create(account=reseller, start="2024-01-15", end="2024-01-15", **anchored)
    # a customer's subscription that happens to carry that external id is not one
    kept = Subscription.create(account=world.customer_a, start="2024-01-01", **anchored)
    return {"world": world, "number": number, "unit": unit, "kept": kept.id}


def test_an_install_with_the_old_table_names_is_upgraded_keeping_its_data(make_app):
    old = make_app(plugins=list(RENAMED))
    db = old.extensions["billhive"].database
    with old.app_context(), db.connection_context():
        made = _as_the_old_release_left_it(old, db)
    db.close()

    new = make_app(plugins=list(RENAMED))  # the upgraded release starts: nothing applied yet
    db = new.extensions["billhive"].database
    with new.app_context(), db.connection_context():
        assert db.table_exists("bu_unit") and not db.table_exists("billing_units_unit")
        applied = migrations.migrate_enabled(_host(new))  # what `billhive migrate` does
        assert {p: [s.version for s in steps] for p, steps in applied.items()} == {
            "billing_units": [1, 2],
            "reseller_accounts": [1, 2, 3],
        }
        from plugins.billing_units.models import (
            BillingUnit,
            CallRecord,
            PhoneNumber,
            Team,
            UnitNumber,
            UnitSettings,
        )
        from plugins.reseller_accounts.models import ResellerSettings

        host = _host(new)
        for plugin, tables in RENAMED.items():
            for old_name, new_name in tables.items():
                assert not db.table_exists(old_name) and db.table_exists(new_name)
            for model in host.get(plugin).module.MODELS:
                table = model._meta.table_name
                assert _table_indexes(db, table) == _model_indexes(model)
                assert all(i.name.startswith(table) for i in db.get_indexes(table))
        if is_postgres():  # sequences and constraints follow their table's name
            left = db.execute_sql(
                "SELECT relname FROM pg_class WHERE relname LIKE 'bu\\_%%' OR relname LIKE "
                "'reseller\\_settings%%' OR relname LIKE 'reseller\\_wholesale%%' UNION "
                "SELECT conname FROM pg_constraint WHERE conname LIKE 'bu\\_%%'"
            ).fetchall()
            assert left == []
        assert {p.plugin: (p.pending, p.drift) for p in migrations.plan(host)} == {
            "billing_units": ([], ""),
            "reseller_accounts": ([], ""),
        }
        unit = BillingUnit.get_by_id(made["unit"])
        assert unit.name == "Sales" and unit.account_id == made["world"].customer_a.id
        assert [t.name for t in Team.select()] == ["Night shift"]
        [call] = CallRecord.select()
        assert (call.external_id, call.cost, call.number_id) == ("c-1", 123, made["number"])
        assert UnitSettings.get().seat_price == Decimal("9.99")
        assert ResellerSettings.get().allow_sub_resellers is True
        # the anchors are gone from the core's subscriptions, nothing else
        left = Subscription.select().where(Subscription.external_id == ANCHOR)
        assert [s.id for s in left] == [made["kept"]]
        # keys and unique indexes still hold under the new names; ids go on from the old ones
        with pytest.raises(pw.IntegrityError), db.atomic():
            UnitNumber.create(unit=BillingUnit.create(account=unit.account, name="Support"),
                              number=made["number"])  # fmt: skip
        second = PhoneNumber.create(account=unit.account, e164="+4930999999")
        assert second.id > made["number"]
        with pytest.raises(pw.IntegrityError), db.atomic():
            PhoneNumber.create(account=unit.account, e164="+4930999999")
