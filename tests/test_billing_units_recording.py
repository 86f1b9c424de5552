"""Call recording (issue 20 item 8): storage used per period and per billing unit arrives as
usage records rated by the seller's recording-storage plan, is shown on the invoice and
shared out per unit in the report; its retention setting never re-bills a billed period
(SQLite and PostgreSQL; the panel in the test client, the browser in test_billing_units_web)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from core.errors import Forbidden, NotFound, ValidationFailed
from plugins.billing_units.service import report as unit_report

NOV = (date(2026, 11, 1), date(2026, 12, 1))


@pytest.fixture
def app(make_app):
    return make_app(plugins=["billing_units"])


@pytest.fixture
def rec(world, install_license, ctx, monkeypatch):
    """Licensed and enabled; today 1 December 2026; customer A (created in November) in two
    units with three numbers, subscribed to the provider's recording plan at 0.10 EUR/GB."""
    from core import clock
    from core.billing import catalog
    from core.models import Account
    from plugins.billing_units.service import recording
    from plugins.billing_units.service import units as svc

    install_license(["BH-UNITS"])
    ctx.extensions["billhive"].host.set_enabled("billing_units", True)
    monkeypatch.setattr(clock, "today", lambda: date(2026, 12, 1))
    Account.update(created_at="2026-11-01 00:00:00").execute()
    acc = world.customer_a
    numbers = [svc.create_number(None, acc, {"e164": f"+44207946000{i}"}) for i in (1, 2, 3)]
    svc.create_unit(None, acc, {"name": "Sales", "number_ids": [numbers[0].id]})
    svc.create_unit(None, acc, {"name": "Support", "number_ids": [numbers[1].id]})
    product = catalog.create_product(None, {"account_id": world.provider.id, "code": "BU-REC",
                                            "name": "Call recording storage", "unit": "GB",
                                            "kind": "usage"})  # fmt: skip
    plan = catalog.create_plan(None, {"product_id": product.id, "name": "Recording storage",
                                      "currency": "EUR", "recurring_price": "0",
                                      "usage_rate": "0.10"})  # fmt: skip
    sub = catalog.create_subscription(None, {"account_id": acc.id, "plan_id": plan.id,
                                             "start": "2026-11-01"})  # fmt: skip
    recording.sub = sub
    return recording


def _storage(ext, number, gigabytes, day="2026-11-15"):
    return {"external_id": ext, "number": number, "date": day, "gigabytes": gigabytes}


NOVEMBER = [
    _storage("s1", "+442079460001", "10"),
    _storage("s2", "+44 20 7946 0002", "30"),
    _storage("s3", "+442079460003", "0.5", day="2026-11-30"),
]


def _invoice(account):
    from core.billing.models import Invoice

    return Invoice.get(Invoice.account == account.id)


def test_storage_is_usage_rated_by_the_plan_on_the_invoice_and_shared_per_unit(world, rec):
    from core.billing.runs import engine
    from plugins.billing_units.service.report import billed_amount

    acc = world.customer_a
    assert rec.add_storage(world.user_a, acc, NOVEMBER) == {
        "received": 3, "created": 3, "duplicates": 0}  # fmt: skip
    assert rec.add_storage(world.user_a, acc, NOVEMBER[:1])["duplicates"] == 1  # idempotent
    page = unit_report.recording_page(acc, NOV)
    assert {r["unit"]: r["gigabytes"] for r in page["units"]} == {
        "Sales": Decimal(10), "Support": Decimal(30), "Unassigned": Decimal("0.5")}  # fmt: skip
    assert page["total_charges"] == 0  # not invoiced yet

    summary = engine.run(date(2026, 12, 1))
    assert not summary["failures"], summary
    invoice = _invoice(acc)
    (line,) = [ln for ln in invoice.lines if ln.source == f"usage:{rec.sub.id}"]
    assert (line.description, line.quantity, line.unit_price, line.amount) == (
        "Call recording storage usage", Decimal("40.5"), Decimal("0.10"), 405)  # fmt: skip
    assert invoice.total == 405  # nothing else is billed (no prices, no calls)

    page = unit_report.recording_page(acc, NOV)
    assert {r["unit"]: r["charges"] for r in page["units"]} == {
        "Sales": 100, "Support": 300, "Unassigned": 5}  # fmt: skip
    report = unit_report.for_period(world.user_a, acc, NOV)
    assert {r["unit"]: r["recording"] for r in report["units"]} == {
        "Sales": 100, "Support": 300, "Unassigned": 5}  # fmt: skip
    sources = {"billing_units", f"usage:{rec.sub.id}"}
    assert report["totals"]["total"] == billed_amount(acc, NOV, sources) == 405


