"""billing_units end to end: a bill run puts the plugin's charges on the invoice, grouped and
subtotalled per billing unit (Unassigned included), and the PDF shows the groups."""

from __future__ import annotations

from datetime import date
from io import BytesIO

import pytest

from tests.billing_support import setup_catalog, subscribe


@pytest.fixture
def app(make_app):
    return make_app(plugins=["billing_units", "invoice_pdf"])


def test_bill_run_groups_unit_charges_and_pdf_shows_them(world, install_license, ctx):
    from pypdf import PdfReader

    from core.billing.invoicing import documents, storage
    from core.billing.models import Invoice
    from core.billing.runs import engine
    from plugins.billing_units.service import units as svc

    host = ctx.extensions["billhive"].host
    features = ["BH-UNITS"] + [f for f in [host.plugins["invoice_pdf"].meta.license_feature] if f]
    install_license(features)
    host.set_enabled("billing_units", True)
    host.set_enabled("invoice_pdf", True)

    _, plan = setup_catalog(world.provider, price="30.00")
    subscribe(world.customer_a, plan, start="2026-01-01")
    acc = world.customer_a
    n1 = svc.create_number(None, acc, {"e164": "+442079460001"})
    svc.create_number(None, acc, {"e164": "+442079460002"})
    svc.create_unit(
        None, acc, {"name": "Sales", "user_ids": [world.user_a.id], "number_ids": [n1.id]}
    )
    svc.update_settings(None, acc, {"number_rental_price": "2.00", "seat_price": "5.00"})
    svc.add_calls(
        None,
        acc,
        [
            {
                "external_id": "1",
                "number": "+442079460001",
                "started_at": "2026-01-05T10:00:00",
                "duration_seconds": 60,
                "cost": "1.25",
            },
            {
                "external_id": "2",
                "number": "+442079460002",
                "started_at": "2026-01-06T10:00:00",
                "duration_seconds": 60,
                "cost": "0.50",
            },
        ],  # fmt: skip
    )

    summary = engine.run(date(2026, 2, 1))
    assert not summary["failures"], summary
    invoice = Invoice.get(Invoice.account == acc.id)
    doc = documents.build(invoice)
    groups = {g["name"]: g for g in doc["groups"]}
    assert set(groups) >= {"Sales", "Unassigned"}, doc["groups"]
    report = svc.compute_report(acc, (date(2026, 1, 1), date(2026, 2, 1)))
    rows = {r["unit"]: r for r in report["units"]}
    # Sales: 1.25 usage + 2.00 rental + 5.00 seat; Unassigned: 0.50 + 2.00 rental
    assert rows["Sales"]["total"] == 825 and rows["Unassigned"]["total"] == 250
    for name in ("Sales", "Unassigned"):
        lines = [ln for ln in doc["lines"] if ln["group"] == name]
        assert sum(ln["amount_minor"] for ln in lines) == rows[name]["total"]
    data, _, _ = storage.file_for(invoice, "PDF")
    text = "".join(p.extract_text() for p in PdfReader(BytesIO(data)).pages)
    assert "Sales" in text and "Unassigned" in text


def test_unit_charges_after_a_cycle_day_change_bill_only_the_days_not_billed(
    world, install_license, ctx, monkeypatch
):
    """Coverage (issue 15): the billing-units charges bill from what their key is billed
    through; after a cycle-day change one short stretch, prorated, with only its calls."""
    from core import clock
    from core.billing.models import Account, Coverage, Invoice
    from core.billing.runs import engine
    from plugins.billing_units.service import units as svc

    host = ctx.extensions["billhive"].host
    install_license(["BH-UNITS"])
    host.set_enabled("billing_units", True)
    acc = world.customer_a
    n1 = svc.create_number(None, acc, {"e164": "+442079460001"})
    svc.create_unit(
        None, acc, {"name": "Sales", "user_ids": [world.user_a.id], "number_ids": [n1.id]}
    )
    svc.update_settings(None, acc, {"number_rental_price": "3.00", "seat_price": "30.00"})
    calls = [("nov", "2026-11-20T10:00:00", "1.00"), ("dec-a", "2026-11-28T10:00:00", "2.00"),
             ("dec-b", "2026-12-05T10:00:00", "4.00"), ("dec-c", "2026-12-20T10:00:00", "8.00")]  # fmt: skip
    svc.add_calls(None, acc, [{"external_id": e, "number": "+442079460001", "started_at": at,
                               "duration_seconds": 60, "cost": cost} for e, at, cost in calls])  # fmt: skip
    monkeypatch.setattr(clock, "today", lambda: date(2026, 12, 1))
    Account.update(created_at="2026-11-01 00:00:00").where(Account.id == acc.id).execute()
    engine.run(date(2026, 12, 1))
    (nov,) = Invoice.select().where(Invoice.account == acc.id)
    assert nov.total == 100 + 200 + 300 + 3000  # calls of November, a number, a seat

    Account.update(bill_cycle_day=15).where(Account.id == acc.id).execute()
    monkeypatch.setattr(clock, "today", lambda: date(2026, 12, 15))
    summary = engine.run(date(2026, 12, 15))
    (short,) = [Invoice.get_by_id(i["id"]) for i in summary["invoices"]]
    lines = {line.product_code: line for line in short.lines}
    assert lines["BU-CALLS"].amount == 400  # only the call of 1..15 December
    assert lines["BU-SEAT"].description == "User seats — Sales (14 of 30 days)"
    assert (lines["BU-SEAT"].amount, lines["BU-NUMBER"].amount) == (1400, 140)
    assert {(line.service_start, line.service_end) for line in short.lines} == {
        (date(2026, 12, 1), date(2026, 12, 15))
    }
    assert engine.run(date(2026, 12, 15))["invoices_created"] == 0
    assert [(c.start, c.end) for c in Coverage.select().order_by(Coverage.start)] == [
        (date(2026, 11, 1), date(2026, 12, 1)),
        (date(2026, 12, 1), date(2026, 12, 15)),
    ]
