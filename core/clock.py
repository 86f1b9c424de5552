"""The instance's calendar: what day it is, in the instance's time zone.

Everything in Billhive that asks "what is today?" for billing (the latest date a bill run may
be for, the default bill-run date) calls :func:`today`, so tests freeze the clock by
monkeypatching this one function (``monkeypatch.setattr("core.clock.today", lambda: ...)``).

The time zone is the app config's ``TIMEZONE`` (environment ``BILLHIVE_TIMEZONE``), an IANA
name such as ``Europe/Berlin``; the default is UTC. A bill run for a date after today is
refused: its periods have not ended yet.
"""

from __future__ import annotations

import os
from datetime import date, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["ClockError", "timezone", "timezone_name", "today"]

DEFAULT_TIMEZONE = "UTC"


class ClockError(ValueError):
    """A configured time zone that does not exist."""


def timezone_name() -> str:
    """The configured zone name: the current app's ``TIMEZONE``, else ``BILLHIVE_TIMEZONE``,
    else UTC."""
    name = None
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            name = current_app.config.get("TIMEZONE")
    except ImportError:  # pragma: no cover - flask is a dependency
        pass
    return name or os.environ.get("BILLHIVE_TIMEZONE") or DEFAULT_TIMEZONE


@lru_cache(maxsize=16)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ClockError(
            f"TIMEZONE (BILLHIVE_TIMEZONE) {name!r} is not a known time zone; "
            "use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def timezone() -> tzinfo:
    return _zone(timezone_name())


def today() -> date:
    """Today's date in the instance's time zone (the one function to freeze in tests)."""
    return datetime.now(timezone()).date()