def test_storage_shares_always_add_up_to_the_invoiced_line(world, rec):
    """Three units of 0.333333 GB each on a line of 0.10 (0.0999999 rounded): 3.33.. cents
    each, 10 in all."""
    from core.billing.runs import engine

    acc = world.customer_a
    rec.add_storage(
        None, acc, [_storage(f"x{i}", f"+44207946000{i}", "0.333333") for i in (1, 2, 3)]
    )
    engine.run(date(2026, 12, 1))
    shares = {r["unit"]: r["recording"] for r in unit_report.for_period(None, acc, NOV)["units"]}
    assert sorted(shares.values()) == [3, 3, 4] and sum(shares.values()) == 10


def test_a_billed_day_is_refused_and_a_retention_change_never_rebills(world, rec):
    from core.billing.runs import engine
    from plugins.billing_units.models import RecordingStorage

    acc = world.customer_a
    rec.add_storage(None, acc, NOVEMBER)
    engine.run(date(2026, 12, 1))
    invoice = _invoice(acc)
    lines_before = [(ln.description, ln.quantity, ln.amount) for ln in invoice.lines]
    report_before = unit_report.for_period(None, acc, NOV)

    with pytest.raises(ValidationFailed) as err:
        rec.add_storage(None, acc, [_storage("late", "+442079460001", "5", day="2026-11-30"),
                                    _storage("dec", "+442079460001", "5", day="2026-12-01")])  # fmt: skip
    assert err.value.errors["records"] == {"0": [
        "date: 2026-11-30 is invoiced already (recording storage is billed through 2026-12-01);"
        " a billed period is never billed again"]}  # fmt: skip
    assert not RecordingStorage.select().where(RecordingStorage.external_id == "dec").exists()

    assert rec.retention(acc).days == rec.DEFAULT_RETENTION_DAYS
    row = rec.set_retention(world.user_a, acc, {"days": 3650})
    assert (row.days, row.effective_from) == (3650, date(2026, 12, 1))  # the first unbilled day
    assert rec.retention(acc, date(2026, 11, 30)).days == rec.DEFAULT_RETENTION_DAYS
    assert engine.run(date(2026, 12, 1))["invoices_created"] == 0
    invoice = _invoice(acc)
    assert [(ln.description, ln.quantity, ln.amount) for ln in invoice.lines] == lines_before
    assert unit_report.for_period(None, acc, NOV)["units"] == report_before["units"]
    assert rec.add_storage(None, acc, [_storage("dec", "+442079460001", "5", "2026-12-01")])[
        "created"] == 1  # fmt: skip


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        (_storage("b", "+12025550100", "1"), "number", "not a phone number of account"),
        (_storage("b", "0044 12", "1"), "e164", "is not an E.164 number"),
        (_storage("b", "+442079460001", "-1"), "gigabytes", "must be from 0"),
        (_storage("b", "+442079460001", "1000000.000001"), "gigabytes", "to 1000000"),
        (_storage("b", "+442079460001", "0.0000001"), "gigabytes", "at most 6 decimals"),
        (_storage("b", "+442079460001", 1.5), "gigabytes", "not a float"),
        (_storage("b", "+442079460001", "1", day="2026-02-30"), "date", "Not a valid date"),
        (_storage("b", "+442079460001", "1", day="2026-10-31"), "date", "no subscription"),
        (_storage("", "+442079460001", "1"), "external_id", ""),
        ({"number": "+442079460001"}, "external_id", ""),
        ("not an object", "record", "must be an object"),
    ],
)
def test_bad_storage_records_are_refused_naming_the_field_and_nothing_is_stored(
    world, rec, record, field, words
):
    from core.billing.models import UsageRecord
    from plugins.billing_units.models import RecordingStorage

    good = _storage("good", "+442079460001", "1")
    with pytest.raises(ValidationFailed) as err:
        rec.add_storage(None, world.customer_a, [good, record])
    messages = err.value.errors["records"]["1"]
    assert any(m.startswith(f"{field}: ") and words in m for m in messages), messages
    assert "0" not in err.value.errors["records"]
    assert not RecordingStorage.select().exists() and not UsageRecord.select().exists()


