"""Cascading billing with resellers: one bill run gives the provider's wholesale invoices to
the reseller and the reseller's retail invoices to its customers, numbered from the
reseller's own sequence, in the formats its profile names."""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.billing_support import setup_catalog, subscribe, usage

FEATURE = "FT-3001.007"


@pytest.fixture
def app(make_app):
    return make_app(plugins=["invoice_pdf", "reseller_accounts"])


@pytest.fixture
def enabled(ctx, install_license):
    host = ctx.extensions["billhive"].host
    install_license([FEATURE])
    host.set_enabled("reseller_accounts", True)
    host.set_enabled("invoice_pdf", True)
    return ctx


def cents(value) -> int:
    return int((Decimal(value) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class Scenario:
    """provider -> reseller (own cycle day 1, profile cycle 15) -> customers C1 (2 seats),
    C2 (1 seat) on the reseller's plan (10.00/seat, 0.10/min), sold on the provider's
    wholesale plan (6.00/seat, 0.05/min); subscriptions from 2024-01-15, usage on 01-20."""

    def __init__(self, world, **profile):
        from plugins.reseller_accounts.billing import link_wholesale

        self.world = world
        self.reseller = world.add_account(
            world.provider,
            "Reseller",
            "reseller",
            bill_cycle_day=1,
            invoice_prefix="RS-",
            profile={
                "customer_invoice_creation": True,
                "customer_invoice_type": "PDF",
                "customer_billing_cycle_day": 15,
                **profile,
            },
        )
        _, self.wholesale = setup_catalog(world.provider, price="6.00", rate="0.05", code="VOICE")
        _, self.retail = setup_catalog(self.reseller, price="10.00", rate="0.10", code="VOICE")
        self.c1 = world.add_account(self.reseller, "C1", bill_cycle_day=3)
        self.c2 = world.add_account(self.reseller, "C2")
        s1 = subscribe(self.c1, self.retail, start="2024-01-15", quantity="2")
        s2 = subscribe(self.c2, self.retail, start="2024-01-15", quantity="1")
        usage(s1, "100", "2024-01-20", "c1-jan")
        usage(s2, "50", "2024-01-20", "c2-jan")
        link_wholesale(None, self.retail, self.wholesale)


def invoices(**where):
    from core.billing.models import Invoice

    query = Invoice.select().order_by(Invoice.id)
    for key, value in where.items():
        query = query.where(getattr(Invoice, key) == value)
    return list(query)


def files_of(invoice):
    from core.billing.models import InvoiceFile

    return sorted(f.format for f in InvoiceFile.select().where(InvoiceFile.invoice == invoice.id))


def test_one_bill_run_gives_wholesale_and_retail_invoices(enabled, world):
    from core.billing import engine

    s = Scenario(world)
    assert (s.c1.bill_cycle_day, s.c2.bill_cycle_day) == (15, 15)  # the profile's cycle

    summary = engine.run(date(2024, 3, 1))
    assert not summary["failures"] and not summary["render_errors"], summary

    # retail: the reseller invoices each customer for [01-15, 02-15), its own numbering
    retail = invoices(issuer=s.reseller.id)
    assert [(i.account_id, i.number) for i in retail] == [
        (s.c1.id, "RS-000001"),
        (s.c2.id, "RS-000002"),
    ]
    for inv in retail:
        assert (inv.period_start, inv.period_end) == (date(2024, 1, 15), date(2024, 2, 15))
        assert files_of(inv) == ["PDF"]
    assert [i.total for i in retail] == [cents("20.00") + cents("10.00"), cents("10.00") + 500]

    # wholesale: the provider invoices the reseller on the reseller's own cycle (day 1)
    wholesale = invoices(issuer=world.provider.id, account=s.reseller.id)
    assert [(i.period_start, i.period_end) for i in wholesale] == [
        (date(2024, 1, 1), date(2024, 2, 1)),
        (date(2024, 2, 1), date(2024, 3, 1)),
    ]
    assert [i.number for i in wholesale] == ["INV-000001", "INV-000002"]
    jan_lines = [(line.description, line.amount) for line in wholesale[0].lines]
    assert jan_lines == [
        ("C1: Hosting — Standard", cents(Decimal(12) * 17 / 31)),  # 17 of 31 days, 2 seats
        ("C1: Hosting usage", cents("5.00")),
        ("C2: Hosting — Standard", cents(Decimal(6) * 17 / 31)),
        ("C2: Hosting usage", cents("2.50")),
    ]
    assert [line.amount for line in wholesale[1].lines] == [1200, 600]
    for inv in retail + wholesale:
        assert inv.total == sum(line.amount for line in inv.lines)  # tax rate 0
    assert summary["invoices_created"] == 4

    # exactly once: a second run creates nothing
    again = engine.run(date(2024, 3, 1))
    assert again["invoices_created"] == 0


def test_customer_invoice_creation_off_gives_no_customer_invoices(enabled, world):
    from core.billing import engine

    s = Scenario(world, customer_invoice_creation=False)
    summary = engine.run(date(2024, 2, 15))
    assert invoices(issuer=s.reseller.id) == []
    reasons = {
        (x["account"], x["reason"])
        for x in summary["invoices_skipped"]
        if x["issuer"] == "Reseller"
    }
    assert reasons == {
        ("C1", "reseller profile: customer invoice creation is off"),
        ("C2", "reseller profile: customer invoice creation is off"),
    }
    assert len(invoices(account=s.reseller.id)) == 1  # the wholesale invoice still comes


def test_both_gives_two_files_per_invoice_and_raw_one(enabled, world):
    from core.billing import engine

    s = Scenario(world, customer_invoice_type="BOTH")
    engine.run(date(2024, 2, 15))
    retail = invoices(issuer=s.reseller.id)
    assert len(retail) == 2 and all(files_of(i) == ["PDF", "RAW"] for i in retail)

    from plugins.reseller_accounts.service import update_profile

    update_profile(None, s.reseller, {"customer_invoice_type": "RAW"})
    engine.run(date(2024, 3, 15))
    later = [i for i in invoices(issuer=s.reseller.id) if i.period_start == date(2024, 2, 15)]
    assert len(later) == 2 and all(files_of(i) == ["RAW"] for i in later)


def test_disabled_or_unlicensed_reseller_invoicing_is_reported_skipped(
    enabled, world, install_license
):
    from core.billing import engine

    s = Scenario(world)
    host = enabled.extensions["billhive"].host
    install_license(["FT-9999.001"])  # the licence no longer lists FT-3001.007
    summary = engine.run(date(2024, 2, 15))
    skipped = [x for x in summary["invoices_skipped"] if x["issuer"] == "Reseller"]
    assert len(skipped) == 2 and all(FEATURE in x["reason"] for x in skipped)
    assert invoices(issuer=s.reseller.id) == []

    install_license([FEATURE])
    host.set_enabled("reseller_accounts", False)
    summary = engine.run(date(2024, 2, 15))
    skipped = [x for x in summary["invoices_skipped"] if x["issuer"] == "Reseller"]
    assert len(skipped) == 2 and all("disabled" in x["reason"] for x in skipped)

    host.set_enabled("reseller_accounts", True)  # re-enabling resumes
    summary = engine.run(date(2024, 2, 15))
    assert len(invoices(issuer=s.reseller.id)) == 2


def test_wholesale_links_are_checked(enabled, world):
    from core.errors import ValidationFailed
    from plugins.reseller_accounts.billing import link_wholesale

    s = Scenario(world)
    _, foreign = setup_catalog(world.provider, currency="USD", code="USD")
    with pytest.raises(ValidationFailed) as err:
        link_wholesale(None, s.retail, foreign)
    assert "wholesale_plan_id" in err.value.errors
    with pytest.raises(ValidationFailed) as err:
        link_wholesale(None, s.wholesale, s.wholesale)
    assert "retail_plan_id" in err.value.errors


def test_wholesale_links_through_the_api_and_the_catalog_on_the_reseller_page(
    enabled, world, api, panel
):
    from core.billing.models import Subscription

    s = Scenario(world)
    _, other = setup_catalog(s.reseller, price="20.00", code="EXTRA")
    client = api(world.operator)
    resp = client.post(
        f"/api/v1/resellers/{s.reseller.id}/wholesale-links",
        json={"retail_plan_id": other.id, "wholesale_plan_id": s.wholesale.id},
    )
    assert resp.status_code == 201, resp.get_json()
    links = client.get(f"/api/v1/resellers/{s.reseller.id}/wholesale-links").get_json()
    assert {x["retail_plan_id"] for x in links} == {s.retail.id, other.id}
    resp = client.post(
        f"/api/v1/resellers/{s.reseller.id}/wholesale-links",
        json={"retail_plan_id": s.wholesale.id, "wholesale_plan_id": s.wholesale.id},
    )
    assert resp.status_code == 422 and "retail_plan_id" in resp.get_json()["errors"]
    anchors = Subscription.select().where(Subscription.account == s.reseller.id)
    assert anchors.count() == 1  # one anchor per reseller
    page = panel(world.operator).get(f"/resellers/{s.reseller.id}").get_data(as_text=True)
    assert 'id="reseller-catalog"' in page
    assert re.search(r"Standard \(6(\.00)? / 0\.05\)", page), page
