"""Billing periods: half-open date ranges [start, end) anchored on a bill cycle day.

Each account has a bill cycle day from 1 to 28 (so it exists in every month, February
included). A period starts on the cycle day of a month and ends on the cycle day of the next
month; the end date is the first day *not* in the period. A bill run for date D bills every
period whose end <= D, so a run on the cycle day itself closes the period that ends that day.

Proration: :func:`overlap_fraction` gives the share of a period's days a subscription was
active, as an exact ratio of whole days (see :class:`core.billing.money.ExactRatio`), to pass
unchanged to :func:`core.billing.money.line_amount`. :func:`prorated_label` writes the days
into the line's text, so its reader can recompute it (issue 19 item 4).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from core.billing.money import ExactRatio

__all__ = [
    "PeriodError",
    "check_cycle_day",
    "check_run_date",
    "closed_periods",
    "overlap_fraction",
    "parse_date",
    "period_containing",
    "prorated_label",
]

MIN_CYCLE_DAY = 1
MAX_CYCLE_DAY = 28

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGITS_RE = re.compile(r"\+?\d{1,9}")


class PeriodError(ValueError):
    """Bad period input. ``field`` names the input at fault (or is None); str() is the message."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def check_cycle_day(value, field: str = "bill_cycle_day") -> int:
    """The bill cycle day as an int 1..28, from an int or a string of digits ("15").

    0, 29, "abc", 3.5, 15.0 and True are refused with PeriodError naming ``field``.
    """
    message = f"{field} must be a whole number from {MIN_CYCLE_DAY} to {MAX_CYCLE_DAY}"
    if isinstance(value, bool):
        raise PeriodError(message, field=field)
    if isinstance(value, int):
        day = value
    elif isinstance(value, str) and _DIGITS_RE.fullmatch(value.strip()):
        day = int(value.strip())
    else:
        raise PeriodError(message, field=field)
    if not MIN_CYCLE_DAY <= day <= MAX_CYCLE_DAY:
        raise PeriodError(message, field=field)
    return day


def parse_date(value, field: str) -> date:
    """A ``date`` (returned as is) or a strict 'YYYY-MM-DD' string.

    Datetimes, other formats ('2024-1-5', '20240105', '2024-01-05T00:00') and impossible dates
    ('2023-02-29') raise PeriodError naming ``field``.
    """
    if isinstance(value, datetime):
        raise PeriodError(f"{field} must be a date (YYYY-MM-DD), not a date and time", field=field)
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        shown = repr(value) if isinstance(value, str) and len(value) <= 40 else "that value"
        raise PeriodError(f"{field} must be a date in YYYY-MM-DD format, got {shown}", field=field)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PeriodError(f"{field} is not a valid date: {value!r}", field=field) from None


def check_run_date(value, field: str = "date") -> date:
    """A bill run's date: a date (or 'YYYY-MM-DD') no later than today in the instance's time
    zone (:func:`core.clock.today`). A later date is refused with PeriodError naming
    ``field``: its periods have not ended, and an issued invoice cannot be taken back."""
    from core import clock

    day = parse_date(value, field)
    today = clock.today()
    if day > today:
        raise PeriodError(
            f"{field} {day} is after today ({today}, time zone {clock.timezone_name()}): a bill "
            "run bills only periods that have ended",
            field=field,
        )
    return day


def _require_date(value, field: str) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise PeriodError(f"{field} must be a date (YYYY-MM-DD)", field=field)
    return value


def _shift_month(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _on_cycle_day(year: int, month: int, cycle_day: int) -> date:
    try:
        return date(year, month, cycle_day)
    except ValueError:
        raise PeriodError("date is outside the supported range (years 1-9999)") from None


def period_containing(day: date, cycle_day: int) -> tuple[date, date]:
    """The billing period [start, end) that contains ``day``."""
    day = _require_date(day, "day")
    cycle_day = check_cycle_day(cycle_day)
    if day.day >= cycle_day:
        start_year, start_month = day.year, day.month
    else:
        start_year, start_month = _shift_month(day.year, day.month, -1)
    end_year, end_month = _shift_month(start_year, start_month, 1)
    return (
        _on_cycle_day(start_year, start_month, cycle_day),
        _on_cycle_day(end_year, end_month, cycle_day),
    )


def closed_periods(since: date, as_of: date, cycle_day: int) -> list[tuple[date, date]]:
    """Every period overlapping [since, infinity) whose end <= as_of, oldest first.

    These are what a bill run on ``as_of`` bills for an account (or subscription) that started
    on ``since``: the first one is the whole period containing ``since`` (bill it prorated with
    :func:`overlap_fraction`), then each following period up to the last one ended by
    ``as_of``. A run on the cycle day itself includes the period ending that day.
    """
    since = _require_date(since, "since")
    as_of = _require_date(as_of, "as_of")
    cycle_day = check_cycle_day(cycle_day)
    periods: list[tuple[date, date]] = []
    start, end = period_containing(since, cycle_day)
    while end <= as_of:
        periods.append((start, end))
        year, month = _shift_month(end.year, end.month, 1)
        start, end = end, _on_cycle_day(year, month, cycle_day)
    return periods


def overlap_fraction(
    active_from: date, active_until: date | None, period: tuple[date, date]
) -> Decimal:
    """Share of ``period``'s days during which [active_from, active_until) was active.

    ``active_until`` is exclusive (the first day no longer active); None means still active.
    Returns 0 when there is no overlap, 1 for the whole period, otherwise an exact ratio of
    days (an ``ExactRatio``: a Decimal whose ``as_integer_ratio()`` is e.g. (10, 31)).
    """
    active_from = _require_date(active_from, "active_from")
    if active_until is not None:
        active_until = _require_date(active_until, "active_until")
        if active_until < active_from:
            raise PeriodError("active_until must not be before active_from", field="active_until")
    try:
        start, end = period
    except (TypeError, ValueError):
        raise PeriodError("period must be a (start, end) pair of dates", field="period") from None
    start = _require_date(start, "period")
    end = _require_date(end, "period")
    if end <= start:
        raise PeriodError("period must end after it starts", field="period")
    overlap_start = max(start, active_from)
    overlap_end = end if active_until is None else min(end, active_until)
    days = max(0, (overlap_end - overlap_start).days)
    return ExactRatio(days, (end - start).days)


#: the note :func:`prorated_label` writes, for formats that translate it (core.i18n)
PRORATED_NOTE = re.compile(r" \((\d+) of (\d+) days\)$")


def prorated_label(label: str, days: int, total_days: int) -> str:
    """The text of a line billing ``days`` of a ``total_days`` period: ``"Seat — Pro (16 of
    31 days)"`` whenever it is not the whole period, so that whoever reads the invoice can
    recompute quantity x unit price x days / period days = amount. Retail lines (the engine),
    plugin charges and the reseller's wholesale lines all write it here."""
    return label if days == total_days else f"{label} ({days} of {total_days} days)"