def test_largest_storage_values_and_batches(world, rec):
    acc = world.customer_a
    biggest = _storage("max", "+442079460001", "1000000", day="2026-11-30")
    assert rec.add_storage(None, acc, [biggest])["created"] == 1
    with pytest.raises(ValidationFailed) as err:
        rec.add_storage(None, acc, [])
    assert "records" in err.value.errors
    with pytest.raises(ValidationFailed) as err:
        rec.add_storage(None, acc, [_storage(str(i), "+442079460001", "1")
                                    for i in range(rec.MAX_RECORDS + 1)])  # fmt: skip
    assert "at most 10000" in err.value.errors["records"][0]


def test_retention_input_privileges_and_scope(world, rec):
    from core import roles

    acc = world.customer_a
    for bad in (0, 3651, "90", 1.5, None, True):
        with pytest.raises(ValidationFailed) as err:
            rec.set_retention(None, acc, {"days": bad})
        assert "days" in err.value.errors, bad
    assert rec.set_retention(None, acc, {"days": 1}).days == 1
    role = roles.create_role(None, acc, {"name": "Units viewer", "description": "v",
                                         "privileges": ["billing_units.view"]})  # fmt: skip
    viewer = world.add_user(acc, "viewer@example.com", role_code=None, roles=[role])
    with pytest.raises(Forbidden):
        rec.set_retention(viewer, acc, {"days": 30})
    with pytest.raises(Forbidden):
        rec.add_storage(viewer, acc, [_storage("v", "+442079460001", "1")])
    with pytest.raises(NotFound):
        rec.set_retention(world.user_b, acc, {"days": 30})
    assert rec.retention(acc).days == 1


def test_licence_gone_refuses_new_storage_but_the_page_stays(world, rec, install_license):
    from core.errors import LicenseRequired

    acc = world.customer_a
    rec.add_storage(None, acc, NOVEMBER[:1])
    install_license(["SOMETHING-ELSE"])
    with pytest.raises(LicenseRequired):
        rec.add_storage(None, acc, NOVEMBER[1:])
    assert unit_report.recording_page(acc, NOV)["total_gigabytes"] == Decimal(10)


# -- API, CLI, panel ---------------------------------------------------------------------------


def test_api_recording_endpoints_and_openapi(world, rec, api, ctx):
    client = api(world.user_a)
    acc = world.customer_a.id
    base = f"/api/v1/accounts/{acc}/recording"
    resp = client.post(f"{base}/storage", json={"records": NOVEMBER})
    assert resp.status_code == 200 and resp.get_json()["created"] == 3, resp.get_json()
    bad = client.post(f"{base}/storage", json={"records": [_storage("z", "+1", "1")]})
    assert bad.status_code == 422 and "e164" in bad.get_json()["errors"]["records"]["0"][0]
    assert client.post(f"{base}/storage", json={"records": []}).status_code == 422
    page = client.get(f"{base}?start=2026-11-01&end=2026-12-01").get_json()
    assert page["total_gigabytes"] == "40.5" and page["retention_days"] == 90
    assert client.put(f"{base}/retention", json={"days": 0}).status_code == 422
    assert client.put(f"{base}/retention", json={"days": "30"}).status_code == 422
    put = client.put(f"{base}/retention", json={"days": 30})
    assert put.status_code == 200 and put.get_json() == {"days": 30, "effective_from": "2026-12-01"}
    assert client.get(f"{base}/retention").get_json()["days"] == 30
    other = f"/api/v1/accounts/{world.customer_b.id}/recording"
    assert client.get(other).status_code == 404
    assert client.put(f"{other}/retention", json={"days": 30}).status_code == 404
    paths = ctx.test_client().get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/accounts/{account_id}/recording",
                 "/api/v1/accounts/{account_id}/recording/storage",
                 "/api/v1/accounts/{account_id}/recording/retention"):  # fmt: skip
        assert path in paths, path
    assert {"403", "404", "422"} <= set(paths["/api/v1/accounts/{account_id}/recording/storage"]
                                        ["post"]["responses"])  # fmt: skip


