"""Test plugin for the billing engine: adds a support charge to every invoice through
``charges_for_period``; can be told to sleep (to kill a run midway) or to raise, and to
bill from an earlier day than an account's own (``SINCE``, its ``charges_since`` answer;
an exception there is raised).

Mode from ``MODE`` (in-process tests) or the environment (subprocess tests):
``BILLHIVE_TEST_CHARGES=sleep:0.3`` / ``raise`` / ``ok``.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal

from core import hookimpl
from core.registry import Charge, PluginMeta

PLUGIN = PluginMeta(name="billing_charges", title="Test charges", version="1.0", api_version=3)
MODE: str | None = None
SINCE = None
CALLS: list = []


@hookimpl
def charges_since(account):
    if isinstance(SINCE, Exception):
        raise SINCE
    return SINCE


@hookimpl
def charges_for_period(account, period):
    mode = MODE or os.environ.get("BILLHIVE_TEST_CHARGES", "ok")
    CALLS.append((account.id, period))
    if mode == "raise":
        raise RuntimeError("support desk unreachable")
    if mode.startswith("sleep:"):
        time.sleep(float(mode.split(":", 1)[1]))
    return [Charge("Support", Decimal("1"), Decimal("5.00"), unit="month", product_code="SUP",
                   group="Services", source="billing_charges")]  # fmt: skip
