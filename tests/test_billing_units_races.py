"""billing_units assignments under parallel callers (SQLite and PostgreSQL): each thread has
its own database connection and a barrier releases them together. One number is held by one
unit and one account, whoever races for it; replacing a unit's users at once from several
callers never fails or duplicates a row."""

from __future__ import annotations

import threading

import pytest

from core.errors import Conflict

CALLERS = 8


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
    """Customer A with three agents and two numbers."""
    a = world.customer_a
    agents = [world.add_user(a, f"agent{i}@example.com", role_code=None) for i in range(3)]
    n1 = units.create_number(world.user_a, a, {"e164": "+442079460001", "label": "Sales line"})
    n2 = units.create_number(world.user_a, a, {"e164": "+44 20 7946 0002"})
    return agents, n1, n2


def race(ctx, calls):
    """Run each of ``calls`` in its own thread with its own connection, released together;
    returns what each returned (or the exception it raised)."""
    from core.db import database

    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        with ctx.app_context(), database.connection_context():
            barrier.wait()
            try:
                results[index] = call()
            except Exception as exc:  # noqa: BLE001 - reported by the assertions
                results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a caller never returned"
    return results


def test_one_number_created_in_parallel_exists_once(world, units, ctx):
    from plugins.billing_units.models import PhoneNumber

    a = world.customer_a
    results = race(ctx, [lambda: units.create_number(world.user_a, a, {"e164": "+442079460077"})
                         for _ in range(CALLERS)])  # fmt: skip
    won = [r for r in results if isinstance(r, PhoneNumber)]
    lost = [r for r in results if not isinstance(r, PhoneNumber)]
    assert len(won) == 1, results
    assert all(isinstance(r, Conflict) for r in lost), results
    assert {r.message for r in lost} == {"e164: number +442079460077 already exists"}
    assert PhoneNumber.select().where(PhoneNumber.e164 == "+442079460077").count() == 1


def test_one_number_assigned_to_new_units_in_parallel_is_held_by_one(world, units, setup, ctx):
    """8 new units created at once, each asking for the same number: one unit gets it, the
    others are refused naming that unit and are not created."""
    from plugins.billing_units.models import BillingUnit, UnitNumber

    _, n1, _ = setup
    a = world.customer_a
    results = race(ctx, [lambda i=i: units.create_unit(world.user_a, a, {"name": f"Unit {i}",
                                                                          "number_ids": [n1.id]})
                         for i in range(CALLERS)])  # fmt: skip
    won = [r for r in results if isinstance(r, BillingUnit)]
    assert len(won) == 1, results
    lost = [r for r in results if not isinstance(r, BillingUnit)]
    assert all(isinstance(r, Conflict) for r in lost), results
    assert {r.message for r in lost} == {
        f"number +442079460001 is already assigned to billing unit '{won[0].name}'"
    }
    assert [u.name for u in BillingUnit.select()] == [won[0].name]
    assert UnitNumber.get(UnitNumber.number == n1.id).unit_id == won[0].id


def test_parallel_updates_of_one_unit_all_apply_without_duplicates(world, units, setup, ctx):
    """Replacing one unit's users, teams and numbers from 8 callers at once (the same lists):
    each call succeeds and the unit holds each user, team and number once."""
    from plugins.billing_units.models import UnitNumber, UnitTeam, UnitUser

    agents, n1, n2 = setup
    a = world.customer_a
    team = units.create_team(world.user_a, a, {"name": "Night", "user_ids": [agents[2].id]})
    unit = units.create_unit(world.user_a, a, {"name": "Sales"})
    payload = {"user_ids": [agents[0].id, agents[1].id], "team_ids": [team.id],
               "number_ids": [n1.id, n2.id]}  # fmt: skip
    results = race(ctx, [lambda: units.update_unit(world.user_a, unit, payload)
                         for _ in range(CALLERS)])  # fmt: skip
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.user_id for r in UnitUser.select()) == sorted([agents[0].id, agents[1].id])
    assert [r.team_id for r in UnitTeam.select()] == [team.id]
    assert sorted(r.number_id for r in UnitNumber.select()) == sorted([n1.id, n2.id])


def test_parallel_renames_to_one_name_one_wins(world, units, ctx):
    """8 units renamed to the same name at once: one is, the others are told it exists."""
    from plugins.billing_units.models import BillingUnit

    a = world.customer_a
    created = [units.create_unit(world.user_a, a, {"name": f"U{i}"}) for i in range(CALLERS)]
    results = race(ctx, [lambda u=u: units.update_unit(world.user_a, u, {"name": "Support"})
                         for u in created])  # fmt: skip
    won = [r for r in results if isinstance(r, BillingUnit)]
    assert len(won) == 1, results
    lost = [r for r in results if not isinstance(r, BillingUnit)]
    assert all(isinstance(r, Conflict) for r in lost), results
    assert {r.message for r in lost} == {"name: a billing unit named 'Support' already exists"}
    assert BillingUnit.select().where(BillingUnit.name == "Support").count() == 1


def test_parallel_member_updates_of_one_team_all_apply_without_duplicates(world, units, setup,
                                                                          ctx):  # fmt: skip
    from plugins.billing_units.models import TeamMember

    agents, _, _ = setup
    a = world.customer_a
    team = units.create_team(world.user_a, a, {"name": "Night"})
    ids = [agents[0].id, agents[2].id]
    results = race(ctx, [lambda: units.update_team(world.user_a, team, {"user_ids": ids})
                         for _ in range(CALLERS)])  # fmt: skip
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(m.user_id for m in TeamMember.select()) == sorted(ids)
