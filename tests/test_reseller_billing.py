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
        from plugins.reseller_accounts.service.billing import link_wholesale

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
        self.c1 = world.add_account(self.reseller, "C1")
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
    from core.billing.runs import engine

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
        ("C1: Hosting — Standard (17 of 31 days)", cents(Decimal(12) * 17 / 31)),  # 2 seats
        ("C1: Hosting usage", cents("5.00")),
        ("C2: Hosting — Standard (17 of 31 days)", cents(Decimal(6) * 17 / 31)),
        ("C2: Hosting usage", cents("2.50")),
    ]
    assert [line.amount for line in wholesale[1].lines] == [1200, 600]
    for inv in retail + wholesale:
        assert inv.total == sum(line.amount for line in inv.lines)  # tax rate 0
    assert summary["invoices_created"] == 4

    # exactly once: a second run creates nothing
    again = engine.run(date(2024, 3, 1))
    assert again["invoices_created"] == 0


def test_the_reseller_pays_wholesale_from_the_first_day_anything_below_it_consumed(enabled, world):
    """The reseller was created today; its customers consumed from 2024 on, and C3, added
    after the plans were linked, from 2023-12-10: the provider's wholesale invoices start
    with December 2023, and the reseller holds no subscription of its own."""
    from core.billing.models import Subscription
    from core.billing.runs import engine

    s = Scenario(world)
    c3 = world.add_account(s.reseller, "C3")
    subscribe(c3, s.retail, start="2023-12-10", quantity="1")
    summary = engine.run(date(2024, 2, 1))
    assert not summary["failures"], summary

    wholesale = invoices(issuer=world.provider.id, account=s.reseller.id)
    assert [(i.period_start, i.period_end) for i in wholesale] == [
        (date(2023, 12, 1), date(2024, 1, 1)),
        (date(2024, 1, 1), date(2024, 2, 1)),
    ]
    december = [(line.description, line.amount) for line in wholesale[0].lines]
    assert december == [("C3: Hosting — Standard (22 of 31 days)", cents(Decimal(6) * 22 / 31))]
    assert not Subscription.select().where(Subscription.account == s.reseller.id).exists()


def test_customer_invoice_creation_off_gives_no_customer_invoices(enabled, world):
    from core.billing.runs import engine

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
    from core.billing.runs import engine

    s = Scenario(world, customer_invoice_type="BOTH")
    engine.run(date(2024, 2, 15))
    retail = invoices(issuer=s.reseller.id)
    assert len(retail) == 2 and all(files_of(i) == ["PDF", "RAW"] for i in retail)

    from plugins.reseller_accounts.service.resellers import update_profile

    update_profile(None, s.reseller, {"customer_invoice_type": "RAW"})
    engine.run(date(2024, 3, 15))
    later = [i for i in invoices(issuer=s.reseller.id) if i.period_start == date(2024, 2, 15)]
    assert len(later) == 2 and all(files_of(i) == ["RAW"] for i in later)


def test_disabled_or_unlicensed_reseller_invoicing_is_reported_skipped(
    enabled, world, install_license
):
    from core.billing.runs import engine

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
    from plugins.reseller_accounts.service.billing import link_wholesale

    s = Scenario(world)
    _, foreign = setup_catalog(world.provider, currency="USD", code="USD")
    with pytest.raises(ValidationFailed) as err:
        link_wholesale(None, s.retail, foreign)
    assert "wholesale_plan_id" in err.value.errors
    with pytest.raises(ValidationFailed) as err:
        link_wholesale(None, s.wholesale, s.wholesale)
    assert "retail_plan_id" in err.value.errors


def test_parallel_links_of_one_retail_plan_give_one_link_and_no_error(enabled, world, api):
    """Callers linking one retail plan at once (some to one wholesale plan, some to another)
    all succeed, one after the other: one link remains, on one of the two plans."""
    from plugins.reseller_accounts.models import WholesaleLink
    from tests.test_billing_races import answers, race

    s = Scenario(world)
    _, retail = setup_catalog(s.reseller, price="20.00", code="EXTRA")
    _, other_wholesale = setup_catalog(world.provider, price="7.00", code="EXTRA")
    wholesale_ids = [s.wholesale.id, other_wholesale.id]
    url = f"/api/v1/resellers/{s.reseller.id}/wholesale-links"
    clients = [api(world.operator) for _ in range(8)]
    results = answers(race([
        lambda c=c, w=wholesale_ids[i % 2]: c.post(
            url, json={"retail_plan_id": retail.id, "wholesale_plan_id": w})
        for i, c in enumerate(clients)
    ]))  # fmt: skip
    assert [status for status, _ in results] == [201] * 8, results
    [link] = WholesaleLink.select().where(WholesaleLink.retail_plan == retail.id)
    assert link.wholesale_plan_id in wholesale_ids


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
    # linking writes no placeholder row into the core's subscriptions: the reseller holds none
    assert not Subscription.select().where(Subscription.account == s.reseller.id).exists()
    page = panel(world.operator).get(f"/resellers/{s.reseller.id}").get_data(as_text=True)
    assert 'id="reseller-catalog"' in page
    assert re.search(r"Standard \(6(\.00)? / 0\.05\)", page), page


