"""billing_units: models, services, privileges, report, charges, API (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import date, datetime
from decimal import Decimal

import pytest

from core.errors import Conflict, Forbidden, LicenseRequired, NotFound, ValidationFailed
from plugins.billing_units.service import report as unit_report

PERIOD = (date(2024, 5, 1), date(2024, 6, 1))


@pytest.fixture
def app(make_app):
    return make_app(plugins=["billing_units"])


@pytest.fixture
def units(world, install_license, ctx):
    """The plugin licensed and enabled; returns the services module."""
    install_license(["BH-UNITS"])
    ctx.extensions["billhive"].host.set_enabled("billing_units", True)
    from plugins.billing_units.service import units

    return units


@pytest.fixture
def setup(world, units):
    """Customer A with three agents, two numbers; customer B with one number."""
    a = world.customer_a
    agents = [world.add_user(a, f"agent{i}@example.com", role_code=None) for i in range(3)]
    n1 = units.create_number(world.user_a, a, {"e164": "+442079460001", "label": "Sales line"})
    n2 = units.create_number(world.user_a, a, {"e164": "+44 20 7946 0002"})
    nb = units.create_number(world.user_b, world.customer_b, {"e164": "+12025550100"})
    return agents, n1, n2, nb


def _call(ext, number, cost, when="2024-05-10T10:00:00", secs=60, **extra):
    return {
        "external_id": ext,
        "number": number,
        "started_at": when,
        "duration_seconds": secs,
        "cost": cost,
        **extra,
    }


# -- models and services -----------------------------------------------------------------------


def test_create_unit_with_users_team_and_numbers(world, units, setup):
    agents, n1, n2, _ = setup
    team = units.create_team(
        world.user_a, world.customer_a, {"name": "Night shift", "user_ids": [agents[2].id]}
    )
    unit = units.create_unit(
        world.user_a,
        world.customer_a,
        {
            "name": " Sales ",
            "user_ids": [agents[0].id],
            "team_ids": [team.id],
            "number_ids": [n1.id],
        },
    )
    assert unit.name == "Sales"
    assert [u.email for u in units.effective_users(unit)] == [
        "agent0@example.com",
        "agent2@example.com",
    ]
    assert [n.e164 for n in units.unit_numbers(unit)] == ["+442079460001"]
    assert n2.e164 == "+442079460002"
    from core.models import AuditEntry

    assert AuditEntry.select().where(AuditEntry.action == "billing_unit.create").count() == 1


def test_team_assignment_is_live(world, units, setup):
    """Assigning a team assigns its current members: who joins later counts, who leaves
    no longer does; users assigned directly stay."""
    agents, *_ = setup
    team = units.create_team(
        world.user_a, world.customer_a, {"name": "Support", "user_ids": [agents[0].id]}
    )
    unit = units.create_unit(
        world.user_a,
        world.customer_a,
        {"name": "Support", "team_ids": [team.id], "user_ids": [agents[2].id]},
    )
    assert {u.id for u in units.effective_users(unit)} == {agents[0].id, agents[2].id}
    units.update_team(world.user_a, team, {"user_ids": [agents[1].id]})
    assert {u.id for u in units.effective_users(unit)} == {agents[1].id, agents[2].id}
    units.delete_team(world.user_a, team)
    assert {u.id for u in units.effective_users(unit)} == {agents[2].id}


def test_a_user_may_be_in_several_units_a_number_in_one(world, units, setup):
    agents, n1, n2, _ = setup
    sales = units.create_unit(
        world.user_a,
        world.customer_a,
        {"name": "Sales", "user_ids": [agents[0].id], "number_ids": [n1.id]},
    )
    units.create_unit(
        world.user_a, world.customer_a, {"name": "Support", "user_ids": [agents[0].id]}
    )
    with pytest.raises(Conflict) as err:
        units.create_unit(
            world.user_a, world.customer_a, {"name": "Billing", "number_ids": [n1.id, n2.id]}
        )
    assert "number +442079460001 is already assigned to billing unit 'Sales'" in err.value.message
    assert units.unit_numbers(sales) == [n1]
    # the failed create left nothing behind
    assert [u.name for u in units.units_of(world.customer_a)] == ["Sales", "Support"]


def test_the_database_refuses_a_second_unit_for_a_number(world, units, setup):
    import peewee as pw

    from core.db import database
    from plugins.billing_units.models import BillingUnit, UnitNumber

    _, n1, *_ = setup
    u1 = units.create_unit(world.user_a, world.customer_a, {"name": "One", "number_ids": [n1.id]})
    u2 = BillingUnit.create(account=world.customer_a, name="Two")
    with pytest.raises(pw.IntegrityError), database.atomic():
        UnitNumber.create(unit=u2, number=n1)
    assert UnitNumber.get(UnitNumber.number == n1).unit_id == u1.id


def test_delete_unit_releases_its_numbers(world, units, setup):
    _, n1, n2, _ = setup
    unit = units.create_unit(
        world.user_a, world.customer_a, {"name": "Sales", "number_ids": [n1.id, n2.id]}
    )
    assert units.available_numbers(world.customer_a) == []
    units.delete_unit(world.user_a, unit)
    assert {n.id for n in units.available_numbers(world.customer_a)} == {n1.id, n2.id}
    other = units.create_unit(
        world.user_a, world.customer_a, {"name": "Other", "number_ids": [n1.id]}
    )
    assert units.unit_numbers(other) == [n1]


@pytest.mark.parametrize("bad", ["+0441234", "442079460000", "+44207946000012345", "+44abc", ""])
def test_bad_e164_is_refused(world, units, bad):
    with pytest.raises(ValidationFailed) as err:
        units.create_number(world.user_a, world.customer_a, {"e164": bad})
    assert "e164" in err.value.errors


def test_duplicate_number_is_refused(world, units, setup):
    with pytest.raises(Conflict):
        units.create_number(world.user_b, world.customer_b, {"e164": "+442079460001"})


def test_empty_and_reserved_names_are_refused(world, units):
    for name in ["", "   "]:
        with pytest.raises(ValidationFailed) as err:
            units.create_unit(world.user_a, world.customer_a, {"name": name})
        assert err.value.errors == {"name": ["must not be empty"]}
    with pytest.raises(ValidationFailed) as err:
        units.create_unit(world.user_a, world.customer_a, {"name": "Unassigned"})
    assert "reserved" in err.value.errors["name"][0]
    units.create_unit(world.user_a, world.customer_a, {"name": "Sales"})
    with pytest.raises(Conflict):
        units.create_unit(world.user_a, world.customer_a, {"name": "Sales"})


def test_a_number_or_user_of_another_account_is_refused(world, units, setup):
    _, _, _, nb = setup
    with pytest.raises(ValidationFailed) as err:
        units.create_unit(world.user_a, world.customer_a, {"name": "Sales", "number_ids": [nb.id]})
    assert "number_ids" in err.value.errors
    assert nb.e164 not in err.value.message  # never reveals another tenant's number
    with pytest.raises(ValidationFailed) as err:
        units.create_unit(
            world.user_a, world.customer_a, {"name": "Sales", "user_ids": [world.user_b.id]}
        )
    assert "user_ids" in err.value.errors


def test_outside_the_subtree_is_404(world, units, setup):
    from plugins.billing_units.models import BillingUnit

    unit_b = units.create_unit(world.user_b, world.customer_b, {"name": "B unit"})
    with pytest.raises(NotFound):
        units.get_object(BillingUnit, world.user_a, unit_b.id)
    with pytest.raises(NotFound):
        units.account_for(world.user_a, world.customer_b.id)
    with pytest.raises(NotFound):
        units.require_view(world.user_a, world.customer_b)


def _limited_user(world, codes, email):
    from core import roles

    role = roles.create_role(
        None, world.customer_a, {"name": email, "description": "limited", "privileges": list(codes)}
    )
    return world.add_user(world.customer_a, email, role_code=None, roles=[role])


def test_view_billing_unit_alone_reads_but_never_changes(world, units, setup):
    """The document: the Billing units tab needs "one or both of the View Billing unit and
    Edit Billing unit privileges" (not Edit Billing); View alone is read-only."""
    agents, n1, *_ = setup
    unit = units.create_unit(
        world.user_a, world.customer_a, {"name": "Sales", "number_ids": [n1.id]}
    )
    viewer = _limited_user(world, ["billing_units.view"], "viewer@example.com")
    data = unit_report.for_period(viewer, world.customer_a, PERIOD)
    assert [r["unit"] for r in data["units"]] == ["Sales", "Unassigned"]
    for change in (
        lambda: units.create_unit(viewer, world.customer_a, {"name": "Mine"}),
        lambda: units.update_unit(viewer, unit, {"name": "Renamed"}),
        lambda: units.delete_unit(viewer, unit),
        lambda: units.create_team(viewer, world.customer_a, {"name": "T"}),
        lambda: units.create_number(viewer, world.customer_a, {"e164": "+15550001111"}),
        lambda: units.update_settings(viewer, world.customer_a, {"seat_price": "1"}),
    ):
        with pytest.raises(Forbidden):
            change()
    assert [u.name for u in units.units_of(world.customer_a)] == ["Sales"]
    editor = _limited_user(world, ["billing_units.edit"], "editor@example.com")
    assert units.create_unit(editor, world.customer_a, {"name": "Support"}).name == "Support"
    billing_only = _limited_user(world, ["billing.edit"], "billing@example.com")
    with pytest.raises(Forbidden):
        unit_report.for_period(billing_only, world.customer_a, PERIOD)


