"""Billing periods: cycle days, half-open periods, bill-run catch-up, proration."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.billing.money import line_amount
from core.billing.periods import (
    PeriodError,
    check_cycle_day,
    closed_periods,
    overlap_fraction,
    parse_date,
    period_containing,
)

D = Decimal

cycle_days = st.integers(min_value=1, max_value=28)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))


# --------------------------------------------------------------------------- cycle day


@pytest.mark.parametrize(
    ("value", "day"), [(1, 1), (15, 15), (28, 28), ("7", 7), (" 12 ", 12), ("028", 28)]
)
def test_valid_cycle_days_are_accepted_as_ints(value, day):
    assert check_cycle_day(value) == day


@pytest.mark.parametrize(
    "bad", [0, 29, 31, -1, "0", "29", "abc", "", "1.5", "15.0", "1e1", 3.5, 15.0, True, False,
            None, D("15"), [15]],
)  # fmt: skip
def test_invalid_cycle_days_are_refused_with_a_clear_message(bad):
    with pytest.raises(PeriodError) as caught:
        check_cycle_day(bad)
    assert str(caught.value) == "bill_cycle_day must be a whole number from 1 to 28"
    assert caught.value.field == "bill_cycle_day"
    assert isinstance(caught.value, ValueError)


def test_cycle_day_error_uses_the_callers_field_name():
    with pytest.raises(PeriodError) as caught:
        check_cycle_day(30, field="profile.cycle_day")
    assert caught.value.field == "profile.cycle_day"
    assert str(caught.value).startswith("profile.cycle_day must be a whole number")


def test_period_functions_refuse_an_invalid_cycle_day():
    with pytest.raises(PeriodError):
        period_containing(date(2024, 1, 1), 29)
    with pytest.raises(PeriodError):
        closed_periods(date(2024, 1, 1), date(2024, 6, 1), 0)


# --------------------------------------------------------------------------- period_containing


@pytest.mark.parametrize(
    ("day", "cycle_day", "period"),
    [
        # On the cycle day itself a new period starts.
        (date(2024, 3, 15), 15, (date(2024, 3, 15), date(2024, 4, 15))),
        # The day before belongs to the previous period.
        (date(2024, 3, 14), 15, (date(2024, 2, 15), date(2024, 3, 15))),
        (date(2024, 3, 31), 15, (date(2024, 3, 15), date(2024, 4, 15))),
        # Cycle day 1 gives calendar months.
        (date(2024, 2, 29), 1, (date(2024, 2, 1), date(2024, 3, 1))),
        (date(2023, 12, 31), 1, (date(2023, 12, 1), date(2024, 1, 1))),
        # Year boundary.
        (date(2024, 1, 5), 10, (date(2023, 12, 10), date(2024, 1, 10))),
        (date(2023, 12, 20), 10, (date(2023, 12, 10), date(2024, 1, 10))),
        # Day 28 in February, leap and common years.
        (date(2023, 2, 27), 28, (date(2023, 1, 28), date(2023, 2, 28))),
        (date(2023, 2, 28), 28, (date(2023, 2, 28), date(2023, 3, 28))),
        (date(2024, 2, 28), 28, (date(2024, 2, 28), date(2024, 3, 28))),
        (date(2028, 2, 29), 28, (date(2028, 2, 28), date(2028, 3, 28))),
        (date(2028, 3, 1), 28, (date(2028, 2, 28), date(2028, 3, 28))),
        (date(2028, 1, 31), 28, (date(2028, 1, 28), date(2028, 2, 28))),
    ],
)
def test_the_period_containing_a_day(day, cycle_day, period):
    assert period_containing(day, cycle_day) == period


@given(day=dates, cycle_day=cycle_days)
def test_every_day_lies_in_exactly_one_month_long_period_on_the_cycle_day(day, cycle_day):
    start, end = period_containing(day, cycle_day)
    assert start <= day < end
    assert start.day == end.day == cycle_day
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == 1
    assert 28 <= (end - start).days <= 31
    # Periods tile the calendar: the last day maps back, the end starts the next period.
    assert period_containing(start, cycle_day) == (start, end)
    assert period_containing(end - timedelta(days=1), cycle_day) == (start, end)
    assert period_containing(end, cycle_day)[0] == end


def test_period_containing_refuses_datetimes_and_strings():
    with pytest.raises(PeriodError):
        period_containing(datetime(2024, 1, 1, 12, 0), 1)
    with pytest.raises(PeriodError):
        period_containing("2024-01-01", 1)


def test_dates_at_the_edge_of_the_calendar_raise_a_period_error():
    with pytest.raises(PeriodError, match="range"):
        period_containing(date(9999, 12, 20), 15)
    with pytest.raises(PeriodError, match="range"):
        period_containing(date(1, 1, 5), 15)


# --------------------------------------------------------------------------- closed_periods


def test_a_bill_run_on_the_cycle_day_closes_the_period_ending_that_day():
    assert closed_periods(date(2024, 2, 15), date(2024, 3, 15), 15) == [
        (date(2024, 2, 15), date(2024, 3, 15))
    ]


def test_a_bill_run_the_day_before_the_cycle_day_closes_nothing_yet():
    assert closed_periods(date(2024, 2, 15), date(2024, 3, 14), 15) == []


def test_an_account_created_mid_period_gets_its_partial_first_period():
    periods = closed_periods(date(2024, 2, 20), date(2024, 3, 15), 15)
    assert periods == [(date(2024, 2, 15), date(2024, 3, 15))]
    # 24 of the period's 29 days (2024 is a leap year).
    assert overlap_fraction(date(2024, 2, 20), None, periods[0]).as_integer_ratio() == (24, 29)


def test_a_late_bill_run_catches_up_every_missed_period_oldest_first():
    assert closed_periods(date(2023, 11, 20), date(2024, 3, 20), 15) == [
        (date(2023, 11, 15), date(2023, 12, 15)),
        (date(2023, 12, 15), date(2024, 1, 15)),
        (date(2024, 1, 15), date(2024, 2, 15)),
        (date(2024, 2, 15), date(2024, 3, 15)),
    ]


def test_catch_up_across_a_leap_february_on_cycle_day_28():
    assert closed_periods(date(2028, 1, 28), date(2028, 4, 28), 28) == [
        (date(2028, 1, 28), date(2028, 2, 28)),
        (date(2028, 2, 28), date(2028, 3, 28)),
        (date(2028, 3, 28), date(2028, 4, 28)),
    ]


def test_a_bill_run_before_the_account_existed_bills_nothing():
    assert closed_periods(date(2024, 5, 1), date(2024, 4, 1), 1) == []
    assert closed_periods(date(2024, 5, 1), date(2024, 5, 1), 1) == []


def test_an_account_created_on_the_cycle_day_is_billed_from_that_day():
    assert closed_periods(date(2024, 5, 1), date(2024, 6, 1), 1) == [
        (date(2024, 5, 1), date(2024, 6, 1))
    ]


def test_closed_periods_refuses_non_dates():
    with pytest.raises(PeriodError) as caught:
        closed_periods("2024-01-01", date(2024, 6, 1), 1)
    assert caught.value.field == "since"
    with pytest.raises(PeriodError) as caught:
        closed_periods(date(2024, 1, 1), None, 1)
    assert caught.value.field == "as_of"


@given(
    since=dates,
    span=st.integers(min_value=-60, max_value=2000),
    cycle_day=cycle_days,
)
def test_closed_periods_are_contiguous_ended_and_complete(since, span, cycle_day):
    as_of = since + timedelta(days=span)
    periods = closed_periods(since, as_of, cycle_day)
    first = period_containing(since, cycle_day)
    if periods:
        assert periods[0] == first
        for (_, end), (next_start, _) in zip(periods, periods[1:], strict=False):
            assert end == next_start
        assert all(end <= as_of for _, end in periods)
        after_last = period_containing(periods[-1][1], cycle_day)
    else:
        after_last = first
    # The next period is still open on as_of, so nothing billable was left out.
    assert after_last[1] > as_of
    # Running again later only ever adds periods at the end (re-runs never reshuffle).
    later = closed_periods(since, as_of + timedelta(days=40), cycle_day)
    assert later[: len(periods)] == periods


# --------------------------------------------------------------------------- overlap_fraction

JAN = (date(2024, 1, 15), date(2024, 2, 15))  # 31 days
FEB_LEAP = (date(2024, 2, 1), date(2024, 3, 1))  # 29 days
FEB_COMMON = (date(2023, 2, 1), date(2023, 3, 1))  # 28 days


@pytest.mark.parametrize(
    ("active_from", "active_until", "period", "ratio"),
    [
        (date(2024, 1, 15), None, JAN, (1, 1)),
        (date(2023, 6, 1), None, JAN, (1, 1)),
        (date(2023, 6, 1), date(2024, 6, 1), JAN, (1, 1)),
        (date(2024, 1, 25), None, JAN, (21, 31)),  # started mid-period
        (date(2024, 1, 15), date(2024, 1, 25), JAN, (10, 31)),  # ended mid-period
        (date(2024, 1, 20), date(2024, 1, 30), JAN, (10, 31)),  # both
        (date(2024, 2, 14), None, JAN, (1, 31)),  # the last day only
        (date(2024, 2, 15), None, JAN, (0, 1)),  # starts when the period ends
        (date(2023, 6, 1), date(2024, 1, 15), JAN, (0, 1)),  # ended when the period started
        (date(2023, 6, 1), date(2023, 7, 1), JAN, (0, 1)),  # long before
        (date(2024, 1, 20), date(2024, 1, 20), JAN, (0, 1)),  # zero-length
        (date(2024, 2, 15), None, FEB_LEAP, (15, 29)),
        (date(2023, 2, 15), None, FEB_COMMON, (1, 2)),
    ],
)
def test_proration_share_is_days_active_over_days_in_period(
    active_from, active_until, period, ratio
):
    fraction = overlap_fraction(active_from, active_until, period)
    assert isinstance(fraction, Decimal)
    assert fraction.as_integer_ratio() == ratio
    assert Fraction(fraction) == Fraction(*ratio)


def test_whole_and_empty_periods_are_exactly_one_and_zero():
    assert overlap_fraction(date(2024, 1, 1), None, JAN) == D(1)
    assert overlap_fraction(date(2025, 1, 1), None, JAN) == D(0)


def test_a_prorated_monthly_charge_is_exact_to_the_cent():
    # 31.00 EUR a month, active for 10 of January's 31 days -> exactly 10.00 EUR.
    fraction = overlap_fraction(date(2024, 2, 5), None, JAN)
    assert line_amount(D("1"), D("31.00"), "EUR", fraction) == 1000


def test_a_prorated_tie_rounds_once_half_up():
    # 0.29 EUR x 15/29 days of a leap February = 0.15 EUR exactly.
    fraction = overlap_fraction(date(2024, 2, 15), None, FEB_LEAP)
    assert line_amount(D("1"), D("0.29"), "EUR", fraction) == 15
    # 0.145 EUR x 1/29 = 0.005 EUR exactly: a tie, rounded once, half up -> 0.01 EUR.
    one_day = overlap_fraction(date(2024, 2, 29), None, FEB_LEAP)
    assert one_day.as_integer_ratio() == (1, 29)
    assert line_amount(D("1"), D("0.145"), "EUR", one_day) == 1


@given(
    period_start=dates,
    cycle_day=cycle_days,
    split=st.integers(min_value=0, max_value=40),
)
def test_a_plan_change_mid_period_splits_the_period_into_shares_summing_to_one(
    period_start, cycle_day, split
):
    period = period_containing(period_start, cycle_day)
    change = period[0] + timedelta(days=split)
    before = overlap_fraction(period[0] - timedelta(days=100), change, period)
    after = overlap_fraction(change, None, period)
    assert Fraction(before) + Fraction(after) == 1
    assert 0 <= before <= 1 and 0 <= after <= 1


def test_a_subscription_ending_before_it_starts_is_refused():
    with pytest.raises(PeriodError) as caught:
        overlap_fraction(date(2024, 2, 1), date(2024, 1, 1), JAN)
    assert caught.value.field == "active_until"


@pytest.mark.parametrize(
    "period",
    [
        (date(2024, 2, 1), date(2024, 1, 1)),
        (date(2024, 1, 1), date(2024, 1, 1)),
        (date(2024, 1, 1),),
        None,
        ("2024-01-01", "2024-02-01"),
    ],
)
def test_a_malformed_period_is_refused(period):
    with pytest.raises(PeriodError) as caught:
        overlap_fraction(date(2024, 1, 1), None, period)
    assert caught.value.field == "period"


def test_overlap_fraction_refuses_datetimes():
    with pytest.raises(PeriodError) as caught:
        overlap_fraction(datetime(2024, 1, 20, 9, 30), None, JAN)
    assert caught.value.field == "active_from"


# --------------------------------------------------------------------------- parse_date


def test_iso_dates_parse_strictly():
    assert parse_date("2028-02-29", "as_of") == date(2028, 2, 29)
    assert parse_date("2024-01-05", "as_of") == date(2024, 1, 5)
    assert parse_date(date(2024, 1, 5), "as_of") == date(2024, 1, 5)


@pytest.mark.parametrize(
    "bad",
    ["2024-1-5", "20240105", "2024-01-05T00:00", "05/01/2024", " 2024-01-05", "2024-W01-1", "",
     None, 20240105, ["2024-01-05"]],
)  # fmt: skip
def test_badly_formatted_dates_are_refused_naming_the_field_and_format(bad):
    with pytest.raises(PeriodError) as caught:
        parse_date(bad, "as_of")
    assert caught.value.field == "as_of"
    assert "as_of" in str(caught.value)
    assert "YYYY-MM-DD" in str(caught.value)


@pytest.mark.parametrize("bad", ["2023-02-29", "2024-13-01", "2024-04-31", "0000-01-01"])
def test_impossible_dates_are_refused(bad):
    with pytest.raises(PeriodError) as caught:
        parse_date(bad, "start")
    assert caught.value.field == "start"
    assert "not a valid date" in str(caught.value)


def test_a_datetime_is_not_silently_truncated_to_a_date():
    with pytest.raises(PeriodError) as caught:
        parse_date(datetime(2024, 1, 5, 23, 59), "as_of")
    assert "YYYY-MM-DD" in str(caught.value)