def test_sub_resellers_the_same_rules_one_level_down(enabled, world):
    """provider (sub-resellers allowed) -> R1 (own cycle day 1, profile PDF) -> R2 (own cycle
    day 5, profile RAW, cycle 20) -> D1 (2 seats), D2 (1 seat) on R2's plan (10.00/seat,
    0.10/min), sold on R1's plan (7.00, 0.05), itself sold on the provider's (4.00, 0.02).
    Subscriptions from 2024-01-20; usage D1 100 on 01-25, D2 50 on 02-10."""
    from core.billing.runs import engine
    from plugins.reseller_accounts.service.billing import link_wholesale
    from plugins.reseller_accounts.service.resellers import set_allow_sub_resellers

    set_allow_sub_resellers(None, world.provider, True)
    r1 = world.add_account(
        world.provider,
        "R1",
        "reseller",
        bill_cycle_day=1,
        invoice_prefix="R1-",
        profile={
            "customer_invoice_creation": True,
            "customer_invoice_type": "PDF",
            "customer_billing_cycle_day": 10,
        },
    )
    r2 = world.add_account(
        r1,
        "R2",
        "reseller",
        bill_cycle_day=5,
        invoice_prefix="R2-",
        profile={
            "customer_invoice_creation": True,
            "customer_invoice_type": "RAW",
            "customer_billing_cycle_day": 20,
        },
    )
    assert r2.bill_cycle_day == 5  # a sub-reseller keeps its own day
    _, provider_plan = setup_catalog(world.provider, price="4.00", rate="0.02", code="VOICE")
    _, r1_plan = setup_catalog(r1, price="7.00", rate="0.05", code="VOICE")
    _, r2_plan = setup_catalog(r2, price="10.00", rate="0.10", code="VOICE")
    d1 = world.add_account(r2, "D1")
    d2 = world.add_account(r2, "D2")
    assert (d1.bill_cycle_day, d2.bill_cycle_day) == (20, 20)  # R2's profile
    s1 = subscribe(d1, r2_plan, start="2024-01-20", quantity="2")
    s2 = subscribe(d2, r2_plan, start="2024-01-20", quantity="1")
    usage(s1, "100", "2024-01-25", "d1-jan")
    usage(s2, "50", "2024-02-10", "d2-feb")
    # the upper link first: R1 is billed from D1's and D2's start once R2's plan is linked
    link_wholesale(None, r1_plan, provider_plan)
    link_wholesale(None, r2_plan, r1_plan)

    summary = engine.run(date(2024, 2, 20))
    assert not summary["failures"] and not summary["render_errors"], summary

    # retail: R2 invoices D1 and D2 for [01-20, 02-20), R2's numbering, RAW
    retail = invoices(issuer=r2.id)
    assert [(i.account_id, i.number) for i in retail] == [
        (d1.id, "R2-000001"),
        (d2.id, "R2-000002"),
    ]
    assert all(
        (i.period_start, i.period_end) == (date(2024, 1, 20), date(2024, 2, 20)) for i in retail
    )
    assert all(files_of(i) == ["RAW"] for i in retail)
    assert [i.total for i in retail] == [
        cents("20.00") + cents("10.00"),  # 2 x 10.00 + 100 x 0.10
        cents("10.00") + cents("5.00"),  # 1 x 10.00 + 50 x 0.10
    ]

    # wholesale one level down: R1 invoices R2 on R2's own day 5 for [01-05, 02-05) at R1's
    # plan (7.00, 0.05), R1's numbering, in R1's Customer Invoice Type (PDF)
    (mid,) = invoices(issuer=r1.id)
    assert (mid.account_id, mid.number) == (r2.id, "R1-000001")
    assert (mid.period_start, mid.period_end) == (date(2024, 1, 5), date(2024, 2, 5))
    assert files_of(mid) == ["PDF"]
    assert [(line.description, line.amount) for line in mid.lines] == [
        ("D1: Hosting — Standard (16 of 31 days)", cents(Decimal(14) * 16 / 31)),  # 2 seats
        ("D1: Hosting usage", cents("5.00")),  # 100 x 0.05
        ("D2: Hosting — Standard (16 of 31 days)", cents(Decimal(7) * 16 / 31)),  # usage: 02-10
    ]
    assert mid.total == 723 + 500 + 361

    # wholesale at the top: the provider invoices R1 on R1's day 1 for [01-01, 02-01) at the
    # provider's plan (4.00, 0.02) for what R2's customers consumed
    (top,) = invoices(issuer=world.provider.id, account=r1.id)
    assert (top.number, top.period_start, top.period_end) == (
        "INV-000001",
        date(2024, 1, 1),
        date(2024, 2, 1),
    )
    assert [(line.description, line.amount) for line in top.lines] == [
        ("R2 / D1: Hosting — Standard (12 of 31 days)", cents(Decimal(8) * 12 / 31)),
        ("R2 / D1: Hosting usage", cents("2.00")),  # 100 x 0.02
        ("R2 / D2: Hosting — Standard (12 of 31 days)", cents(Decimal(4) * 12 / 31)),
    ]
    assert top.total == 310 + 200 + 155
    assert invoices(issuer=world.provider.id, account=r2.id) == []  # R2 is R1's to invoice
    assert summary["invoices_created"] == 4

    # the next full periods: R1 -> R2 [02-05, 03-05), provider -> R1 [02-01, 03-01)
    summary = engine.run(date(2024, 3, 5))
    assert not summary["failures"], summary
    assert summary["invoices_created"] == 2
    later = invoices(issuer=r1.id)[1]
    assert (later.period_start, later.number) == (date(2024, 2, 5), "R1-000002")
    assert later.total == cents("14.00") + cents("7.00") + cents("2.50")  # D2: 50 x 0.05
    later = invoices(issuer=world.provider.id, account=r1.id)[1]
    assert (later.period_start, later.number) == (date(2024, 2, 1), "INV-000002")
    assert later.total == cents("8.00") + cents("4.00") + cents("1.00")  # D2: 50 x 0.02
    for inv in invoices():
        assert inv.total == sum(line.amount for line in inv.lines)  # tax rate 0
    assert engine.run(date(2024, 3, 5))["invoices_created"] == 0  # exactly once