def test_licence_gone_refuses_new_units_but_data_stays(world, units, setup, install_license):
    units.create_unit(world.user_a, world.customer_a, {"name": "Sales"})
    install_license(["SOMETHING-ELSE"])
    with pytest.raises(LicenseRequired) as err:
        units.create_unit(world.user_a, world.customer_a, {"name": "New"})
    assert "BH-UNITS" in err.value.message
    assert [u.name for u in units.units_of(world.customer_a)] == ["Sales"]
    assert (
        unit_report.for_period(world.user_a, world.customer_a, PERIOD)["units"][0]["unit"]
        == "Sales"
    )


# -- concurrency -------------------------------------------------------------------------------


def test_two_concurrent_assignments_of_one_number_one_wins(world, units, setup, ctx):
    """Two threads, each with its own database connection, assign the same number to two
    units at once: exactly one succeeds, the other is told which unit holds it."""
    from core.db import database
    from plugins.billing_units.models import BillingUnit, UnitNumber

    _, n1, *_ = setup
    sales = units.create_unit(world.user_a, world.customer_a, {"name": "Sales"})
    support = units.create_unit(world.user_a, world.customer_a, {"name": "Support"})
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def assign(unit_id, key):
        with ctx.app_context(), database.connection_context():
            unit = BillingUnit.get_by_id(unit_id)
            barrier.wait()
            try:
                units.update_unit(None, unit, {"number_ids": [n1.id]})
                results[key] = "ok"
            except Conflict as exc:
                results[key] = exc
            except Exception as exc:  # noqa: BLE001 - reported by the assertion
                results[key] = exc

    threads = [
        threading.Thread(target=assign, args=(sales.id, "Sales")),
        threading.Thread(target=assign, args=(support.id, "Support")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [k for k, v in results.items() if v == "ok"]
    losers = {k: v for k, v in results.items() if v != "ok"}
    assert len(winners) == 1, results
    ((loser, exc),) = losers.items()
    assert isinstance(exc, Conflict), repr(exc)
    assert exc.message == f"number +442079460001 is already assigned to billing unit '{winners[0]}'"
    holder = UnitNumber.get(UnitNumber.number == n1.id)
    assert holder.unit.name == winners[0]


# -- calls, report, charges --------------------------------------------------------------------


@pytest.fixture
def billed(world, units, setup):
    """Sales holds n1 and two users (one through a team); n2 is in no unit."""
    agents, n1, n2, _ = setup
    team = units.create_team(
        world.user_a, world.customer_a, {"name": "Team", "user_ids": [agents[1].id]}
    )
    units.create_unit(
        world.user_a,
        world.customer_a,
        {"name": "Sales", "user_ids": [agents[0].id], "team_ids": [team.id], "number_ids": [n1.id]},
    )
    units.create_unit(
        world.user_a, world.customer_a, {"name": "Support", "user_ids": [agents[0].id]}
    )
    units.update_settings(  # the seller's prices (billing terms)
        world.operator, world.customer_a, {"number_rental_price": "2.50", "seat_price": "10.005"}
    )
    result = units.add_calls(
        world.user_a,
        world.customer_a,
        [
            _call("c1", "+442079460001", "0.42", user_email="agent0@example.com"),
            _call("c2", "+442079460001", "1.10", secs=125),
            _call("c3", "+442079460002", "0.07"),
            _call("c4", "+442079460002", "3.00", when="2024-06-01T00:00:00"),  # next period
            _call("c5", "+442079460001", "5.00", when="2024-04-30T23:59:59"),  # previous period
        ],
    )
    assert result == {"received": 5, "created": 5, "duplicates": 0}
    return agents, n1, n2


def test_the_rating_totals_equal_the_sum_of_the_records(world, units, billed):
    """What a bill run invoices (compute_report, billed by charges_for_period)."""
    from plugins.billing_units.models import CallRecord

    data = units.compute_report(world.customer_a, PERIOD)
    rows = {r["unit"]: r for r in data["units"]}
    assert list(rows) == ["Sales", "Support", "Unassigned"]
    assert rows["Sales"]["usage"] == 152 and rows["Sales"]["calls"] == 2
    assert rows["Unassigned"]["usage"] == 7 and rows["Unassigned"]["calls"] == 1
    assert rows["Support"]["usage"] == 0
    lo, hi = (datetime(2024, 5, 1), datetime(2024, 6, 1))
    in_period = CallRecord.select().where(CallRecord.started_at >= lo, CallRecord.started_at < hi)
    assert data["totals"]["usage"] == sum(c.cost for c in in_period) == 159
    assert data["totals"]["calls"] == in_period.count()
    # recurring: n1 in Sales, n2 Unassigned; seats: agent0+agent1 Sales (first by name),
    # agent2 and user_a Unassigned; each seat 10.005 -> 2 seats = 20.01
    assert (rows["Sales"]["numbers"], rows["Unassigned"]["numbers"]) == (1, 1)
    assert (rows["Sales"]["users"], rows["Support"]["users"], rows["Unassigned"]["users"]) == (
        2,
        0,
        2,
    )
    assert rows["Sales"]["rental"] == 250 and rows["Sales"]["seats"] == 2001
    assert data["totals"]["total"] == sum(r["total"] for r in data["units"])
    assert data["totals"]["numbers"] == 2 and data["totals"]["users"] == 4


def test_call_import_is_idempotent_and_all_or_nothing(world, units, billed):
    again = units.add_calls(
        world.user_a,
        world.customer_a,
        [_call("c1", "+442079460001", "0.42"), _call("c9", "+442079460002", "1")],
    )
    assert again == {"received": 2, "created": 1, "duplicates": 1}
    with pytest.raises(ValidationFailed) as err:
        units.add_calls(
            world.user_a,
            world.customer_a,
            [
                _call("x1", "+442079460001", "1"),
                _call("x2", "+12025550100", "1"),
                _call("x3", "+442079460001", "0.001"),
            ],
        )
    assert set(err.value.errors["records"]) == {"1", "2"}
    from plugins.billing_units.models import CallRecord

    assert not CallRecord.select().where(CallRecord.external_id == "x1").exists()


def test_csv_import_and_export(world, units, billed):
    text = (
        "external_id,number,user_email,started_at,duration_seconds,cost,currency\n"
        "k1,+442079460001,agent0@example.com,2024-05-02T08:00:00,30,0.10,EUR\n"
        "k2,+442079460002,,2024-05-02T09:00:00,45,0.20,\n"
    )
    assert units.import_calls_csv(None, world.customer_a, text)["created"] == 2
    assert units.import_calls_csv(None, world.customer_a, text)["created"] == 0
    with pytest.raises(ValidationFailed) as err:
        units.import_calls_csv(None, world.customer_a, text.replace("k2,+4420", "k3,+0020"))
    assert "line 3" in err.value.message
    csv_text = unit_report.as_csv(unit_report.for_period(world.user_a, world.customer_a, PERIOD))
    lines = csv_text.splitlines()
    assert lines[0] == ("unit,numbers,seats_billed,calls,number_rental,seats,recording_storage,"
                        "total,credited_included,currency")  # fmt: skip
    assert lines[1] == "Sales,0,0,0.00,0.00,0.00,0.00,0.00,0.00,EUR"  # nothing invoiced yet
    assert lines[-1].startswith("TOTAL,")


def test_cli_import_calls(world, units, billed, tmp_path, monkeypatch, ctx):
    from click.testing import CliRunner

    import hostapp.cli as cli

    monkeypatch.setattr(cli, "_app", ctx)
    path = tmp_path / "calls.csv"
    path.write_text(
        "external_id,number,started_at,duration_seconds,cost\n"
        "z1,+442079460001,2024-05-03T08:00:00,30,0.10\n"
    )
    result = CliRunner().invoke(
        cli.main, ["units", "import-calls", str(path), "--account", str(world.customer_a.id)]
    )
    assert result.exit_code == 0, result.output
    assert "1 call record(s) imported" in result.output


def test_charges_for_period_are_grouped_by_unit(world, units, billed, ctx):
    from core.billing.money import line_amount
    from core.registry import Charge

    host = ctx.extensions["billhive"].host
    lists = host.call("charges_for_period", account=world.customer_a, period=PERIOD)
    charges = [c for lst in lists for c in lst]
    assert all(isinstance(c, Charge) for c in charges)
    groups = {}
    for c in charges:
        groups.setdefault(c.group, 0)
        groups[c.group] += line_amount(c.quantity, c.unit_price, "EUR")
    data = units.compute_report(world.customer_a, PERIOD)
    assert groups == {r["unit"]: r["total"] for r in data["units"] if r["total"]}
    assert "Unassigned" in groups
    assert sum(groups.values()) == data["totals"]["total"]
    # an account without units or calls gets nothing
    assert host.call("charges_for_period", account=world.customer_b, period=PERIOD) == [[]]


def test_recurring_prices_are_validated(world, units):
    with pytest.raises(ValidationFailed) as err:
        units.update_settings(world.operator, world.customer_a, {"seat_price": "abc"})
    assert "seat_price" in err.value.errors
    with pytest.raises(ValidationFailed):
        units.update_settings(world.operator, world.customer_a, {"number_rental_price": "-1"})
    assert units.settings_for(world.customer_a).seat_price == Decimal(0)
