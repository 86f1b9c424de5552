"""The billing-unit report reads the invoices (issue 20 item 7): a unit's cost for a period is
the period's invoiced charges allocated to it, so the report's total equals what the account
was billed for those charges, through later reassignments, renames, price changes, credit
notes and voids (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import Forbidden
from plugins.billing_units.service import report as unit_report

NOV = (date(2026, 11, 1), date(2026, 12, 1))


@pytest.fixture
def app(make_app):
    return make_app(plugins=["billing_units"])


@pytest.fixture
def units(world, install_license, ctx, monkeypatch):
    """The plugin licensed and enabled, today 1 December 2026, the customers created in
    November (so the bill run of 1 December bills November)."""
    from core import clock
    from core.models import Account

    install_license(["BH-UNITS"])
    ctx.extensions["billhive"].host.set_enabled("billing_units", True)
    monkeypatch.setattr(clock, "today", lambda: date(2026, 12, 1))
    Account.update(created_at="2026-11-01 00:00:00").execute()
    from plugins.billing_units.service import units

    return units


def _calls(number, costs, day="2026-11-10"):
    return [{"external_id": f"{number}-{i}", "number": number, "started_at": f"{day}T10:00:00",
             "duration_seconds": 60, "cost": cost} for i, cost in enumerate(costs)]  # fmt: skip


def _unit_lines(account):
    from core.billing.models import Invoice, InvoiceLine

    return list(
        InvoiceLine.select()
        .join(Invoice)
        .where(
            (Invoice.account == account.id)
            & (Invoice.kind == "invoice")
            & (Invoice.status != "void")
            & (InvoiceLine.source == "billing_units")
        )
    )


def _by_group(lines) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in lines:
        out[line.group] = out.get(line.group, 0) + line.amount
    return out


def test_the_report_is_what_was_invoiced_whatever_changed_since(world, units):
    from core.billing.invoicing import lifecycle
    from core.billing.models import Invoice
    from core.billing.runs import engine

    acc = world.customer_a
    agent = world.add_user(acc, "agent@example.com", role_code=None)
    n1 = units.create_number(None, acc, {"e164": "+442079460001"})
    n2 = units.create_number(None, acc, {"e164": "+442079460002"})
    units.create_number(None, acc, {"e164": "+442079460003"})  # in no unit
    team = units.create_team(None, acc, {"name": "Night", "user_ids": [agent.id]})
    sales = units.create_unit(
        None, acc, {"name": "Sales", "user_ids": [world.user_a.id], "number_ids": [n1.id]}
    )
    units.create_unit(None, acc, {"name": "Support", "team_ids": [team.id], "number_ids": [n2.id]})
    units.update_settings(None, acc, {"number_rental_price": "2.50", "seat_price": "10.005"})
    units.add_calls(None, acc, _calls("+442079460001", ["0.42", "1.10"])
                    + _calls("+442079460002", ["3.00"]) + _calls("+442079460003", ["0.07"]))  # fmt: skip

    summary = engine.run(date(2026, 12, 1))
    assert not summary["failures"], summary
    (invoice,) = Invoice.select().where(Invoice.account == acc.id)
    billed = _by_group(_unit_lines(acc))
    # Sales: calls 1.52 + a number 2.50 + a seat 10.01; Support: 3.00 + 2.50 + 10.01;
    # Unassigned: a call 0.07 + a number 2.50 (the two seats are in units)
    assert billed == {"Sales": 1403, "Support": 1551, "Unassigned": 257}

    def report():
        data = unit_report.for_period(world.user_a, acc, NOV)
        return {r["unit"]: r["total"] for r in data["units"]}, data

    rows, data = report()
    assert rows == billed
    assert data["totals"]["total"] == sum(billed.values()) == 3211
    assert [i["number"] for i in data["invoices"]] == [invoice.number]
    assert data["not_invoiced"] is None  # November is billed through
    sales_row = next(r for r in data["units"] if r["unit"] == "Sales")
    assert (sales_row["usage"], sales_row["rental"], sales_row["seats"]) == (152, 250, 1001)
    assert (sales_row["numbers"], sales_row["users"]) == (1, 1)

    # what changes after the invoice never changes what November cost
    units.update_unit(None, sales, {"name": "Sales EMEA", "number_ids": []})
    units.update_unit(None, units.units_of(acc)[1], {"number_ids": [n1.id, n2.id]})
    units.update_settings(None, acc, {"number_rental_price": "99", "seat_price": "99"})
    rows, data = report()
    assert rows == {"Sales EMEA": 0, "Support": 1551, "Sales": 1403, "Unassigned": 257}
    billed_as = {r["unit"]: r["billed_as"] for r in data["units"]}
    assert billed_as == {"Sales EMEA": False, "Support": False, "Sales": True, "Unassigned": False}
    assert data["totals"]["total"] == 3211

    # a credit note for the Support seat line takes exactly that off Support
    seat = next(
        ln for ln in invoice.lines if ln.group == "Support" and ln.product_code == "BU-SEAT"
    )
    lifecycle.credit_note(invoice, positions=[seat.position])
    rows, data = report()
    assert rows["Support"] == 1551 - 1001 and data["totals"]["total"] == 3211 - 1001
    support = next(r for r in data["units"] if r["unit"] == "Support")
    assert support["credited"] == -1001 and support["seats"] == 0
    assert len(data["invoices"]) == 2  # the invoice and its credit note
    # voided: nothing of it is billed any more
    lifecycle.void(Invoice.get_by_id(invoice.id))
    rows, data = report()
    assert data["totals"]["total"] == 0 and set(rows.values()) == {0}


def test_the_open_period_is_an_estimate_apart_from_the_invoiced_figures(world, units):
    acc = world.customer_a
    n1 = units.create_number(None, acc, {"e164": "+442079460001"})
    units.create_unit(None, acc, {"name": "Sales", "number_ids": [n1.id]})
    units.add_calls(None, acc, _calls("+442079460001", ["1.00"], day="2026-12-01"))
    data = unit_report.for_period(world.user_a, acc, (date(2026, 12, 1), date(2027, 1, 1)))
    assert data["totals"]["total"] == 0 and data["invoices"] == []
    pending = data["not_invoiced"]
    assert (pending["start"], pending["end"], pending["total"]) == (
        date(2026, 12, 1), date(2027, 1, 1), 100)  # fmt: skip


def test_prices_are_the_sellers_billing_terms_not_the_customers(world, units):
    """The customer cannot set what it is invoiced per number and seat; the seller can."""
    acc = world.customer_a
    with pytest.raises(Forbidden) as err:
        units.update_settings(world.user_a, acc, {"seat_price": "0.01"})
    assert "seat_price" in err.value.errors
    assert units.settings_for(acc).seat_price == 0
    assert not units.can_set_prices(world.user_a, acc)
    assert units.can_set_prices(world.operator, acc)
    units.update_settings(world.operator, acc, {"seat_price": "12.50"})
    assert units.settings_for(acc).seat_price == Decimal("12.50")


# -- allocation --------------------------------------------------------------------------------


@given(
    amount=st.integers(min_value=-(10**18), max_value=10**18),
    weights=st.lists(
        st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False), max_size=12
    ),
)
@settings(derandomize=True, max_examples=300)
def test_allocation_adds_up_to_the_line_and_follows_the_weights(amount, weights):
    from plugins.billing_units.service.report import allocate

    shares = allocate(amount, {f"u{i}": w for i, w in enumerate(weights)})
    total = sum(Fraction(w) for w in weights)
    if total == 0:
        assert shares == {}
        return
    assert sum(shares.values()) == amount
    for key, share in shares.items():
        exact = amount * Fraction(weights[int(key[1:])]) / total
        assert abs(share - exact) < 1  # never more than one minor unit off its exact share
    assert all(weights[int(k[1:])] > 0 for k in shares)  # nothing for a unit that used nothing


# -- hypothesis over assignments, credits and voids (both backends) ----------------------------


_serial = itertools.count(1)

assignment = st.fixed_dictionaries({
    "units": st.integers(min_value=1, max_value=3),
    # per number: the unit index holding it (None: in no unit), and its calls' costs in cents
    "numbers": st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 2)),
                                  st.lists(st.integers(0, 10**7), max_size=3)),
                        min_size=1, max_size=4),
    # per user: the units (indexes) it is in directly, and whether through a team as well
    "users": st.lists(st.tuples(st.sets(st.integers(0, 2), max_size=2), st.booleans()),
                      max_size=3),
    "rental": st.decimals(min_value=0, max_value=10**4, places=3),
    "seat": st.decimals(min_value=0, max_value=10**4, places=4),
    "credit": st.sets(st.integers(1, 12), max_size=3),
    "void": st.booleans(),
})  # fmt: skip


@given(case=assignment)
@settings(derandomize=True, max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
def test_report_total_equals_what_was_billed_over_any_assignment(world, units, case):
    from core.billing.invoicing import lifecycle
    from core.billing.models import Invoice
    from core.billing.runs import engine
    from core.models import Account
    from plugins.billing_units.service.report import billed_amount

    n = next(_serial)
    acc = world.add_account(world.provider, f"Contact center {n}")
    Account.update(created_at="2026-11-01 00:00:00").where(Account.id == acc.id).execute()
    acc = Account.get_by_id(acc.id)
    count = case["units"]
    users = [world.add_user(acc, f"u{n}-{i}@example.com", role_code=None)
             for i in range(len(case["users"]))]  # fmt: skip
    team = units.create_team(None, acc, {"name": "T", "user_ids": [
        u.id for u, (_, in_team) in zip(users, case["users"], strict=True) if in_team]})  # fmt: skip
    numbers = [units.create_number(None, acc, {"e164": f"+1555{n:04d}{i:03d}"})
               for i in range(len(case["numbers"]))]  # fmt: skip
    for k in range(count):
        units.create_unit(None, acc, {
            "name": f"Unit {k}",
            "number_ids": [num.id for num, (held, _) in zip(numbers, case["numbers"], strict=True)
                           if held == k],
            "user_ids": [u.id for u, (direct, _) in zip(users, case["users"], strict=True)
                         if k in direct],
            "team_ids": [team.id] if k == count - 1 else [],
        })  # fmt: skip
    units.update_settings(None, acc, {"number_rental_price": str(case["rental"]),
                                      "seat_price": str(case["seat"])})  # fmt: skip
    calls = [c for num, (_, costs) in zip(numbers, case["numbers"], strict=True)
             for c in _calls(num.e164, [str(Decimal(x) / 100) for x in costs])]  # fmt: skip
    if calls:
        units.add_calls(None, acc, calls)
    summary = engine.run(date(2026, 12, 1))
    assert not summary["failures"], summary
    invoice = Invoice.get_or_none(Invoice.account == acc.id)
    if invoice is not None:
        positions = sorted(p for p in case["credit"] if p <= len(list(invoice.lines)))
        if positions:
            lifecycle.credit_note(invoice, positions=positions)
        if case["void"]:
            lifecycle.void(Invoice.get_by_id(invoice.id))
    # after the invoice: the assignments move, prices change; November stays as billed
    for unit in units.units_of(acc):
        units.update_unit(None, unit, {"number_ids": [], "user_ids": [], "team_ids": []})
    data = unit_report.for_period(None, acc, NOV)
    billed = billed_amount(acc, NOV, {"billing_units"})
    assert data["totals"]["total"] == billed
    assert sum(r["total"] for r in data["units"]) == billed
    if invoice is not None and not case["void"]:
        from core.billing.models import InvoiceLine

        credited = {int(ln.source.split(":")[1]) for ln in InvoiceLine.select().join(Invoice)
                    .where(Invoice.credit_for == invoice.id)}  # fmt: skip
        expected = _by_group([ln for ln in invoice.lines if ln.id not in credited])
        rows = {r["unit"]: r["total"] for r in data["units"]}
        assert {k: v for k, v in rows.items() if v} == {k: v for k, v in expected.items() if v}
        assert billed == sum(expected.values())
    elif invoice is not None:
        assert billed == 0


def test_a_call_of_a_billed_day_is_refused_but_a_retry_of_a_stored_one_is_not(world, units):
    from core.billing.runs import engine
    from core.errors import ValidationFailed

    acc = world.customer_a
    n1 = units.create_number(None, acc, {"e164": "+442079460001"})
    units.create_unit(None, acc, {"name": "Sales", "number_ids": [n1.id]})
    november = _calls("+442079460001", ["1.00"])
    units.add_calls(None, acc, november)
    engine.run(date(2026, 12, 1))
    billed = unit_report.for_period(None, acc, NOV)["totals"]["total"]
    assert billed == 100
    assert units.add_calls(None, acc, november) == {"received": 1, "created": 0, "duplicates": 1}
    late = {**november[0], "external_id": "late", "started_at": "2026-11-30T23:59:59"}
    dec = {**november[0], "external_id": "dec", "started_at": "2026-12-01T00:00:00"}
    with pytest.raises(ValidationFailed) as err:
        units.add_calls(None, acc, [dec, late])
    assert err.value.errors["records"] == {"1": [
        "started_at: 2026-11-30 23:59 is invoiced already (calls are billed through 2026-12-01);"
        " a billed period is never billed again"]}  # fmt: skip
    assert units.add_calls(None, acc, [dec])["created"] == 1
    assert unit_report.for_period(None, acc, NOV)["totals"]["total"] == billed