def test_the_provider_reverse_charges_a_reseller_in_another_eu_country_which_taxes_its_own(
    world, enabled
):
    """The tax rule on both levels of one bill run: the provider (Berlin) sells wholesale to
    a reseller with an Austrian VAT ID (reverse charge, no tax); the reseller charges its own
    Austrian customers its rate and puts its own bank account on their invoices."""
    from core.billing.invoicing import documents, parties
    from core.billing.invoicing.tax import REVERSE_CHARGE_STATEMENT
    from core.billing.runs import engine
    from core.models import Account

    scenario = Scenario(world)
    parties.update(None, world.provider, {"country": "DE", "vat_id": "DE136695976",
                                          "iban": "DE89370400440532013000"})  # fmt: skip
    Account.update(tax_rate="19").where(Account.id == world.provider.id).execute()
    reseller = scenario.reseller
    parties.update(None, reseller, {"legal_name": "Reseller GmbH", "country": "AT",
                                    "vat_id": "ATU12345675", "iban": "AT611904300234573201"})  # fmt: skip
    Account.update(tax_rate="20").where(Account.id == reseller.id).execute()
    parties.update(None, scenario.c1, {"country": "AT", "vat_id": "ATU23456784"})
    engine.run(date(2024, 3, 1))
    wholesale = invoices(account=reseller.id, issuer=world.provider.id)
    retail = invoices(issuer=reseller.id)
    assert wholesale and retail
    for invoice in wholesale:
        doc = documents.build(invoice)
        assert (invoice.tax_rate, invoice.tax) == ("0", 0)
        assert doc["reverse_charge_statement"] == REVERSE_CHARGE_STATEMENT
        assert doc["recipient"]["vat_id"] == "ATU12345675"
        assert doc["payment"]["iban"] == "DE89 3704 0044 0532 0130 00"
    for invoice in retail:  # Austria to Austria: the reseller's 20 %
        doc = documents.build(invoice)
        assert invoice.tax_rate == "20" and invoice.tax > 0
        assert doc["reverse_charge"] is False
        assert doc["issuer"]["name"] == "Reseller GmbH"
        assert doc["payment"]["iban"] == "AT61 1904 3002 3457 3201"