def test_cli_import_recording_and_retention(world, rec, tmp_path, monkeypatch, ctx):
    from click.testing import CliRunner

    import hostapp.cli as cli

    monkeypatch.setattr(cli, "_app", ctx)
    path = tmp_path / "storage.csv"
    path.write_text("external_id,number,date,gigabytes\nc1,+442079460001,2026-11-03,2.5\n")
    acc = str(world.customer_a.id)
    result = CliRunner().invoke(
        cli.main, ["units", "import-recording", str(path), "--account", acc]
    )
    assert result.exit_code == 0 and "1 storage record(s) imported" in result.output, result.output
    path.write_text("external_id,number,date,gigabytes\nc2,+442079460001,2026-11-03,abc\n")
    result = CliRunner().invoke(
        cli.main, ["units", "import-recording", str(path), "--account", acc]
    )
    assert result.exit_code != 0 and "line 2" in result.output and "gigabytes" in result.output
    result = CliRunner().invoke(cli.main, ["units", "retention", "--account", acc, "--days", "45"])
    assert result.exit_code == 0 and "45 days" in result.output, result.output
    assert rec.retention(world.customer_a).days == 45


def test_panel_call_recording_sub_tab(world, rec, panel):
    from core import roles

    acc = world.customer_a
    client = panel(world.user_a)
    html = client.get(f"/accounts/{acc.id}/billing/recording").get_data(as_text=True)
    assert 'data-sub="billing_units.recording_page"' in html and "Recording storage" in html
    bad = client.post(f"/accounts/{acc.id}/billing/recording", data={"days": "9999"})
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert 'value="9999"' in text and "field-error" in text  # the value is kept
    ok = client.post(f"/accounts/{acc.id}/billing/recording", data={"days": "30"})
    assert ok.status_code == 302 and rec.retention(acc).days == 30
    from io import BytesIO

    upload = client.post(
        f"/accounts/{acc.id}/billing/recording",
        data={"action": "import", "file": (BytesIO(
            b"external_id,number,date,gigabytes\nu1,+442079460002,2026-11-04,7\n"), "s.csv")},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert upload.status_code == 302, upload.get_data(as_text=True)
    page = client.get(f"/accounts/{acc.id}/billing/recording?start=2026-11-01&end=2026-12-01")
    assert 'data-unit="Support"><td>Support</td><td class="num">7<' in page.get_data(as_text=True)

    role = roles.create_role(None, acc, {"name": "Units viewer", "description": "v",
                                         "privileges": ["billing_units.view"]})  # fmt: skip
    viewer = panel(world.add_user(acc, "viewer@example.com", role_code=None, roles=[role]))
    html = viewer.get(f"/accounts/{acc.id}/billing/recording").get_data(as_text=True)
    assert "retention-form" not in html and "storage-import" not in html and "Read-only" in html
    assert (
        viewer.post(f"/accounts/{acc.id}/billing/recording", data={"days": "1"}).status_code == 403
    )
    assert rec.retention(acc).days == 30
    assert panel(world.user_b).get(f"/accounts/{acc.id}/billing/recording").status_code == 404


# -- parallel callers (both backends) ----------------------------------------------------------


def test_the_same_storage_imported_by_parallel_callers_is_stored_once(world, rec, ctx):
    from core.billing.models import UsageRecord
    from plugins.billing_units.models import RecordingStorage
    from tests.test_billing_units_races import race

    acc = world.customer_a
    results = race(ctx, [lambda: rec.add_storage(None, acc, NOVEMBER) for _ in range(6)])
    assert all(isinstance(r, dict) for r in results), results
    assert sum(r["created"] for r in results) == 3
    assert sum(r["duplicates"] for r in results) == 3 * 6 - 3
    assert RecordingStorage.select().count() == 3 and UsageRecord.select().count() == 3
    assert unit_report.recording_page(acc, NOV)["total_gigabytes"] == Decimal("40.5")


def test_parallel_retention_changes_each_apply_once(world, rec, ctx):
    from tests.test_billing_units_races import race

    acc = world.customer_a
    days = [30, 60, 90, 365]
    results = race(ctx, [lambda d=d: rec.set_retention(None, acc, {"days": d}) for d in days])
    assert sorted(r.days for r in results) == days, results
    history = rec.retention_history(acc)
    assert sorted(h.days for h in history) == days
    assert rec.retention(acc).days == history[0].days  # the last one written is in force
