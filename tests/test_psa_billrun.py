"""psa_mapping through the real bill run (``core.billing.runs.engine.run``), ``billhive psa sync``
over every connected account, and what BH-PSA's expiry or absence still allows."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from tests import test_psa_support as support
from tests.billing_support import setup_catalog, subscribe, usage
from tests.fakes.connectwise import FakeConnectWise
from tests.test_psa_support import connect

# the shared fixtures, re-exported so pytest finds them in this module
cw = support.cw
fake = support.fake

FEATURE = "BH-PSA"
RESELLER_PROFILE = {
    "customer_invoice_creation": True,
    "customer_invoice_type": "RAW",
    "customer_billing_cycle_day": 1,
}


@pytest.fixture
def app(make_app):
    return make_app(plugins=["psa_mapping", "reseller_accounts"])


@pytest.fixture
def psa(ctx, world, install_license):
    """psa_mapping (BH-PSA) and reseller_accounts (FT-3001.007) licensed and enabled."""
    host = ctx.extensions["billhive"].host
    install_license([FEATURE, "FT-3001.007"])
    host.set_enabled("psa_mapping", True)
    host.set_enabled("reseller_accounts", True)
    return host


def map_service(account, code, psa_product, level, mapping_type="per_unit", unique_id="*"):
    from plugins.psa_mapping.service import integration as service

    return service.create_mapping(
        None,
        account,
        {"product_code": code, "mapping_type": mapping_type, "psa_product": psa_product,
         "unique_id": unique_id, "level": level},
    )  # fmt: skip


def link(account, customer, company, agreement):
    from plugins.psa_mapping.service import integration as service

    return service.confirm_link(
        None,
        account,
        {"customer_id": customer.id, "psa_company_id": company["id"],
         "agreement_id": agreement["id"]},
    )  # fmt: skip


def catalog_of(owner):
    """M365: 20.00 per seat a month (no usage); BACKUP: usage only, 0.05 per GB."""
    _, m365 = setup_catalog(owner, code="M365", price="20.00", rate="0")
    _, backup = setup_catalog(owner, code="BACKUP", price="0", rate="0.05")
    return m365, backup


def additions(fake):
    return {a["product"]["identifier"]: a for a in fake.additions.values()}


def issued_invoices(account):
    from core.billing.models import Invoice

    return list(
        Invoice.select()
        .where((Invoice.account == account.id) & (Invoice.kind == "invoice"))
        .order_by(Invoice.id)
    )


@pytest.fixture
def billing(psa, world, fake, cw):
    """The provider connected with M365 and BACKUP; Customer A linked and subscribed (3
    seats, 40 + 25 GB of backup in January); Customer B subscribed but not linked."""
    connect(world.provider, fake)
    m365, backup = catalog_of(world.provider)
    link(world.provider, world.customer_a, cw["company"], cw["agreement"])
    subs = {
        "m365": subscribe(world.customer_a, m365, start="2026-01-01", quantity="3"),
        "backup": subscribe(world.customer_a, backup, start="2026-01-01"),
        "b": subscribe(world.customer_b, m365, start="2026-01-01", quantity="9"),
    }
    usage(subs["backup"], "40", "2026-01-05", "a-backup-1")
    usage(subs["backup"], "25", "2026-01-20", "a-backup-2")
    return {"m365": m365, "backup": backup, "subs": subs}


# -- the real bill run -----------------------------------------------------------------------


def test_bill_run_issues_the_invoice_and_pushes_quantity_and_level(billing, world, fake, cw):
    from core.billing.runs import engine
    from core.connectors.models import SyncItem, SyncRun
    from plugins.psa_mapping.service.connectwise import parse_marker
    from plugins.psa_mapping.service.integration import external_key

    # M365 mapped for its Standard plan only (the line's source names the subscription)
    seats = map_service(world.provider, "M365", "M365-BP", 2, unique_id=str(billing["m365"].id))
    gigabytes = map_service(world.provider, "BACKUP", "BACKUP-GB", 5)

    summary = engine.run(date(2026, 2, 1))

    assert summary["invoices_created"] == 2 and not summary["failures"], summary
    (invoice,) = issued_invoices(world.customer_a)
    assert invoice.status == "issued" and invoice.issuer_id == world.provider.id
    assert sorted((line.product_code, line.quantity) for line in invoice.lines) == [
        ("BACKUP", Decimal(65)),
        ("M365", Decimal(3)),
    ]
    # invoice_finalized pushed each mapped service to the linked agreement's addition
    adds = additions(fake)
    assert sorted(adds) == ["BACKUP-GB", "M365-BP"]
    assert adds["M365-BP"]["quantity"] == Decimal(3)
    assert adds["BACKUP-GB"]["quantity"] == Decimal(65)
    assert parse_marker(adds["M365-BP"]["invoiceDescription"]) == (
        external_key(world.customer_a.id, seats.id),
        2,
    )
    assert parse_marker(adds["BACKUP-GB"]["invoiceDescription"]) == (
        external_key(world.customer_a.id, gigabytes.id),
        5,
    )
    assert {a["agreementId"] for a in adds.values()} == {cw["agreement"]["id"]}
    assert fake.additions_of(cw["agreement"]["id"]) == sorted(
        fake.additions.values(), key=lambda a: a["id"]
    )
    run = SyncRun.get()
    assert (run.trigger, run.invoice_id, run.status) == ("invoice_finalized", invoice.id, "ok")
    assert {(i.product_code, i.quantity, i.level, i.outcome) for i in SyncItem.select()} == {
        ("M365", "3", 2, "created"),
        ("BACKUP", "65", 5, "created"),
    }
    # Customer B is invoiced too, but it is not linked: nothing of its 9 seats reaches CW
    (b_invoice,) = issued_invoices(world.customer_b)
    assert b_invoice.status == "issued"
    assert SyncItem.select().where(SyncItem.customer == world.customer_b.id).count() == 0

    # February's run updates the same additions (one per customer and mapping) ...
    usage(billing["subs"]["backup"], "10", "2026-02-03", "a-backup-3")
    assert engine.run(date(2026, 3, 1))["invoices_created"] == 2
    adds = additions(fake)
    assert len(fake.additions) == 2
    assert (adds["M365-BP"]["quantity"], adds["BACKUP-GB"]["quantity"]) == (3, 10)
    # ... and running the same date again issues nothing and pushes nothing
    posts = len(fake.requests_to("/additions", method="POST"))
    assert engine.run(date(2026, 3, 1))["invoices_created"] == 0
    assert len(fake.requests_to("/additions", method="POST")) == posts
    assert len(fake.additions) == 2


# -- billhive psa sync without --account -------------------------------------------------------


@pytest.fixture
def two_integrations(psa, world, fake, cw):
    """The provider (fake) and a reseller (a second ConnectWise site) each connected, each
    with its own linked customer and mapping; invoices issued BEFORE anything was linked or
    mapped, so nothing was pushed at issuing time."""
    from core.billing.runs import engine

    with FakeConnectWise(company_id="reseller-site") as other:
        reseller = world.add_account(
            world.provider, "Acme Reseller", "reseller", profile=RESELLER_PROFILE
        )
        r_customer = world.add_account(reseller, "Acme Customer")
        p_m365, _ = catalog_of(world.provider)
        r_m365, _ = catalog_of(reseller)
        subscribe(world.customer_a, p_m365, start="2026-01-01", quantity="3")
        subscribe(r_customer, r_m365, start="2026-01-01", quantity="7")
        summary = engine.run(date(2026, 2, 1))
        assert not summary["failures"], summary
        assert issued_invoices(world.customer_a) and issued_invoices(r_customer)

        connect(world.provider, fake)
        connect(reseller, other)
        other.add_catalog_item("M365-BP", "Microsoft 365 Business Premium", Decimal("21.00"))
        r_company = other.add_company("Acme Customer Inc", "AcmeC")
        r_agreement = other.add_agreement(r_company["id"], "Acme Customer MSA")
        link(world.provider, world.customer_a, cw["company"], cw["agreement"])
        link(reseller, r_customer, r_company, r_agreement)
        map_service(world.provider, "M365", "M365-BP", 1)
        map_service(reseller, "M365", "M365-BP", 4)
        assert not fake.additions and not other.additions
        yield {"reseller": reseller, "customer": r_customer, "other": other}


def run_cli(ctx, monkeypatch, *args):
    from click.testing import CliRunner

    from hostapp import cli

    monkeypatch.setattr(cli, "_app", ctx)
    return CliRunner().invoke(cli.main, ["psa", "sync", *args])


def test_cli_sync_without_account_pushes_every_connected_account(
    two_integrations, world, fake, ctx, monkeypatch
):
    from core.connectors.models import SyncRun
    from plugins.psa_mapping.service.connectwise import parse_marker

    other = two_integrations["other"]
    result = run_cli(ctx, monkeypatch)

    assert result.exit_code == 0, result.output
    assert f"{world.provider.name}: pushing 1 item(s)" in result.output
    assert "Acme Reseller: pushing 1 item(s)" in result.output
    assert result.output.count("sync ok") == 2
    (mine,) = fake.additions.values()
    (theirs,) = other.additions.values()
    assert (mine["quantity"], parse_marker(mine["invoiceDescription"])[1]) == (3, 1)
    assert (theirs["quantity"], parse_marker(theirs["invoiceDescription"])[1]) == (7, 4)
    runs = {r.account_id: r for r in SyncRun.select()}
    assert set(runs) == {world.provider.id, two_integrations["reseller"].id}
    assert {r.trigger for r in runs.values()} == {"cli"}
    # a second sync finds nothing pending: no new addition anywhere
    again = run_cli(ctx, monkeypatch)
    assert again.exit_code == 0, again.output
    assert "pushing 0 item(s)" in again.output
    assert len(fake.additions) == 1 and len(other.additions) == 1


def test_cli_sync_with_no_connection_says_so(psa, ctx, monkeypatch):
    result = run_cli(ctx, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "No ConnectWise connection is configured" in result.output


# -- BH-PSA expired or absent: reads go on, new mappings and syncs are refused ----------------


class _Later(date):
    """``date.today()`` 60 days on: the 30-day test licence has expired."""

    @classmethod
    def today(cls):
        return date.fromordinal(date.today().toordinal() + 60)


def lose_licence(how, monkeypatch, install_license):
    from core import license_store
    from core.models import LicenseRecord

    if how == "expired":
        monkeypatch.setattr(license_store, "date", _Later)
    elif how == "absent":
        LicenseRecord.update(is_current=False).execute()
    else:  # a valid licence that does not list BH-PSA
        install_license(["FT-3001.007"], expires=date.today() + timedelta(days=30))


@pytest.mark.parametrize("how", ["expired", "absent", "not listed"])
def test_without_bh_psa_mappings_stay_readable_and_new_work_is_refused(
    billing, world, fake, cw, panel, api, ctx, monkeypatch, install_license, how
):
    from core.billing.runs import engine
    from core.connectors.models import ConnectorMapping, SyncItem, SyncRun
    from tests.conftest import forget_request_user

    mapping = map_service(world.provider, "M365", "M365-BP", 2)
    host = ctx.extensions["billhive"].host
    assert host.license_problem("psa_mapping") is None
    lose_licence(how, monkeypatch, install_license)
    problem = host.license_problem("psa_mapping")
    assert problem and FEATURE in problem
    assert "psa_mapping" in host.enabled  # the add-on stays enabled with its data

    fresh = forget_request_user

    acc = world.provider.id
    browser = panel(world.operator)
    client = api(world.operator)
    # readable: the pages and the API still show the existing mapping
    fresh()
    for url in (f"/accounts/{acc}/psa", f"/accounts/{acc}/psa/sync"):
        assert browser.get(url).status_code == 200, url
    fresh()
    setup_page = browser.get(f"/accounts/{acc}/psa/services/M365").get_data(as_text=True)
    assert 'class="mapping"' in setup_page and "M365-BP" in setup_page
    fresh()
    resp = client.get(f"/api/v1/psa/accounts/{acc}/mappings")
    assert resp.status_code == 200 and [m["id"] for m in resp.get_json()] == [mapping.id]
    fresh()
    assert client.get(f"/api/v1/psa/mappings/{mapping.id}").status_code == 200

    # a new mapping: refused naming BH-PSA through the panel wizard, the API and the service
    fresh()
    resp = browser.get(f"/accounts/{acc}/psa/services/BACKUP/add?mapping_type=per_unit")
    assert resp.status_code == 403 and FEATURE in resp.get_data(as_text=True)
    fresh()
    resp = browser.post(
        f"/accounts/{acc}/psa/services/BACKUP/add",
        data={"mapping_type": "per_unit", "psa_product": "BACKUP-GB", "unique_id": "*",
              "level": "1"},
    )  # fmt: skip
    assert resp.status_code == 403 and FEATURE in resp.get_data(as_text=True)
    fresh()
    resp = client.post(
        f"/api/v1/psa/accounts/{acc}/mappings",
        json={"product_code": "BACKUP", "mapping_type": "per_unit", "psa_product": "BACKUP-GB",
              "unique_id": "*", "level": 1},
    )  # fmt: skip
    assert resp.status_code == 403 and FEATURE in resp.get_json()["message"]
    assert [m.id for m in ConnectorMapping.select()] == [mapping.id]

    # syncs: refused from the API, the panel, the CLI and the connector; issuing goes on and
    # records the items as pending, pushing nothing
    summary = engine.run(date(2026, 2, 1))
    assert summary["invoices_created"] == 2 and not summary["failures"]
    assert [(i.product_code, i.outcome) for i in SyncItem.select()] == [("M365", "pending")]
    assert not fake.additions
    fresh()
    resp = client.post(f"/api/v1/psa/accounts/{acc}/sync-runs")
    assert resp.status_code == 403 and FEATURE in resp.get_json()["message"]
    fresh()
    resp = browser.post(f"/accounts/{acc}/psa/sync", follow_redirects=True)
    assert FEATURE in resp.get_data(as_text=True)
    result = run_cli(ctx, monkeypatch)
    assert result.exit_code != 0 and FEATURE in result.output
    result = run_cli(ctx, monkeypatch, "--account", str(acc))
    assert result.exit_code != 0 and FEATURE in result.output
    from core.connectors import sync as connectors_sync
    from core.errors import LicenseRequired

    with pytest.raises(LicenseRequired, match=FEATURE):  # the core's Retry of the connector
        connectors_sync.retry(None, world.provider, "connectwise")
    assert SyncRun.select().count() == 0 and not fake.additions

    # renewed: the first sync pushes what was recorded meanwhile
    monkeypatch.undo()
    install_license([FEATURE, "FT-3001.007"])
    assert host.license_problem("psa_mapping") is None
    result = run_cli(ctx, monkeypatch)
    assert result.exit_code == 0, result.output
    assert [a["quantity"] for a in fake.additions.values()] == [Decimal(3)]
    assert SyncItem.get().outcome == "created"
