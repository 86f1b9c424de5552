"""A billing connector for the tests of the core's connector runtime (core.connectors).

It "books" each issued invoice (one item per invoice) into ``BOOKED``; ``FAILURES`` holds
what the next pushes raise (a message, or ``("uncertain", message)``), one per push.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core import hookimpl
from core.registry import BillingConnector, PluginMeta, PushFailed, PushItem, PushResult

PLUGIN = PluginMeta(
    name="bookkeeper",
    title="Bookkeeper",
    version="1.0.0",
    description="Books issued invoices (a test connector).",
)

BOOKED: list[dict] = []
FAILURES: list = []


class Settings(Schema):
    url = fields.Url(required=True, metadata={"label": "Book URL"})
    token = fields.String(
        required=True, load_only=True, metadata={"label": "Token", "secret": True}
    )
    shelf = fields.Integer(
        load_default=1, validate=validate.Range(1, 9), metadata={"label": "Shelf"}
    )


def test(settings: dict) -> str:
    if settings.get("token") == "wrong":
        raise PushFailed("the book refused the token")
    return f"reached {settings['url']}"


def items(context) -> list[PushItem]:
    doc = context.document
    return [
        PushItem(
            "invoice",
            f"invoice:{context.invoice.id}",
            quantity=str(len(doc["lines"])),
            payload={"number": doc["number"], "total": doc["total_minor"]},
        )
    ]


def push(settings, item) -> PushResult:
    if FAILURES:
        failure = FAILURES.pop(0)
        if isinstance(failure, tuple):
            raise PushFailed(failure[1], uncertain=True)
        raise PushFailed(failure)
    BOOKED.append({"token": settings["token"], "shelf": settings["shelf"], **item.payload})
    return PushResult("created", len(BOOKED), f"booked on shelf {settings['shelf']}")


@hookimpl
def register_billing_connectors():
    return [BillingConnector("bookkeeper", "Bookkeeper", Settings, test, push, items)]
