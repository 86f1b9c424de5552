"""psa_mapping: the Billing Setup wizard, mappings, and pushing quantities to ConnectWise."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests import test_psa_support as support
from tests.test_psa_support import connect

# the shared fixtures, re-exported so pytest finds them in this module
app = support.app
cw = support.cw
fake = support.fake
psa = support.psa


@pytest.fixture
def setup(psa, world, fake, cw):
    """Provider connected, two services in its catalog, Customer A linked to its company."""
    from core.billing import catalog
    from plugins.psa_mapping.service import integration as service

    connect(world.provider, fake)
    products = {}
    for code, name in (("M365", "Microsoft 365"), ("BACKUP", "Backup")):
        products[code] = catalog.create_product(
            None,
            {"account_id": world.provider.id, "code": code, "name": name, "unit": "seat",
             "kind": "recurring"},
        )  # fmt: skip
    plan = catalog.create_plan(
        None,
        {"product_id": products["M365"].id, "name": "Standard", "currency": "EUR",
         "recurring_price": "20.00", "usage_rate": "0"},
    )  # fmt: skip
    service.confirm_link(
        None,
        world.provider,
        {
            "customer_id": world.customer_a.id,
            "psa_company_id": cw["company"]["id"],
            "agreement_id": cw["agreement"]["id"],
        },
    )
    return {"products": products, "plan": plan}


def map_service(account, code, psa_product, level, mapping_type="per_unit", unique_id="*"):
    from plugins.psa_mapping.service import integration as service

    return service.create_mapping(
        None,
        account,
        {"product_code": code, "mapping_type": mapping_type, "psa_product": psa_product,
         "unique_id": unique_id, "level": level},
    )  # fmt: skip


def issue_invoice(customer, issuer, lines):
    from core.billing.invoicing import lifecycle as invoices

    draft = invoices.create_draft(
        None,
        customer,
        issuer,
        [
            {"description": code, "quantity": qty, "unit_price": "10.00", "product_code": code}
            for code, qty in lines
        ],
    )
    return invoices.issue(draft)


def additions(fake):
    return sorted(fake.additions.values(), key=lambda a: a["id"])


# -- the wizard ----------------------------------------------------------------------------------


def test_billing_page_lists_services_with_billing_setup(setup, world, panel):
    page = panel(world.operator).get(f"/accounts/{world.provider.id}/psa").get_data(as_text=True)
    assert "Billing Setup" in page and "M365" in page and "BACKUP" in page
    assert "PSA billing" in page  # the account tab


def test_add_billing_mapping_walks_the_steps(setup, world, panel, fake):
    from core.connectors.models import ConnectorMapping

    client = panel(world.operator)
    base = f"/accounts/{world.provider.id}/psa/services/M365"
    setup_page = client.get(base).get_data(as_text=True)
    assert "Add Billing Mapping" in setup_page
    step1 = client.get(base + "/add").get_data(as_text=True)
    assert "Select Type" in step1 and "Product/Services" not in step1
    step2 = client.get(base + "/add?mapping_type=per_unit").get_data(as_text=True)
    assert "Product/Services" in step2 and "M365-BP" in step2 and "BACKUP-GB" in step2
    assert "Unique ID/Plan" not in step2
    step3 = client.get(base + "/add?mapping_type=per_unit&psa_product=M365-BP").get_data(
        as_text=True
    )
    assert "Unique ID/Plan" in step3 and "Level" in step3 and "Confirm" in step3
    assert "Cancel" in step3 and "Standard (EUR)" in step3
    # a negative level is refused with the field named; nothing saved
    resp = client.post(
        base + "/add",
        data={"mapping_type": "per_unit", "psa_product": "M365-BP", "unique_id": "*",
              "level": "-1"},
    )  # fmt: skip
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "Level: must be a whole number" in page  # as labelled
    assert ConnectorMapping.select().count() == 0
    resp = client.post(
        base + "/add",
        data={"mapping_type": "per_unit", "psa_product": "M365-BP",
              "unique_id": str(setup["plan"].id), "level": "2"},
    )  # fmt: skip
    assert resp.status_code == 302
    mapping = ConnectorMapping.get()
    assert (mapping.product_code, mapping.remote_product, mapping.level) == ("M365", "M365-BP", 2)
    assert mapping.unique_id == str(setup["plan"].id)
    assert mapping.remote_product_name == "Microsoft 365 Business Premium"
    listed = client.get(base).get_data(as_text=True)
    assert "M365-BP" in listed and "Delete mapping" in listed
    # the trash icon deletes
    resp = client.post(f"/accounts/{world.provider.id}/psa/mappings/{mapping.id}/delete")
    assert resp.status_code == 302 and ConnectorMapping.select().count() == 0


def test_mappings_of_another_source_are_read_only(setup, world, panel, api):
    from core.connectors.models import ConnectorMapping

    foreign = ConnectorMapping.create(
        account=world.provider, connector="connectwise", product_code="BACKUP",
        mapping_type="per_unit", remote_product="BACKUP-GB", level=1, source="ECHOplatform",
    )  # fmt: skip
    client = panel(world.operator)
    page = client.get(f"/accounts/{world.provider.id}/psa/services/BACKUP").get_data(as_text=True)
    assert "read-only" in page and "Delete mapping" not in page
    billing = client.get(f"/accounts/{world.provider.id}/psa").get_data(as_text=True)
    assert "set up by another source (ECHOplatform) is displayed as read-only" in billing
    client.post(f"/accounts/{world.provider.id}/psa/mappings/{foreign.id}/delete")
    assert ConnectorMapping.select().count() == 1
    resp = api(world.operator).delete(f"/api/v1/psa/mappings/{foreign.id}")
    assert resp.status_code == 422 and ConnectorMapping.select().count() == 1


def test_mapping_api_and_scoping(setup, world, api):
    client = api(world.operator)
    url = f"/api/v1/psa/accounts/{world.provider.id}/mappings"
    resp = client.post(url, json={"product_code": "BACKUP", "mapping_type": "per_unit",
                                  "psa_product": "NOPE", "level": 0})  # fmt: skip
    assert resp.status_code == 422 and "psa_product" in resp.get_json()["errors"]
    resp = client.post(url, json={"product_code": "BACKUP", "mapping_type": "per_unit",
                                  "psa_product": "BACKUP-GB", "level": 3})  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    assert client.get(url).get_json()[0]["level"] == 3


def test_customer_gets_404_for_the_providers_mappings(setup, world, api):
    mapping = map_service(world.provider, "BACKUP", "BACKUP-GB", 1)
    client = api(world.user_a)
    assert client.get(f"/api/v1/psa/mappings/{mapping.id}").status_code == 404
    assert client.delete(f"/api/v1/psa/mappings/{mapping.id}").status_code == 404


# -- sync ----------------------------------------------------------------------------------------


def test_issuing_an_invoice_pushes_quantities_and_levels(setup, world, fake, cw):
    from core.connectors.models import SyncItem, SyncRun
    from plugins.psa_mapping.service.connectwise import parse_marker

    map_service(world.provider, "M365", "M365-BP", 2)
    map_service(world.provider, "BACKUP", "BACKUP-GB", 5, mapping_type="per_account")
    invoice = issue_invoice(world.customer_a, world.provider, [("M365", "3"), ("M365", "2"),
                                                                ("BACKUP", "40")])  # fmt: skip
    adds = sorted(additions(fake), key=lambda a: a["product"]["identifier"])
    assert [(a["product"]["identifier"], a["quantity"]) for a in adds] == [
        ("BACKUP-GB", Decimal(1)),
        ("M365-BP", Decimal(5)),
    ]
    assert [parse_marker(a["invoiceDescription"])[1] for a in adds] == [5, 2]
    assert {a["agreementId"] for a in adds} == {cw["agreement"]["id"]}
    run = SyncRun.get()
    assert run.status == "ok" and run.invoice_id == invoice.id
    assert {i.outcome for i in SyncItem.select()} == {"created"}
    # the next period updates the same additions, it does not add new ones
    issue_invoice(world.customer_a, world.provider, [("M365", "7")])
    adds = {a["product"]["identifier"]: a for a in additions(fake)}
    assert len(adds) == 2 and adds["M365-BP"]["quantity"] == Decimal(7)
    # Customer B is not linked: its invoices push nothing
    issue_invoice(world.customer_b, world.provider, [("M365", "9")])
    assert len(additions(fake)) == 2


def test_replay_after_a_timeout_never_adds_twice(setup, world, fake):
    from core.connectors.models import SyncItem
    from plugins.psa_mapping.service import integration as service

    map_service(world.provider, "M365", "M365-BP", 1)
    # ConnectWise commits the POST, but answers after the client's 0.5 s timeout
    fake.delay_next("/additions", 1.5, method="POST")
    issue_invoice(world.customer_a, world.provider, [("M365", "4")])
    assert len(additions(fake)) == 1
    item = SyncItem.get()
    assert item.outcome == "created"
    # replaying the sync (and pushing the same item again) finds the addition by its key
    item.outcome = "pending"
    item.save()
    run = service.sync(world.provider, "test")
    assert run.status == "ok"
    assert SyncItem.get().outcome == "unchanged"
    assert len(additions(fake)) == 1 and additions(fake)[0]["quantity"] == Decimal(4)


def test_a_post_saved_after_the_timeout_ends_as_one_addition(setup, world, fake):
    """Reproduction (issue 15, item 5): ConnectWise stores the POST a moment after the
    client gave up; the sync finds it by its key instead of posting a second one."""
    from core.connectors.models import SyncItem

    map_service(world.provider, "M365", "M365-BP", 1)
    held = fake.save_late("/additions", method="POST", seconds=1.0)  # client timeout: 0.5 s
    issue_invoice(world.customer_a, world.provider, [("M365", "4")])
    assert held.saved.is_set()
    item = SyncItem.get()
    assert item.outcome == "created", item.message
    assert [a["quantity"] for a in additions(fake)] == [Decimal(4)]
    assert len(fake.requests_to("/additions", method="POST")) == 1


def test_an_unconfirmed_post_leaves_the_item_uncertain_until_the_next_sync(
    setup, world, fake, ctx, panel
):
    from core.connectors.models import SyncItem, SyncRun
    from plugins.psa_mapping.service import integration as service

    ctx.config["PSA_CONFIRM_SECONDS"] = 0.3  # operator setting: look for it briefly
    map_service(world.provider, "M365", "M365-BP", 1)
    held = fake.save_late("/additions", method="POST")
    issue_invoice(world.customer_a, world.provider, [("M365", "4")])
    item = SyncItem.get()
    assert item.outcome == "uncertain"
    assert "the next sync looks for its key" in item.message
    run = SyncRun.get()
    assert run.status == "partial" and "1 uncertain" in run.message
    assert additions(fake) == [] and len(fake.requests_to("/additions", method="POST")) == 1
    log = panel(world.operator).get(f"/accounts/{world.provider.id}/psa/sync")
    assert "uncertain" in log.get_data(as_text=True)

    assert held.release()  # ConnectWise stored it after all
    rerun = service.sync(world.provider, "test")
    assert rerun.status == "ok", rerun.message
    assert SyncItem.get().outcome == "unchanged"
    assert [a["quantity"] for a in additions(fake)] == [Decimal(4)]
    assert len(fake.requests_to("/additions", method="POST")) == 1


def test_every_sync_cancels_duplicate_additions_and_logs_them(setup, world, fake, cw, panel):
    """Reproduction (issue 15, item 5): a duplicate with the same key kept billing; the
    next sync cancels it at ConnectWise and says so in the sync log."""
    from datetime import date

    from core.connectors.models import SyncItem
    from plugins.psa_mapping.service import integration as service

    map_service(world.provider, "M365", "M365-BP", 1)
    issue_invoice(world.customer_a, world.provider, [("M365", "4")])
    (kept,) = additions(fake)
    # what an older client left behind: a second addition carrying the same key
    dup = fake.add_addition(
        cw["agreement"]["id"], "M365-BP", 3, invoiceDescription=kept["invoiceDescription"]
    )
    assert SyncItem.get().outcome == "created"  # nothing pending: only reconciling finds it

    run = service.sync(world.provider, "test")

    assert run.status == "ok", run.message
    by_id = {a["id"]: a for a in additions(fake)}
    assert by_id[dup["id"]]["cancelledDate"] == date.today().isoformat() + "T00:00:00Z"
    assert by_id[kept["id"]]["cancelledDate"] is None
    assert by_id[kept["id"]]["quantity"] == Decimal(4)
    assert run.counts["duplicates_cancelled"] == 1
    assert (
        f"cancelled 1 duplicate addition(s) at ConnectWise: #{dup['id']} on agreement "
        f"#{cw['agreement']['id']}" in run.message
    )
    assert f"kept #{kept['id']}" in run.message
    page = panel(world.operator).get(f"/accounts/{world.provider.id}/psa/sync")
    assert f"#{dup['id']}" in page.get_data(as_text=True)
    # the next sync has nothing more to cancel
    again = service.sync(world.provider, "test")
    assert "duplicates_cancelled" not in again.counts
    assert len([a for a in additions(fake) if a["cancelledDate"] is None]) == 1


def test_a_failed_item_is_reported_and_completed_by_the_next_sync(setup, world, fake, panel):
    from core.connectors.models import SyncItem, SyncRun
    from plugins.psa_mapping.service import integration as service

    map_service(world.provider, "M365", "M365-BP", 1)
    map_service(world.provider, "BACKUP", "BACKUP-GB", 2)
    # BACKUP is pushed first; every attempt (1 + max_retries 1) of M365's POST answers 500
    fake.fail_next("/additions", 500, times=2, method="POST", skip=1)
    invoice = issue_invoice(world.customer_a, world.provider, [("M365", "3"), ("BACKUP", "8")])
    assert invoice.status == "issued"  # ConnectWise trouble never breaks issuing
    items = {i.product_code: i for i in SyncItem.select()}
    assert items["M365"].outcome == "failed"
    assert (
        "ConnectWise failed on POST" in items["M365"].message and "(500)" in items["M365"].message
    )
    assert items["BACKUP"].outcome == "created"
    run = SyncRun.get()
    assert run.status == "partial" and "M365 for Customer A" in run.message
    assert [a["product"]["identifier"] for a in additions(fake)] == ["BACKUP-GB"]
    log = (
        panel(world.operator).get(f"/accounts/{world.provider.id}/psa/sync").get_data(as_text=True)
    )
    assert "failed" in log and "ConnectWise failed on POST" in log

    rerun = service.sync(world.provider, "test")
    assert rerun.status == "ok", rerun.message
    assert SyncItem.get(SyncItem.product_code == "M365").outcome == "created"
    assert SyncItem.get(SyncItem.product_code == "BACKUP").outcome == "created"  # untouched
    assert sorted((a["product"]["identifier"], a["quantity"]) for a in additions(fake)) == [
        ("BACKUP-GB", Decimal(8)),
        ("M365-BP", Decimal(3)),
    ]


def test_an_outage_leaves_items_failed_and_issuing_goes_on(setup, world, fake):
    from core.connectors.models import SyncItem

    map_service(world.provider, "M365", "M365-BP", 1)
    fake.stop()
    invoice = issue_invoice(world.customer_a, world.provider, [("M365", "3")])
    assert invoice.status == "issued"
    item = SyncItem.get()
    assert item.outcome == "failed"
    assert item.message == "The site URL cannot be reached or is not allowed"


def test_cli_sync_with_progress_bar(setup, world, fake, ctx, monkeypatch):
    from click.testing import CliRunner

    from core.connectors.models import SyncItem
    from hostapp import cli

    map_service(world.provider, "M365", "M365-BP", 1)
    fake.fail_next("/additions", 500, times=2, method="POST")
    issue_invoice(world.customer_a, world.provider, [("M365", "6")])
    assert SyncItem.get().outcome == "failed"
    monkeypatch.setattr(cli, "_app", ctx)
    result = CliRunner().invoke(cli.main, ["psa", "sync", "--account", str(world.provider.id)])
    assert result.exit_code == 0, result.output
    assert "pushing 1 item(s)" in result.output and "sync ok" in result.output
    assert SyncItem.get().outcome == "created"
    assert additions(fake)[0]["quantity"] == Decimal(6)


# -- browser -------------------------------------------------------------------------------------


@pytest.mark.browser
def test_wizard_in_a_browser(setup, world, live_server, page):
    from core.connectors.models import ConnectorMapping

    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", world.operator.email)
    page.fill("input[name=password]", "secret-pass-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server}/accounts/{world.provider.id}")
    page.click("text=PSA billing")
    page.click("a[data-service=M365]")
    page.click("text=Add Billing Mapping")
    page.wait_for_load_state()  # the form's script listens for the change only once loaded
    page.select_option("#f-mapping_type", "per_unit")  # submits: Product/Services appears
    page.wait_for_selector("#f-psa_product")
    page.select_option("#f-psa_product", "M365-BP")  # submits: Unique ID/Plan and Level appear
    page.wait_for_selector("#f-unique_id")
    page.select_option("#f-unique_id", "*")
    page.fill("#f-level", "3")
    # Cancel discards
    page.click("#cancel")
    page.wait_for_selector("text=No billing mappings for this service yet.")
    assert ConnectorMapping.select().count() == 0
    page.click("text=Add Billing Mapping")
    page.wait_for_load_state()  # the form's script listens for the change only once loaded
    page.select_option("#f-mapping_type", "per_unit")
    page.wait_for_selector("#f-psa_product")
    page.select_option("#f-psa_product", "M365-BP")
    page.wait_for_selector("#f-unique_id")
    page.fill("#f-level", "3")
    page.click("#confirm-btn")
    page.wait_for_load_state()
    assert page.locator("tr.mapping").count() == 1, page.inner_text("main")
    assert "Billing mapping for M365 saved." in page.content()
    mapping = ConnectorMapping.get()
    assert (mapping.remote_product, mapping.level, mapping.unique_id) == ("M365-BP", 3, "*")
    # a trash icon people can see (an SVG drawn in the button, not an emoji glyph the
    # system may lack), and it deletes once confirmed in the panel's dialog
    icon = page.locator("button.trash svg").bounding_box()
    assert icon and icon["width"] >= 12 and icon["height"] >= 12, icon
    page.click("button.trash")
    assert "Delete the mapping of M365-BP (level 3)?" in page.inner_text("dialog#confirm-dialog")
    page.click("dialog#confirm-dialog button[data-ok]")
    page.wait_for_selector("text=No billing mappings for this service yet.")
    assert ConnectorMapping.select().count() == 0


def test_connector_pushes_an_item_by_its_key(psa, fake, cw):
    """The registered connector on plain data: a session from settings, one item pushed,
    the same item again finds its addition by key; a mapping that bills nothing has none."""
    from types import SimpleNamespace

    from plugins.psa_mapping.service import integration as service
    from plugins.psa_mapping.service.connectwise import parse_marker
    from tests.test_psa_support import form_settings

    connector = psa.billing_connectors()["connectwise"]
    settings = service.clean(service.ConnectionSettingsSchema().load(form_settings(fake)))
    item = SimpleNamespace(target_id=cw["agreement"]["id"], remote_product="M365-BP",
                           quantity="2.5", external_key="a42:m7", level=4)  # fmt: skip
    with connector.session(settings) as client:
        result = connector.push(client, item)
        assert result.outcome == "created"
        assert connector.push(client, item).outcome == "unchanged"
    (addition,) = fake.additions.values()
    assert result.remote_id == addition["id"]
    assert addition["quantity"] == Decimal("2.5")
    assert parse_marker(addition["invoiceDescription"]) == ("a42:m7", 4)
    lines = [SimpleNamespace(product_code="M365", quantity="2.5", source="")]
    unmapped = SimpleNamespace(product_code="NONE", unique_id="*", mapping_type="per_unit")
    assert service.quantity_for(unmapped, lines) is None
