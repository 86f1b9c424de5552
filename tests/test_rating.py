"""Rating (core.billing.rating): what billed days cost, computed in one place for the engine's
retail lines, plugin charges and the reseller's wholesale lines."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.billing import rating
from core.billing.models import PricePlan, Product, Subscription
from core.billing.money import MAX_MINOR, MoneyError, line_amount
from core.billing.periods import PeriodError, period_containing
from core.billing.runs import engine
from core.models import Account
from plugins.reseller_accounts.service import billing as wholesale

D = Decimal

cycle_days = st.integers(min_value=1, max_value=28)
days = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))
prices = st.decimals(min_value=0, max_value=D("99999"), places=4)
quantities = st.decimals(min_value=0, max_value=D("9999"), places=3)
currencies = st.sampled_from(["EUR", "JPY", "BHD"])


@st.composite
def periods(draw):
    return period_containing(draw(days), draw(cycle_days))


@st.composite
def a_period_in_pieces(draw):
    """A billing period and contiguous pieces of it, from its start to its end."""
    start, end = draw(periods())
    total = (end - start).days
    cuts = draw(st.lists(st.integers(min_value=1, max_value=total - 1), unique=True, max_size=6))
    bounds = [start, *(start + timedelta(days=n) for n in sorted(cuts)), end]
    return (start, end), list(zip(bounds, bounds[1:], strict=False))


# -- proration -------------------------------------------------------------------------------


def test_a_seat_for_14_of_30_days_costs_14_of_30_of_its_price_and_says_so():
    period = (date(2026, 11, 1), date(2026, 12, 1))
    line = rating.recurring("Seat — Pro", D(2), D("30.00"), "EUR", (date(2026, 11, 17), period[1]),
                            period, source="subscription:7")  # fmt: skip
    assert line.description == "Seat — Pro (14 of 30 days)"
    assert line.fraction.as_integer_ratio() == (7, 15)
    assert line.amount == 2800  # 2 x 30.00 x 14 / 30
    assert (line.charge, line.source) == ("recurring", "subscription:7")
    whole = rating.recurring("Seat — Pro", D(2), D("30.00"), "EUR", period, period)
    assert (whole.description, whole.amount, whole.fraction) == ("Seat — Pro", 6000, 1)


@given(a_period_in_pieces(), quantities, prices, currencies)
def test_a_period_billed_in_pieces_costs_the_whole_period_within_one_minor_unit_per_split(
    split, quantity, price, currency
):
    period, pieces = split
    lines = [rating.recurring("Seat", quantity, price, currency, piece, period) for piece in pieces]
    whole = rating.recurring("Seat", quantity, price, currency, period, period)
    assert sum(Fraction(line.fraction) for line in lines) == 1  # every day once, exactly
    assert abs(sum(line.amount for line in lines) - whole.amount) <= len(pieces) - 1
    # each piece's text names its days: together they are the period's
    if len(pieces) > 1:
        noted = [line.description.rsplit("(", 1)[1] for line in lines]
        assert sum(int(text.split(" of ")[0]) for text in noted) == (period[1] - period[0]).days


@given(a_period_in_pieces(), quantities, prices, st.sampled_from([D("0.5"), D(1), D("0.25")]))
def test_a_plugin_charge_for_part_of_a_period_is_its_share_of_the_days(split, quantity, price, f):
    period, pieces = split
    piece = pieces[-1]
    line = rating.recurring("Licence", quantity, price, "EUR", piece, period, fraction=f)
    days, total = (piece[1] - piece[0]).days, (period[1] - period[0]).days
    assert Fraction(line.fraction) == Fraction(f) * Fraction(days, total)
    assert line.amount == line_amount(quantity, price, "EUR", Fraction(f) * Fraction(days, total))


def test_a_service_of_no_day_is_refused_naming_it():
    period = (date(2026, 1, 1), date(2026, 2, 1))
    with pytest.raises(PeriodError) as caught:
        rating.recurring("Seat", D(1), D(1), "EUR", (date(2026, 1, 9), date(2026, 1, 9)), period)
    assert caught.value.field == "service"


# -- volume tiers ----------------------------------------------------------------------------

TIERS = [(D(100), D("0.10")), (D(1000), D("0.08")), (None, D("0.05"))]


@pytest.mark.parametrize(
    ("used", "price", "amount"),
    [(D(0), D("0.10"), 0), (D(100), D("0.10"), 1000), (D("100.001"), D("0.08"), 800),
     (D(1000), D("0.08"), 8000), (D(1001), D("0.05"), 5005)],
)  # fmt: skip
def test_usage_is_priced_at_the_tier_the_whole_quantity_falls_in(used, price, amount):
    line = rating.usage("Minutes", used, "EUR", rate=D("9.99"), tiers=TIERS)
    assert (line.unit_price, line.amount, line.charge) == (price, amount, "usage")
    assert rating.usage("Minutes", used, "EUR", rate=D("0.02")).unit_price == D("0.02")


@st.composite
def tier_lists(draw):
    bounds = sorted(draw(st.lists(quantities, min_size=0, max_size=5, unique=True)))
    rates = draw(st.lists(prices, min_size=len(bounds) + 1, max_size=len(bounds) + 1, unique=True))
    return [*zip(bounds, rates[:-1], strict=True), (None, rates[-1])]


@given(tier_lists(), quantities, quantities)
def test_a_larger_quantity_never_falls_in_an_earlier_tier(tiers, a, b):
    low, high = sorted([a, b])
    order = [price for _, price in tiers]
    low_tier = order.index(rating.usage_price(low, D(0), tiers))
    high_tier = order.index(rating.usage_price(high, D(0), tiers))
    assert low_tier <= high_tier
    bound = tiers[low_tier][0]
    assert bound is None or low <= bound
    assert low_tier == 0 or low > tiers[low_tier - 1][0]


@given(tier_lists(), quantities, quantities)
def test_with_falling_tier_prices_a_larger_quantity_never_costs_more_per_unit(tiers, a, b):
    falling = sorted((price for _, price in tiers), reverse=True)
    tiers = [(bound, price) for (bound, _), price in zip(tiers, falling, strict=True)]
    low, high = sorted([a, b])
    assert rating.usage_price(low, D(0), tiers) >= rating.usage_price(high, D(0), tiers)


def test_a_malformed_tier_list_is_refused_naming_tiers():
    with pytest.raises(MoneyError) as caught:
        rating.usage("Minutes", D(5), "EUR", rate=D(0), tiers=[(D(10), D(1))])
    assert caught.value.field == "tiers"


# -- one-off charges -------------------------------------------------------------------------


def test_a_one_off_is_billed_whole_in_the_period_containing_its_start_only():
    period = (date(2026, 3, 15), date(2026, 4, 15))
    assert rating.one_off_days(date(2026, 4, 1), None, period) == (date(2026, 4, 1), period[1])
    assert rating.one_off_days(date(2026, 4, 1), date(2026, 4, 3), period) == (
        date(2026, 4, 1),
        date(2026, 4, 3),
    )
    assert rating.one_off_days(date(2026, 3, 14), None, period) is None  # the period before
    assert rating.one_off_days(period[1], None, period) is None  # the period after
    assert rating.one_off_days(date(2026, 4, 1), date(2026, 4, 1), period) is None  # no day
    setup = rating.one_off("Setup", D(3), D("49.90"), "EUR", service=(date(2026, 4, 1), period[1]))
    assert (setup.amount, setup.fraction, setup.charge) == (14970, 1, "one_off")


# -- the engine's retail lines and the reseller's wholesale lines ------------------------------


def _models(kind, price, rate, tiers, quantity, start, end):
    account = Account(id=11, name="Dana", currency="EUR", parent=12)
    reseller = Account(id=12, name="Resello", currency="EUR")
    product = Product(id=3, name="Seat", unit="seat", code="SEAT", kind=kind)
    plan = PricePlan(id=4, account=12, product=product, name="Pro", currency="EUR",
                     recurring_price=price, usage_rate=rate, tiers=tiers)  # fmt: skip
    sub = Subscription(id=5, account=account, plan=plan, quantity=quantity, start=start, end=end)
    return account, reseller, plan, sub


@given(
    periods(),
    st.sampled_from(["recurring", "usage", "one_off"]),
    prices,
    prices,
    st.none() | tier_lists(),
    quantities,
    st.integers(min_value=0, max_value=40),
    st.none() | st.integers(min_value=1, max_value=40),
    st.none() | quantities,
)
def test_the_engine_and_the_wholesale_path_rate_the_same_days_the_same(
    period, kind, price, rate, tiers, quantity, late, length, used
):
    start = period[0] + timedelta(days=late)
    end = None if length is None else start + timedelta(days=length)
    account, reseller, plan, sub = _models(kind, price, rate, tiers, quantity, start, end)
    service = engine.service_range(sub, period)
    key = f"wholesale:{reseller.id}:{sub.id}"
    assert wholesale._wholesale_range(sub, plan, key, {}, period) == service
    if service is None:
        return
    usage = {} if used is None else {sub.id: used}
    retail = engine.rate_subscriptions(account, period, [sub], usage).get(plan.account_id, [])
    charges = wholesale.wholesale_lines(reseller, sub, plan, "Dana", service, period, used)
    # the wholesale path bills no usage line for nothing used or used at no price
    billed = [line for line in retail
              if not line["source"].startswith("usage:") or (line["quantity"] and line["unit_price"])]  # fmt: skip
    assert len(charges) == len(billed)
    for line, charge in zip(billed, charges, strict=True):
        assert charge.description == f"Dana: {line['description']}"
        assert (charge.quantity, charge.unit_price) == (line["quantity"], line["unit_price"])
        assert Fraction(charge.fraction) == Fraction(line["fraction"])
        assert (charge.service_start, charge.service_end) == service
        # what the engine bills for a charge with its coverage (engine.plugin_charges)
        as_billed = rating.line(charge.description, charge.quantity, charge.unit_price, "EUR",
                                fraction=charge.fraction, service=service)  # fmt: skip
        assert as_billed.amount == line["amount"]


# -- the edges of what the models accept -------------------------------------------------------

OLDEST = (date(1, 1, 1), date(1, 2, 1))
NEWEST = (date(9999, 11, 28), date(9999, 12, 28))


@pytest.mark.parametrize("period", [OLDEST, NEWEST], ids=["oldest", "newest"])
def test_the_oldest_and_newest_periods_rate_like_any_other(period):
    assert period_containing(period[0], period[0].day) == period
    half = (period[0] + timedelta(days=10), period[1])
    line = rating.recurring("Seat", D(1), D("31.00"), "EUR", half, period)
    total = (period[1] - period[0]).days
    assert line.amount == line_amount(D(1), D("31.00"), "EUR", Fraction(total - 10, total))
    assert rating.one_off_days(period[0], None, period) == period
    assert rating.one_off_days(date.max, None, (NEWEST[1], date.max)) is None  # no day left
    assert rating.one_off_days(date(9999, 12, 30), None, (NEWEST[1], date.max)) == (
        date(9999, 12, 30),
        date.max,
    )


def test_the_largest_amount_a_line_can_hold_is_rated_exactly_and_one_more_is_refused():
    period = (date(2026, 1, 1), date(2026, 2, 1))
    largest = rating.recurring("Seat", D(MAX_MINOR), D("0.01"), "EUR", period, period)
    assert largest.amount == MAX_MINOR
    credit = rating.one_off("Credit", D(-MAX_MINOR), D("0.01"), "EUR")
    assert credit.amount == -MAX_MINOR
    with pytest.raises(MoneyError) as caught:
        rating.recurring("Seat", D(MAX_MINOR + 1), D("0.01"), "EUR", period, period)
    assert caught.value.field == "amount"


def test_the_largest_quantities_and_prices_the_models_accept_give_a_clear_error_not_a_crash():
    huge = D("9" * 31)  # the largest a quantity or price column accepts (core.billing.money)
    tiny = D("0." + "0" * 59 + "1")  # the finest
    period = (date(2026, 1, 1), date(2026, 2, 1))
    with pytest.raises(MoneyError) as caught:
        rating.recurring("Seat", huge, huge, "EUR", (date(2026, 1, 2), period[1]), period)
    assert caught.value.field == "amount"
    with pytest.raises(MoneyError) as caught:
        rating.usage("Minutes", huge, "EUR", rate=D(0), tiers=[(huge, huge), (None, D(0))])
    assert caught.value.field == "amount"
    assert rating.usage("Minutes", huge, "EUR", rate=tiny).amount == 0
    # 99.99..9 EUR (31 nines x 1E-29), rounded once to the cent
    assert rating.usage("Minutes", huge, "EUR", rate=D("1E-29")).amount == 10000
    with pytest.raises(MoneyError) as caught:
        rating.usage("Minutes", D("1E+31"), "EUR", rate=D(1))
    assert caught.value.field == "quantity"
