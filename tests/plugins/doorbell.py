"""A billing connector without settings (``settings_schema=None``): it rings for each issued
invoice. For the tests of the core's connector runtime (core.connectors)."""

from __future__ import annotations

from core import hookimpl
from core.registry import BillingConnector, PluginMeta, PushItem, PushResult

PLUGIN = PluginMeta(
    name="doorbell",
    title="Doorbell",
    version="1.0.0",
    description="Rings for each issued invoice (a test connector without settings).",
)

RUNG: list[str] = []


def test(settings: dict) -> str:
    return "the bell works"


def items(context) -> list[PushItem]:
    return [PushItem("invoice", f"ring:{context.invoice.id}")]


def push(settings, item) -> PushResult:
    RUNG.append(item.external_key)
    return PushResult("created", len(RUNG), "rung")


@hookimpl
def register_billing_connectors():
    return [BillingConnector("doorbell", "Doorbell", None, test, push, items)]
